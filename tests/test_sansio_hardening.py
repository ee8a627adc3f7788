"""Property-based tests of the sans-io defences (hypothesis): request smuggling shapes are
refused with the same status however the bytes are chunked, generated valid requests parse the
same whatever the chunking, arbitrary input with small limits raises only the documented
errors; on HTTP/2, the frame scanner in front of h2 counts floods, times header blocks and
batches requests identically for any chunking, and arbitrary frames never raise."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.errors
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_http._errors import ProtocolError
from trio_http._sansio._events import (
    NEED_DATA,
    PAUSED,
    ConnectionTerminated,
    Data,
    EndOfMessage,
    Request,
    StreamReset,
)
from trio_http._sansio._http1 import H1Connection, RequestLimits
from trio_http._sansio._http1 import H1Connection as H11Connection
from trio_http._sansio._http2 import H2Connection

# H1Connection runs over h11 and over httptools (conftest.h1_parser, on the HTTP/1.1 tests);
# H11Connection is always h11's.
both_parsers = pytest.mark.usefixtures("h1_parser")

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
ERR = h2.errors.ErrorCodes
#: Every status the HTTP/1.1 layer may refuse a request with.
H1_STATUSES = (400, 405, 413, 414, 431, 501, 505)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for p in [*points, len(data)]:
        chunks.append(data[last:p])
        last = p
    return [c for c in chunks if c]


cuts_strategy = st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=30)


# --- HTTP/1.1 ------------------------------------------------------------------------------

def h1_outcome(conn: Any, chunks: list[bytes]) -> list[Any]:
    """Feed ``chunks`` (answering each request once complete); the transcript, ending with
    ``("error", status)`` if the layer refused something."""
    out: list[Any] = []
    pending = list(chunks)
    body = bytearray()
    try:
        while True:
            ev = conn.next_event()
            if ev is NEED_DATA:
                if not pending:
                    conn.receive_eof()
                    pending = None  # type: ignore[assignment]
                    continue
                if pending is None:
                    return out
                conn.receive_data(pending.pop(0))
            elif isinstance(ev, Request):
                out.append(("request", ev.method, ev.target, ev.headers, ev.http_version))
            elif isinstance(ev, Data):
                body += ev.data
            elif isinstance(ev, EndOfMessage):
                out.append(("body", bytes(body), ev.trailers))
                body.clear()
                conn.send_response(200, [(b"content-length", b"0")])
                conn.send_end()
                conn.data_to_send()
                if not conn.start_next_cycle():
                    return out
            elif ev is PAUSED:
                raise AssertionError("paused with every response sent")
            else:
                assert isinstance(ev, ConnectionTerminated)
                return out
    except ProtocolError as exc:
        assert exc.status_code in H1_STATUSES
        out.append(("error", exc.status_code))
        return out


SMUGGLING = [
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x1fb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
    b"GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n",
]
GOOD = b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n"


@both_parsers
@SETTINGS
@given(st.sampled_from(SMUGGLING), cuts_strategy)
def test_smuggling_shape_refused_the_same_whatever_the_chunking(shape, cuts):
    # Behind a good request, so the check also runs on a head that starts mid-buffer.
    data = GOOD + shape + b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    whole = h1_outcome(H1Connection(), [data])
    assert whole[-1][0] == "error"
    assert whole[0][2] == b"/first"
    assert not any(e[0] == "request" and e[2] == b"/smuggled" for e in whole)
    assert h1_outcome(H1Connection(), split(data, cuts)) == whole


TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~",
                min_size=1, max_size=12).map(str.encode)
VALUE = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c == 9 or 0x20 <= c < 0x7F or c >= 0x80).strip(b" \t")
)
PATH = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%?", max_size=30).map(
    lambda s: b"/" + s.encode()
)
RESERVED = {b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade",
            b"expect", b"te", b"trailer", b"keep-alive"}


@st.composite
def valid_requests(draw: Any) -> bytes:
    out = bytearray()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH"]))
        fields = [
            (name, value) for name, value in draw(st.lists(st.tuples(TOKEN, VALUE), max_size=8))
            if name.lower() not in RESERVED
        ]
        body = draw(st.binary(max_size=64))
        chunked = draw(st.booleans())
        out += method + b" " + draw(PATH) + b" HTTP/1.1\r\nHost: example.org\r\n"
        for name, value in fields:
            out += name + b": " + value + b"\r\n"
        if chunked:
            out += b"Transfer-Encoding: chunked\r\n\r\n"
            if body:
                out += b"%x\r\n" % len(body) + body + b"\r\n"
            out += b"0\r\n\r\n"
        else:
            out += b"Content-Length: %d\r\n\r\n" % len(body) + body
    return bytes(out)


@both_parsers
@SETTINGS
@given(valid_requests(), cuts_strategy)
def test_generated_valid_requests_parse_the_same_whatever_the_chunking(data, cuts):
    whole = h1_outcome(H1Connection(), [data])
    assert all(e[0] != "error" for e in whole), whole
    assert h1_outcome(H1Connection(), split(data, cuts)) == whole
    assert h1_outcome(H1Connection(), [data[i : i + 1] for i in range(len(data))]) == whole


FRAGMENTS = [
    b"GET ", b"POST ", b"/", b" HTTP/1.1\r\n", b"Host: h\r\n", b"Host: h\n", b"\r\n", b"\n",
    b" folded\r\n", b"\tfolded\r\n", b"Content-Length: 3\r\n", b"Content-Length: 3, 3\r\n",
    b"Transfer-Encoding: chunked\r\n", b"X: \x01\x0b\x0c\x1c\x1d\x1e\x1f\x7f\x85\r\n", b"abc",
    b"3\r\nabc\r\n", b"0\r\n\r\n", b"x" * 300, b"X-Long: " + b"y" * 200 + b"\r\n",
]


@SETTINGS
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=20)), max_size=30))
def test_arbitrary_input_with_small_limits_raises_only_documented_errors(chunks):
    limits = RequestLimits(max_request_line_size=64, max_request_header_size=256,
                           max_request_header_count=4, max_request_body_size=8)
    h1_outcome(H11Connection(limits=limits), chunks)


# --- HTTP/2 --------------------------------------------------------------------------------

def h2_client() -> h2.connection.H2Connection:
    c = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None))
    c.initiate_connection()
    return c


def h2_server(**kw: Any) -> H2Connection:
    conn = H2Connection(**kw)
    conn.initiate()
    conn.data_to_send()
    return conn


def h2_feed(conn: H2Connection, chunks: list[bytes], now: float = 0.0) -> list[Any]:
    events: list[Any] = []
    for chunk in chunks:
        got = conn.receive_data(chunk, now)
        for ev in got:
            if isinstance(ev, StreamReset):
                conn.stream_done(ev.stream_id, completed=False)
        conn.data_to_send()
        events += got
    return events


def terminated(events: list[Any]) -> ConnectionTerminated | None:
    return next((e for e in events if isinstance(e, ConnectionTerminated)), None)


def preface() -> tuple[h2.connection.H2Connection, bytes]:
    client = h2_client()
    return client, client.data_to_send()


def flood_frame(kind: str) -> bytes:
    if kind == "ping":
        return PingFrame(0).serialize()
    if kind == "settings":
        return SettingsFrame(0).serialize()
    if kind == "priority":
        return PriorityFrame(3).serialize()
    if kind == "rst-idle":
        rst = RstStreamFrame(0x7FFFFFFF)
        return rst.serialize()
    return b"\x00\x00\x00\xee\x00\x00\x00\x00\x00"  # an unknown frame type


@SETTINGS
@given(st.sampled_from(["ping", "settings", "priority", "unknown"]),
       st.integers(min_value=1, max_value=60), cuts_strategy)
def test_flood_budget_is_exact_whatever_the_chunking(kind, n, cuts):
    budget = 30
    _, start = preface()
    data = start + flood_frame(kind) * n
    conn = h2_server(control_frame_budget=budget)
    end = terminated(h2_feed(conn, split(data, cuts)))
    if n + 1 > budget:  # the client's own SETTINGS counts too
        assert end is not None and end.error_code == ERR.ENHANCE_YOUR_CALM
    else:
        assert end is None


def test_flood_budget_is_per_window():
    _, start = preface()
    conn = h2_server(control_frame_budget=30)
    assert terminated(h2_feed(conn, [start + PingFrame(0).serialize() * 25], now=100.0)) is None
    # Ten seconds later the count starts again.
    assert terminated(h2_feed(conn, [PingFrame(0).serialize() * 25], now=110.0)) is None
    end = terminated(h2_feed(conn, [PingFrame(0).serialize() * 10], now=111.0))
    assert end is not None and end.error_code == ERR.ENHANCE_YOUR_CALM


def with_data(frame: Any, data: bytes, *flags: str) -> bytes:
    frame.data = data
    for flag in flags:
        frame.flags.add(flag)
    return bytes(frame.serialize())


@SETTINGS
@given(st.integers(min_value=0, max_value=3), cuts_strategy)
def test_header_block_timing_whatever_the_chunking(continuations, cuts):
    client, start = preface()
    block = client.encoder.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                   (b":authority", b"a"), (b":path", b"/x")])
    # The block in 1 + continuations fragments (some may be empty).
    step = len(block) // (continuations + 1)
    pieces = [block[i * step : (i + 1) * step] for i in range(continuations)]
    pieces.append(block[continuations * step :])
    last = ("END_HEADERS",)
    frames = [with_data(HeadersFrame(1), pieces[0], "END_STREAM",
                        *(last if not continuations else ()))]
    for i, piece in enumerate(pieces[1:], 1):
        frames.append(with_data(ContinuationFrame(1), piece,
                                *(last if i == continuations else ())))
    data = start + b"".join(frames)
    conn = h2_server()
    events: list[Any] = []
    fed = 0
    for i, chunk in enumerate(split(data, cuts)):
        events += h2_feed(conn, [chunk], now=float(i))
        fed += len(chunk)
        if fed >= len(start) + 9 and fed < len(data):
            # A HEADERS frame header has been seen and the block is not complete.
            assert conn.header_block_started is not None
    assert conn.header_block_started is None
    assert [e.target for e in events if isinstance(e, Request)] == [b"/x"]


@SETTINGS
@given(st.integers(min_value=1, max_value=200), cuts_strategy)
def test_many_requests_in_one_read_are_refused_one_by_one(n, cuts):
    # h2 would end the connection past its own stream limit; batching keeps it per stream.
    client, start = preface()
    frames = bytearray()
    for i in range(n):
        f = HeadersFrame(2 * i + 1)
        f.data = client.encoder.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                        (b":authority", b"a"), (b":path", b"/")])
        f.flags.add("END_HEADERS")
        f.flags.add("END_STREAM")
        frames += f.serialize()
    conn = h2_server(max_concurrent_streams=10, reset_budget=1000)
    events = h2_feed(conn, split(start + bytes(frames), cuts))
    assert terminated(events) is None
    assert len([e for e in events if isinstance(e, Request)]) == min(n, 10)


@SETTINGS
@given(st.integers(min_value=0, max_value=40), cuts_strategy)
def test_reset_budget_counts_peer_and_provoked_resets(n, cuts):
    client, start = preface()
    frames = bytearray()
    for i in range(n):
        sid = 2 * i + 1
        f = HeadersFrame(sid)
        f.data = client.encoder.encode([(b":method", b"POST"), (b":scheme", b"http"),
                                        (b":authority", b"a"), (b":path", b"/")])
        f.flags.add("END_HEADERS")
        if i % 2:
            f.flags.add("END_STREAM")
            d = DataFrame(sid)  # DATA after END_STREAM: the server must reset (MadeYouReset)
            d.data = b"x"
            frames += f.serialize() + d.serialize()
        else:
            rst = RstStreamFrame(sid)  # rapid reset
            rst.error_code = ERR.CANCEL
            frames += f.serialize() + rst.serialize()
    conn = h2_server(reset_budget=20)
    end = terminated(h2_feed(conn, split(start + bytes(frames), cuts)))
    if n > 20:
        assert end is not None and end.error_code == ERR.ENHANCE_YOUR_CALM
    else:
        assert end is None


def window_update(sid: int, n: int) -> bytes:
    f = WindowUpdateFrame(sid)
    f.window_increment = n
    return bytes(f.serialize())


FLAGS = st.lists(st.sampled_from(["END_STREAM", "END_HEADERS"]), unique=True)
frame_strategy = st.one_of(
    st.builds(lambda: bytes(PingFrame(0).serialize())),
    st.just(SettingsFrame(0).serialize()),
    st.builds(lambda s: bytes(PriorityFrame(s).serialize()), st.integers(1, 9)),
    st.builds(window_update, st.integers(0, 9), st.integers(0, 2**31 - 1)),
    st.builds(lambda s, d, f: with_data(DataFrame(s), d, *[x for x in f if x == "END_STREAM"]),
              st.integers(1, 9), st.binary(max_size=30), FLAGS),
    st.builds(lambda s, d, f: with_data(ContinuationFrame(s), d,
                                        *[x for x in f if x == "END_HEADERS"]),
              st.integers(1, 9), st.binary(max_size=30), FLAGS),
    st.builds(lambda s, d, f: with_data(HeadersFrame(s), d, *f), st.integers(1, 9),
              st.binary(max_size=30), FLAGS),
    st.builds(lambda s: bytes(RstStreamFrame(s).serialize()), st.integers(1, 9)),
    st.binary(max_size=30),
)


@SETTINGS
@given(st.lists(frame_strategy, max_size=40), cuts_strategy,
       st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=5))
def test_arbitrary_frames_at_any_time_only_return_events(frames, cuts, times):
    _, start = preface()
    conn = h2_server(control_frame_budget=10, reset_budget=5, max_request_header_count=3,
                     max_request_body_size=10)
    for i, chunk in enumerate(split(start + b"".join(frames), cuts)):
        for ev in conn.receive_data(chunk, times[i % len(times)]):
            if isinstance(ev, ConnectionTerminated):
                assert ev.error_code is not None
        conn.data_to_send()
