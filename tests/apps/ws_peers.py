"""Raw WebSocket peers for the WebSocket tests, on real trio sockets.

* :func:`open_h1_websocket`: an RFC 6455 client whose handshake and frames come from wsproto's
  client side, able to put arbitrary bytes on the wire (:meth:`WSPeer.send_raw`).
* :class:`H2Peer`: an HTTP/2 client over h2 that opens RFC 8441 extended CONNECT streams
  (``:protocol websocket``) carrying wsproto client frames in DATA frames, beside ordinary
  requests on the same connection.
* :func:`frame`: one hand-built frame (masked or not, any opcode, reserved bits) for the
  protocol-violation tests.

They are test instruments: they expose what went over the wire rather than hiding it.
"""

from __future__ import annotations

import os
import ssl
import struct
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import trio
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.handshake import H11Handshake

STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """One WebSocket frame exactly as described (RFC 6455 §5.2), valid or not."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + mask(payload, key)


async def receive_some(stream: trio.abc.Stream) -> bytes:
    try:
        return await stream.receive_some(65536)
    except STREAM_ERRORS:
        return b""


class WSPeer:
    """The client end of a WebSocket: wsproto frames over some byte transport."""

    def __init__(self, deflate: bool) -> None:
        self.ws = Connection(ConnectionType.CLIENT, self.extensions(deflate))
        self.events: deque[Event] = deque()
        self.eof = False

    def extensions(self, deflate: bool) -> list[Any]:
        return []

    async def send_raw(self, data: bytes) -> None:
        raise NotImplementedError

    async def _read(self) -> bytes:
        raise NotImplementedError

    async def send(self, event: Event) -> None:
        await self.send_raw(self.ws.send(event))

    async def send_text(self, text: str) -> None:
        await self.send(TextMessage(data=text))

    async def send_bytes(self, data: bytes) -> None:
        await self.send(BytesMessage(data=data))

    async def next_event(self) -> Event | None:
        """The next wsproto event; ``None`` once the transport ended."""
        # Frames may already be parsed: those that came with the handshake response.
        self.events.extend(self.ws.events())
        while not self.events:
            if self.eof:
                return None
            data = await self._read()
            if not data:
                self.eof = True
                self.ws.receive_data(None)
            else:
                try:
                    self.ws.receive_data(data)
                except Exception:  # wsproto refuses data after the close: ignore it
                    pass
            self.events.extend(self.ws.events())
        return self.events.popleft()

    async def receive_message(self) -> str | bytes:
        """The next complete message (PINGs are answered). Raises ``AssertionError`` on a
        close or EOF."""
        parts: list[Any] = []
        while True:
            ev = await self.next_event()
            if isinstance(ev, (TextMessage, BytesMessage)):
                parts.append(ev.data)
                if ev.message_finished:
                    if isinstance(ev, TextMessage):
                        return "".join(parts)
                    return b"".join(parts)
            elif isinstance(ev, Ping):
                await self.send(ev.response())
            elif isinstance(ev, Pong):
                continue
            else:
                raise AssertionError(f"expected a message, got {ev!r}")

    async def expect_close(self, *, reply: bool = True) -> tuple[int, str]:
        """Skip messages until the server's CLOSE; answer it; return its code and reason."""
        while True:
            ev = await self.next_event()
            if ev is None:
                raise AssertionError("EOF without a CLOSE frame")
            if isinstance(ev, CloseConnection):
                if reply and ev.code != 1006:
                    try:
                        await self.send(ev.response())
                    except Exception:
                        pass
                return int(ev.code), ev.reason or ""

    async def read_until_eof(self) -> None:
        while not self.eof:
            data = await self._read()
            if not data:
                self.eof = True


# --- HTTP/1.1 ---------------------------------------------------------------------------
class H1WSPeer(WSPeer):
    def __init__(self, stream: trio.abc.Stream, deflate: bool) -> None:
        super().__init__(deflate)
        self.stream = stream
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.subprotocol: str | None = None
        self.accepted_extensions: list[Any] = []

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _read(self) -> bytes:
        return await receive_some(self.stream)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def h1_handshake(
    port: int,
    path: str = "/",
    *,
    subprotocols: list[str] | None = None,
    deflate: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> H1WSPeer:
    """Open a connection and run the opening handshake with wsproto's client. On a refusal
    ``status``, ``headers`` and ``body`` hold the response and no frames may be sent."""
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    if ssl_context is not None:
        tls = trio.SSLStream(stream, ssl_context, server_hostname="localhost")
        await tls.do_handshake()
        stream = tls
    hs = H11Handshake(ConnectionType.CLIENT)
    offers = [PerMessageDeflate()] if deflate else []
    await stream.send_all(hs.send(Request(
        host=f"127.0.0.1:{port}", target=path, subprotocols=subprotocols or [],
        extensions=offers, extra_headers=extra_headers or [],
    )))
    peer = H1WSPeer(stream, deflate)
    body = bytearray()
    while True:
        data = await receive_some(stream)
        hs.receive_data(data or None)
        for ev in hs.events():
            if isinstance(ev, AcceptConnection):
                peer.status = 101
                peer.subprotocol = ev.subprotocol
                peer.headers = list(ev.extra_headers)
                peer.accepted_extensions = list(ev.extensions)
                assert hs.connection is not None
                peer.ws = hs.connection
                return peer
            if isinstance(ev, RejectConnection):
                peer.status = ev.status_code
                peer.headers = list(ev.headers)
                if not ev.has_body:
                    return peer
            elif isinstance(ev, RejectData):
                body += ev.data
                if ev.body_finished:
                    peer.body = bytes(body)
                    return peer
        if not data:
            peer.body = bytes(body)
            return peer


@asynccontextmanager
async def open_h1_websocket(port: int, path: str = "/", **kwargs: Any) -> AsyncIterator[H1WSPeer]:
    peer = await h1_handshake(port, path, **kwargs)
    try:
        yield peer
    finally:
        await peer.aclose()


# --- HTTP/2 -----------------------------------------------------------------------------
class H2PeerStream:
    """One stream of an :class:`H2Peer`."""

    def __init__(self, peer: H2Peer, stream_id: int) -> None:
        self.peer = peer
        self.stream_id = stream_id
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.data = bytearray()
        self.ended = False
        self.reset_code: int | None = None
        self.changed = trio.Event()

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    @property
    def status(self) -> int:
        assert self.headers is not None
        return int(dict(self.headers)[b":status"])

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers or []).get(name)

    async def response(self) -> list[tuple[bytes, bytes]]:
        while self.headers is None:
            if self.ended or self.reset_code is not None:
                raise AssertionError(f"stream ended without a response (reset {self.reset_code})")
            await self.changed.wait()
        return self.headers

    async def read(self) -> bytes:
        """Bytes received so far (waiting for some); ``b""`` once ended or reset."""
        while not self.data:
            if self.ended or self.reset_code is not None or self.peer.closed:
                return b""
            await self.changed.wait()
        out = bytes(self.data)
        self.data.clear()
        return out

    async def read_all(self) -> bytes:
        out = bytearray()
        while chunk := await self.read():
            out += chunk
        return bytes(out)

    async def send(self, data: bytes, *, end_stream: bool = False) -> None:
        """Send ``data`` in DATA frames as the windows allow."""
        conn = self.peer.conn
        view = memoryview(data)
        while True:
            if self.reset_code is not None:
                raise ConnectionResetError(f"stream reset ({self.reset_code})")
            window = min(conn.local_flow_control_window(self.stream_id),
                         conn.max_outbound_frame_size)
            if view and window <= 0:
                await self.peer.window_changed.wait()
                continue
            n = min(window, len(view))
            last = end_stream and n == len(view)
            conn.send_data(self.stream_id, bytes(view[:n]), end_stream=last)
            view = view[n:]
            await self.peer.flush()
            if not view:
                return

    async def end(self) -> None:
        self.peer.conn.end_stream(self.stream_id)
        await self.peer.flush()

    async def reset(self, code: int = 8) -> None:
        self.peer.conn.reset_stream(self.stream_id, code)
        await self.peer.flush()


class H2WSPeer(WSPeer):
    """A WebSocket on an extended CONNECT stream."""

    def __init__(self, st: H2PeerStream, deflate_response: bytes | None) -> None:
        self._accepted = deflate_response
        super().__init__(deflate_response is not None)
        self.st = st

    def extensions(self, deflate: bool) -> list[Any]:
        if not deflate:
            return []
        ext = PerMessageDeflate()
        ext.finalize(self._accepted.decode())  # type: ignore[union-attr]
        return [ext]

    async def send_raw(self, data: bytes) -> None:
        await self.st.send(data)

    async def _read(self) -> bytes:
        return await self.st.read()


class H2Peer:
    """An HTTP/2 client connection (prior knowledge, or TLS with ALPN h2)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.streams: dict[int, H2PeerStream] = {}
        self.settings_received = trio.Event()
        self.window_changed = trio.Event()
        #: (last_stream_id, error_code) of each GOAWAY received.
        self.goaways: list[tuple[int, int]] = []
        self._buffer = bytearray()
        self.closed = False
        self._lock = trio.StrictFIFOLock()

    @property
    def enable_connect_protocol(self) -> int:
        code = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
        return int(self.conn.remote_settings.get(code, 0))

    async def flush(self) -> None:
        async with self._lock:
            data = self.conn.data_to_send()
            if data:
                try:
                    await self.stream.send_all(data)
                except STREAM_ERRORS:
                    self.closed = True

    def _take_frames(self, data: bytes) -> bytes:
        """Complete frames from the input, GOAWAY frames removed and recorded: h2 closes its
        state machine on GOAWAY and would refuse the frames of streams still in flight,
        which RFC 9113 §6.8 lets the server finish."""
        self._buffer += data
        out = bytearray()
        buf = self._buffer
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            raw = bytes(buf[: 9 + length])
            del buf[: 9 + length]
            if raw[3] == 0x7:  # GOAWAY
                self.goaways.append((int.from_bytes(raw[9:13], "big") & 0x7FFFFFFF,
                                     int.from_bytes(raw[13:17], "big")))
                for st in self.streams.values():
                    st.wake()
            else:
                out += raw
        return bytes(out)

    async def _reader(self) -> None:
        while True:
            data = await receive_some(self.stream)
            if not data:
                break
            for ev in self.conn.receive_data(self._take_frames(data)):
                self._dispatch(ev)
            await self.flush()
        self.closed = True
        for st in self.streams.values():
            st.wake()
        self.window_changed.set()

    def _dispatch(self, ev: Any) -> None:
        st = self.streams.get(getattr(ev, "stream_id", 0) or 0)
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            self.settings_received.set()
            self._wake_window()
        elif isinstance(ev, h2.events.ResponseReceived) and st:
            st.headers = list(ev.headers)
            st.wake()
        elif isinstance(ev, h2.events.DataReceived):
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if st:
                st.data += ev.data
                st.wake()
        elif isinstance(ev, h2.events.StreamEnded) and st:
            st.ended = True
            st.wake()
        elif isinstance(ev, h2.events.StreamReset) and st:
            st.reset_code = ev.error_code
            st.wake()
            self._wake_window()
        elif isinstance(ev, h2.events.WindowUpdated):
            self._wake_window()

    def _wake_window(self) -> None:
        self.window_changed.set()
        self.window_changed = trio.Event()

    async def open_stream(
        self, headers: list[tuple[bytes, bytes]], *, end_stream: bool = False
    ) -> H2PeerStream:
        sid = self.conn.get_next_available_stream_id()
        st = H2PeerStream(self, sid)
        self.streams[sid] = st
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        await self.flush()
        return st

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        st = await self.open_stream([
            (b":method", method.encode()), (b":scheme", b"http"), (b":path", path.encode()),
            (b":authority", b"localhost"),
        ], end_stream=not body)
        if body:
            await st.send(body, end_stream=True)
        await st.response()
        return st.status, await st.read_all()

    async def websocket(
        self,
        path: str = "/",
        *,
        subprotocols: list[str] | None = None,
        deflate: bool = False,
        version: bytes = b"13",
        protocol: bytes = b"websocket",
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> tuple[H2PeerStream, H2WSPeer | None]:
        """Extended CONNECT (RFC 8441 §4). Returns the stream and, on ``:status 200``, the
        WebSocket on it."""
        headers = [
            (b":method", b"CONNECT"), (b":protocol", protocol), (b":scheme", b"http"),
            (b":path", path.encode()), (b":authority", b"localhost"),
            (b"sec-websocket-version", version),
        ]
        if subprotocols:
            headers.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
        if deflate:
            headers.append(
                (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")
            )
        headers += extra_headers or []
        st = await self.open_stream(headers)
        await st.response()
        if st.status != 200:
            return st, None
        return st, H2WSPeer(st, st.header(b"sec-websocket-extensions"))


@asynccontextmanager
async def open_h2_peer(
    port: int, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[H2Peer]:
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    if ssl_context is not None:
        tls = trio.SSLStream(stream, ssl_context, server_hostname="localhost")
        await tls.do_handshake()
        assert tls.selected_alpn_protocol() == "h2"
        stream = tls
    peer = H2Peer(stream)
    peer.conn.initiate_connection()
    # A large connection window, so many streams can receive at once.
    peer.conn.increment_flow_control_window(2**30)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer._reader)
            await peer.flush()
            await peer.settings_received.wait()
            try:
                yield peer
            finally:
                # No await here: in the cancelled scope, a Cancelled would replace (and the
                # nursery then swallow) an exception coming out of the test body.
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)
