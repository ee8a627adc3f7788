"""Raw protocol peers for the edge-case tests: an HTTP/1.1 client over h11 and an HTTP/2 client
over h2, each on a real trio socket. They are test instruments, so they expose what went over
the wire (status lines, frames, resets, GOAWAY) rather than hiding it."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import h11
import trio
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame

ANY_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


async def connect(port: int, *, ssl_context: ssl.SSLContext | None = None) -> trio.abc.Stream:
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    if ssl_context is not None:
        tls = trio.SSLStream(stream, ssl_context, server_hostname="localhost")
        await tls.do_handshake()
        stream = tls
    return stream


async def receive_some(stream: trio.abc.Stream) -> bytes:
    """Bytes from the peer, ``b""`` on EOF or reset."""
    try:
        return await stream.receive_some(65536)
    except ANY_STREAM_ERRORS:
        return b""


async def read_until_eof(stream: trio.abc.Stream, limit: int = 1 << 22) -> bytes:
    out = bytearray()
    while len(out) < limit:
        data = await receive_some(stream)
        if not data:
            break
        out += data
    return bytes(out)


async def read_until(stream: trio.abc.Stream, buf: bytearray, marker: bytes) -> bytes:
    """Read into ``buf`` until it holds ``marker``; return and remove everything up to and
    including it. Raises EOFError if the peer closes first."""
    while marker not in buf:
        data = await receive_some(stream)
        if not data:
            raise EOFError(bytes(buf))
        buf += data
    idx = buf.index(marker) + len(marker)
    head = bytes(buf[:idx])
    del buf[:idx]
    return head


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection and return everything until the server closes."""
    stream = await connect(port)
    async with stream:
        await stream.send_all(request)
        return await read_until_eof(stream)


@dataclass
class H1Response:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    http_version: bytes = b"1.1"
    informational: list[int] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None


class H1Client:
    """An h11 client on one connection: keep-alive requests, one at a time."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, port: int, **kw: Any) -> H1Client:
        return cls(await connect(port, **kw))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def send(self, *events: Any) -> None:
        data = b"".join(self.conn.send(ev) or b"" for ev in events)
        await self.stream.send_all(data)

    async def next_event(self) -> Any:
        while True:
            ev = self.conn.next_event()
            if ev is not h11.NEED_DATA:
                return ev
            self.conn.receive_data(await receive_some(self.stream))

    async def read_response(self) -> H1Response:
        informational = []
        while True:
            ev = await self.next_event()
            if isinstance(ev, h11.InformationalResponse):
                informational.append(ev.status_code)
                continue
            assert isinstance(ev, h11.Response), ev
            break
        body = bytearray()
        while True:
            part = await self.next_event()
            if isinstance(part, h11.Data):
                body += part.data
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                raise AssertionError(part)
        return H1Response(ev.status_code, bytes(ev.reason), list(ev.headers), bytes(body),
                          bytes(ev.http_version), informational)

    async def request(
        self, method: str = "GET", target: str = "/", *, body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> H1Response:
        hdrs = [("host", "localhost"), *(headers or [])]
        if body is not None:
            hdrs.append(("content-length", str(len(body))))
        await self.send(h11.Request(method=method, target=target, headers=hdrs))
        if body:
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())
        resp = await self.read_response()
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return resp


@dataclass
class StreamState:
    headers: list[tuple[bytes, bytes]] | None = None
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None

    @property
    def status(self) -> int | None:
        for n, v in self.headers or ():
            if n == b":status":
                return int(v)
        return None

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class H2Client:
    """An h2 client on a trio stream. :meth:`pump` reads once, records what arrived per stream,
    and writes h2's answers (SETTINGS ACK, PING ACK, WINDOW_UPDATE). Received data is
    acknowledged at once, except on streams in ``hold_credit``."""

    def __init__(self, stream: trio.abc.Stream, *, settings: dict[int, int] | None = None) -> None:
        self.stream = stream
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=cfg)
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.streams: dict[int, StreamState] = {}
        #: The server's GOAWAY. It is kept from h2, whose client stops processing frames
        #: after one, while a graceful GOAWAY lets the streams in flight finish.
        self.goaway: GoAwayFrame | None = None
        self._frames = bytearray()
        self.pings_acked: list[bytes] = []
        self.remote_settings_seen = False
        self.closed = False
        self.hold_credit: set[int] = set()
        self.events: list[Any] = []
        #: Every byte the server sent, for tests that inspect frames h2 swallows.
        self.received = bytearray()

    @classmethod
    async def open(cls, port: int, *, ssl_context: ssl.SSLContext | None = None,
                   settings: dict[int, int] | None = None) -> H2Client:
        client = cls(await connect(port, ssl_context=ssl_context), settings=settings)
        client.conn.initiate_connection()
        await client.flush()
        return client

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                await self.stream.send_all(data)
            except ANY_STREAM_ERRORS:
                self.closed = True

    async def send_raw(self, data: bytes | Frame) -> None:
        if isinstance(data, Frame):
            data = data.serialize()
        await self.stream.send_all(data)

    async def request_fields(
        self, fields: list[tuple[bytes, bytes]], *, end_stream: bool = True
    ) -> int:
        """Open a stream with ``fields`` sent exactly as given: the client's own checks are
        off, so malformed sections reach the server (and h2 still tracks the stream)."""
        sid: int = self.conn.get_next_available_stream_id()
        cfg = self.conn.config
        cfg.validate_outbound_headers = cfg.normalize_outbound_headers = False
        try:
            self.conn.send_headers(sid, fields, end_stream=end_stream)
        finally:
            cfg.validate_outbound_headers = cfg.normalize_outbound_headers = True
        self.streams[sid] = StreamState()
        await self.flush()
        return sid

    async def request(
        self, method: str = "GET", path: str = "/", *, body: bytes | None = None,
        headers: list[tuple[bytes, bytes]] | None = None, end_stream: bool | None = None,
    ) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        hdrs = [(b":method", method.encode()), (b":scheme", b"http"),
                (b":authority", b"localhost"), (b":path", path.encode()), *(headers or [])]
        last = True if end_stream is None else end_stream
        self.conn.send_headers(sid, hdrs, end_stream=last and not body)
        self.streams[sid] = StreamState()
        await self.flush()
        if body:
            await self.send_body(sid, body, end_stream=last)
        return sid

    async def raw_request(self, sid: int, path: str = "/") -> None:
        """HEADERS (END_STREAM) for ``sid`` written past h2's state machine, e.g. after a
        GOAWAY, when h2 would refuse to open a stream."""
        frame = HeadersFrame(sid)
        frame.data = self.conn.encoder.encode([
            (b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"),
            (b":path", path.encode()),
        ])
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        await self.send_raw(frame)

    async def send_body(self, sid: int, body: bytes, *, end_stream: bool = True) -> None:
        """Send ``body`` on ``sid`` as the windows allow, in frames the server accepts."""
        sent = 0
        while sent < len(body):
            n = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size,
                    len(body) - sent)
            if n <= 0:
                await self.pump()
                continue
            self.conn.send_data(sid, body[sent : sent + n])
            sent += n
            await self.flush()
        if end_stream:
            self.conn.end_stream(sid)
            await self.flush()

    async def pump(self) -> list[Any]:
        """One read; returns the h2 events (empty list on EOF, with ``closed`` set)."""
        if self.closed:
            raise EOFError("connection closed")
        data = await receive_some(self.stream)
        if not data:
            self.closed = True
            return []
        return await self.process(data)

    async def process(self, data: bytes) -> list[Any]:
        """Handle bytes from the server (read by :meth:`pump`, or already in hand)."""
        self.received += data
        self._frames += data
        feed = bytearray()
        while len(self._frames) >= 9:
            length = int.from_bytes(self._frames[:3], "big")
            if len(self._frames) < 9 + length:
                break
            raw = bytes(self._frames[: 9 + length])
            del self._frames[: 9 + length]
            if raw[3] == 0x7:  # GOAWAY
                self.goaway = parse_frames(raw)[0]  # type: ignore[assignment]
            else:
                feed += raw
        events = self.conn.receive_data(bytes(feed)) if feed else []
        self.events.extend(events)
        for ev in events:
            sid = getattr(ev, "stream_id", None)
            st = self.streams.setdefault(sid, StreamState()) if sid else None
            if isinstance(ev, h2.events.ResponseReceived):
                assert st is not None
                st.headers = list(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                assert st is not None
                st.data += ev.data
                if sid not in self.hold_credit and ev.flow_controlled_length:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamEnded):
                assert st is not None
                st.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                assert st is not None
                st.reset = ev.error_code
            elif isinstance(ev, h2.events.PingAckReceived):
                self.pings_acked.append(ev.ping_data)
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                self.remote_settings_seen = True
        await self.flush()
        return events

    async def wait(self, predicate: Any) -> None:
        """Pump until ``predicate()`` is true. Raises EOFError if the server closes first."""
        while not predicate():
            if self.closed:
                raise EOFError("connection closed before the condition held")
            await self.pump()

    async def wait_done(self, *sids: int) -> None:
        await self.wait(lambda: all(self.streams[s].done for s in sids))

    async def ping(self, data: bytes = b"12345678") -> None:
        self.conn.ping(data)
        await self.flush()
        await self.wait(lambda: data in self.pings_acked)

    async def drain_until_closed(self) -> None:
        while not self.closed:
            await self.pump()


def parse_frames(data: bytes) -> list[Frame]:
    """Split raw server bytes into hyperframe frames."""
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            break
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


def goaway_of(frames: list[Frame]) -> GoAwayFrame | None:
    for f in frames:
        if isinstance(f, GoAwayFrame):
            return f
    return None
