"""The pure HTTP/2 core, synchronously, with hypothesis: arbitrary bytes and arbitrary frames
only ever produce events (a connection error is an event with GOAWAY queued), and a valid
exchange parses the same however it is chunked."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_http._sansio._events import (
    ConnectionTerminated,
    Data,
    EndOfMessage,
    Request,
    StreamReset,
    WindowUpdated,
)
from trio_http._sansio._http2 import H2Connection, StreamClosed
from trio_http._sansio._select import H2_PREFACE

from .apps.peers import goaway_of, parse_frames

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
ERR = h2.errors.ErrorCodes
EVENT_TYPES = (Request, Data, EndOfMessage, StreamReset, WindowUpdated, ConnectionTerminated)


def server(**kw: Any) -> H2Connection:
    conn = H2Connection(**kw)
    conn.initiate()
    conn.data_to_send()
    return conn


def exercise(conn: H2Connection, events: list[Any]) -> bytes:
    """Use the server API the way the I/O layer does on whatever arrived."""
    for ev in events:
        assert isinstance(ev, EVENT_TYPES), ev
        if isinstance(ev, Data):
            conn.acknowledge_data(ev.stream_id, ev.flow_controlled_length)
        elif isinstance(ev, EndOfMessage):
            try:
                conn.send_response(ev.stream_id, 200, [(b"content-length", b"2")])
                conn.send_data(ev.stream_id, b"ok", end_stream=True)
            except StreamClosed:
                pass
            conn.stream_done(ev.stream_id, completed=True)
        elif isinstance(ev, StreamReset):
            conn.stream_done(ev.stream_id, completed=False)
    return conn.data_to_send()


class Fed(list[Any]):
    """The events, with ``output``: every byte the server queued meanwhile."""

    output: bytes = b""


def feed(conn: H2Connection, chunks: list[bytes]) -> Fed:
    out = Fed()
    written = bytearray()
    for chunk in chunks:
        events = conn.receive_data(chunk)
        written += exercise(conn, events)
        out.extend(events)
    out.output = bytes(written)
    return out


class Client:
    def __init__(self) -> None:
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.h2.initiate_connection()

    def request(self, path: bytes, body: bytes = b"") -> None:
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"),
                                   (b":authority", b"a"), (b":path", path),
                                   (b"x-n", path)], end_stream=not body)
        if body:
            self.h2.send_data(sid, body, end_stream=True)


def valid_exchange() -> bytes:
    c = Client()
    c.request(b"/one")
    c.request(b"/two", b"body" * 100)
    c.h2.ping(b"12345678")
    c.request(b"/three", b"x")
    return bytes(c.h2.data_to_send())


def transcript(events: list[Any]) -> list[Any]:
    out: list[Any] = []
    bodies: dict[int, bytearray] = {}
    for ev in events:
        if isinstance(ev, Request):
            out.append(("req", ev.stream_id, ev.method, ev.target, ev.headers))
        elif isinstance(ev, Data):
            bodies.setdefault(ev.stream_id, bytearray()).extend(ev.data)
        elif isinstance(ev, EndOfMessage):
            out.append(("end", ev.stream_id, bytes(bodies.pop(ev.stream_id, b""))))
        elif isinstance(ev, ConnectionTerminated):
            out.append(("terminated", ev.error_code))
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for p in [*points, len(data)]:
        chunks.append(data[last:p])
        last = p
    return [c for c in chunks if c]


VALID = valid_exchange()


def test_reference_transcript():
    t = transcript(feed(server(), [VALID]))
    assert t == [
        ("req", 1, b"POST", b"/one", [(b"host", b"a"), (b"x-n", b"/one")]),
        ("end", 1, b""),
        ("req", 3, b"POST", b"/two", [(b"host", b"a"), (b"x-n", b"/two")]),
        ("end", 3, b"body" * 100),
        ("req", 5, b"POST", b"/three", [(b"host", b"a"), (b"x-n", b"/three")]),
        ("end", 5, b"x"),
    ]


@SETTINGS
@given(st.lists(st.integers(min_value=0, max_value=len(VALID)), max_size=40))
def test_any_chunking_parses_the_same(cuts):
    assert transcript(feed(server(), split(VALID, cuts))) == transcript(feed(server(), [VALID]))


def check_terminated(conn: H2Connection, events: Fed) -> None:
    out = events.output
    term = [e for e in events if isinstance(e, ConnectionTerminated) and not e.by_peer]
    if term:
        assert conn.terminated
        goaway = goaway_of(parse_frames(out))
        assert goaway is not None, "a connection error must queue GOAWAY"
        assert goaway.error_code == term[0].error_code


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_return_events(data):
    conn = H2Connection()
    conn.initiate()
    events = feed(conn, [data])
    if not data.startswith(H2_PREFACE[: len(data)]):
        # Not the preface: a PROTOCOL_ERROR GOAWAY right after our SETTINGS.
        assert conn.terminated
        assert goaway_of(parse_frames(events.output)).error_code == ERR.PROTOCOL_ERROR
    check_terminated(conn, events)


@SETTINGS
@given(st.lists(st.binary(max_size=60), max_size=10))
def test_arbitrary_bytes_after_preface_only_return_events(chunks):
    conn = server()
    events = feed(conn, [H2_PREFACE + SettingsFrame(0).serialize(), *chunks])
    check_terminated(conn, events)


stream_ids = st.sampled_from([0, 1, 2, 3, 5, 7, 2**31 - 1])
payload = st.binary(max_size=40)
flags_for = {
    DataFrame: ["END_STREAM", "PADDED"],
    HeadersFrame: ["END_STREAM", "END_HEADERS", "PADDED", "PRIORITY"],
    ContinuationFrame: ["END_HEADERS"],
    SettingsFrame: ["ACK"],
    PingFrame: ["ACK"],
}


@st.composite
def frames(draw: Any) -> bytes:
    cls = draw(st.sampled_from([DataFrame, HeadersFrame, ContinuationFrame, SettingsFrame,
                                PingFrame, PriorityFrame, RstStreamFrame, WindowUpdateFrame,
                                GoAwayFrame]))
    sid = draw(stream_ids)
    frame: Frame
    try:
        frame = cls(sid)
    except Exception:
        frame = cls(1 if sid == 0 else 0)
    for flag in flags_for.get(cls, []):
        if draw(st.booleans()):
            frame.flags.add(flag)
    if cls in (DataFrame, ContinuationFrame):
        frame.data = draw(payload)
    elif cls is HeadersFrame:
        frame.data = draw(st.one_of(payload, st.just(HEADER_BLOCK)))
    elif cls is SettingsFrame and "ACK" not in frame.flags:
        frame.settings = draw(st.dictionaries(st.integers(1, 9), st.integers(0, 2**32 - 1),
                                              max_size=3))
    elif cls is PingFrame:
        frame.opaque_data = draw(st.binary(min_size=8, max_size=8))
    elif cls is RstStreamFrame:
        frame.error_code = draw(st.integers(0, 15))
    elif cls is WindowUpdateFrame:
        frame.window_increment = draw(st.integers(0, 2**31 - 1))
    elif cls is GoAwayFrame:
        frame.last_stream_id = draw(st.integers(0, 9))
        frame.error_code = draw(st.integers(0, 15))
    try:
        return bytes(frame.serialize())
    except Exception:
        return b""


def _header_block() -> bytes:
    c = Client()
    c.h2.data_to_send()
    c.request(b"/")
    raw = bytes(c.h2.data_to_send())
    return bytes(parse_frames(raw)[0].data)


HEADER_BLOCK = _header_block()


@SETTINGS
@given(st.lists(frames(), max_size=15))
def test_arbitrary_frames_only_return_events(frame_bytes):
    conn = server(max_concurrent_streams=2, initial_window_size=100)
    events = feed(conn, [H2_PREFACE + SettingsFrame(0).serialize(), *frame_bytes])
    check_terminated(conn, events)
    # Whatever happened, the server API keeps working without raising.
    conn.start_shutdown()
    conn.close()
    conn.data_to_send()
    assert conn.receive_data(b"more") == []


def test_first_frame_must_be_settings():
    conn = server()
    ping = PingFrame(0)
    ping.opaque_data = b"12345678"
    events = conn.receive_data(H2_PREFACE + ping.serialize())
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code == ERR.PROTOCOL_ERROR
    assert goaway_of(parse_frames(conn.data_to_send())).error_code == ERR.PROTOCOL_ERROR


def test_keepalive_ping_is_outstanding_until_its_own_ack():
    conn = server()
    conn.receive_data(H2_PREFACE + SettingsFrame(0).serialize())
    conn.data_to_send()
    conn.send_ping()
    conn.send_ping()  # one at a time
    (ping,) = [f for f in parse_frames(conn.data_to_send()) if isinstance(f, PingFrame)]
    assert "ACK" not in ping.flags and conn.ping_outstanding
    other = PingFrame(0, flags=["ACK"])
    other.opaque_data = b"notours!"
    conn.receive_data(other.serialize())  # an ACK of some other PING proves nothing
    assert conn.ping_outstanding
    ack = PingFrame(0, flags=["ACK"])
    ack.opaque_data = ping.opaque_data
    conn.receive_data(ack.serialize())
    assert not conn.ping_outstanding
    # Answers to PINGs we sent do not count against the peer's control-frame budget, however
    # short the interval; unasked-for ACKs still do.
    conn = server(control_frame_budget=5)
    conn.receive_data(H2_PREFACE + SettingsFrame(0).serialize())
    for _ in range(20):
        conn.send_ping()
        conn.data_to_send()
        assert conn.receive_data(ack.serialize()) == [] and not conn.ping_outstanding
    events = conn.receive_data(ack.serialize() * 6)
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code == ERR.ENHANCE_YOUR_CALM
    conn = server()
    conn.close()
    conn.data_to_send()
    conn.send_ping()  # the connection is over: nothing more is queued
    assert conn.data_to_send() == b"" and not conn.ping_outstanding


def test_oversized_frame_refused_from_its_header():
    conn = server()
    events = conn.receive_data(H2_PREFACE + SettingsFrame(0).serialize()
                               + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01")
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code == ERR.FRAME_SIZE_ERROR


def test_streams_past_the_limit_are_refused_individually():
    conn = server(max_concurrent_streams=2)
    c = Client()
    for i in range(3):
        c.request(b"/%d" % i)
    events = conn.receive_data(bytes(c.h2.data_to_send()))
    assert [e.stream_id for e in events if isinstance(e, Request)] == [1, 3]
    resets = [f for f in parse_frames(conn.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(5, ERR.REFUSED_STREAM)]
    assert not conn.terminated
    # A finished stream frees its slot.
    conn.send_response(1, 204, [], end_stream=True)
    conn.stream_done(1, completed=True)
    c.request(b"/again")
    events = conn.receive_data(bytes(c.h2.data_to_send()))
    assert [e.stream_id for e in events if isinstance(e, Request)] == [7]


def test_credit_returns_only_when_acknowledged():
    conn = server(initial_window_size=1000)
    c = Client()
    c.h2.receive_data(conn.data_to_send() or b"")
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"),
                            (b":authority", b"a"), (b":path", b"/")])
    conn.receive_data(bytes(c.h2.data_to_send()))
    c.h2.receive_data(conn.data_to_send())
    c.h2.send_data(sid, b"x" * 1000)
    events = conn.receive_data(bytes(c.h2.data_to_send()))
    data = [e for e in events if isinstance(e, Data)]
    assert sum(len(e.data) for e in data) == 1000
    # Nothing acknowledged yet: no WINDOW_UPDATE for the stream.
    assert not any(isinstance(f, WindowUpdateFrame) and f.stream_id == sid
                   for f in parse_frames(conn.data_to_send()))
    for e in data:
        conn.acknowledge_data(sid, e.flow_controlled_length)
    assert any(isinstance(f, WindowUpdateFrame) and f.stream_id == sid
               for f in parse_frames(conn.data_to_send()))


def test_graceful_goaway_lets_streams_finish_and_refuses_new_ones():
    conn = server()
    c = Client()
    c.request(b"/a")
    conn.receive_data(bytes(c.h2.data_to_send()))
    conn.start_shutdown()
    goaway = goaway_of(parse_frames(conn.data_to_send()))
    assert goaway.error_code == ERR.NO_ERROR and goaway.last_stream_id == 1
    c.request(b"/b")
    events = conn.receive_data(bytes(c.h2.data_to_send()))
    assert not any(isinstance(e, Request) for e in events)
    frames_out = parse_frames(conn.data_to_send())
    assert any(isinstance(f, RstStreamFrame) and f.stream_id == 3
               and f.error_code == ERR.REFUSED_STREAM for f in frames_out)
    conn.send_response(1, 200, [], end_stream=True)
    assert any(isinstance(f, HeadersFrame) and f.stream_id == 1
               for f in parse_frames(conn.data_to_send()))
