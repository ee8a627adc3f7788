"""WebSocket sessions: the ASGI ``websocket`` protocol over an HTTP/1.1 upgrade (RFC 6455) or an
extended CONNECT stream (HTTP/2, RFC 8441; HTTP/3, RFC 9220 reuses :func:`serve_websocket_stream`).

Reading happens where it costs least. While the app waits in ``receive()``, its own task
reads the transport and parses the next message: one task step per message, and the app's
pace is the backpressure (the peer meets TCP or HTTP/2 flow control). When the app stays
away from ``receive()`` for ``AWAY_DELAY`` seconds (it only sends, or works at length), a
background reader takes over, so PINGs are answered and a CLOSE is seen meanwhile; it queues
at most ``websocket_max_queue`` messages, then stops reading, and hands reading back once the
app waits in ``receive()`` again. Beside them, per session:

* the control task: PINGs every ``websocket_ping_interval`` seconds (1011 when no PONG comes
  within ``websocket_ping_timeout``), the 1001 CLOSE of a graceful shutdown, and after any
  CLOSE, dropping a peer that does not finish the closing handshake within ``CLOSE_TIMEOUT``;
* the transport's write watchdog (HTTP/1.1): ``write_timeout`` for a stalled write.

Bytes leave through one FIFO lock: whoever changed the frame layer (the app's ``send()``, a
reader, the control task) drains everything it holds, in order, so a CLOSE for a protocol error
follows whatever the app had already sent. A reader leaves small control replies to a flush
already in progress rather than waiting behind it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio

from ._asgi import error_logger, log_app_exception
from ._errors import ClientDisconnected
from ._sansio._events import Request
from ._sansio._scope import ConnectionInfo, build_scope
from ._sansio._websocket import (
    BUSY,
    CloseReceived,
    ConnectionLost,
    ConnectOpening,
    H1Opening,
    HandshakeRejected,
    PongReceived,
    ProtocolFailure,
    WebSocketClosed,
    WebSocketProtocol,
    check_close_code,
    rejection_bytes,
)
from ._sansio._websocket import Message as WSMessage
from ._types import Headers, Message
from ._ws_transports import (
    H1Accept,
    HTTPStream,
    Inbox,
    Opening,
    SocketTransport,
    StreamAccept,
    StreamTransport,
    Transport,
)

if TYPE_CHECKING:
    from ._context import ServerContext

__all__ = ["H1WebSocket", "WebSocketSession", "serve_websocket_stream"]

#: Seconds to wait for the peer's CLOSE once ours is sent, before dropping the connection.
CLOSE_TIMEOUT = 5.0
#: Bytes of control replies (PONG, CLOSE) a reader leaves to a flush already in progress.
READER_FLUSH_LIMIT = 65536
#: Seconds the app may stay away from ``receive()`` before the background reader reads for it.
AWAY_DELAY = 1.0

_HANDSHAKE, _RESPONDING, _OPEN, _DONE = range(4)
_NOBODY, _APP, _BACKGROUND = range(3)  # who reads the transport


def _headers(raw: Any) -> Headers:
    return [(bytes(n).lower(), bytes(v)) for n, v in raw or ()]


def websocket_scope(
    request: Request, info: ConnectionInfo, subprotocols: list[str]
) -> dict[str, Any]:
    """The ASGI ``websocket`` scope, with the ``websocket.http.response`` extension."""
    scope = build_scope(request, info, websocket=True)
    scope["subprotocols"] = subprotocols
    # The connection's extensions are an HTTP scope's: keep those that are not response
    # messages of the http protocol (tls, statistics), then add the WebSocket one.
    extensions = {
        name: value for name, value in scope["extensions"].items()
        if not name.startswith("http.response.")
    }
    extensions["websocket.http.response"] = {}
    scope["extensions"] = extensions
    return scope


# --- the session -------------------------------------------------------------------------
class WebSocketSession:
    """One WebSocket, from ``websocket.connect`` to the end of the closing handshake."""

    def __init__(
        self, ctx: ServerContext, scope: dict[str, Any], opening: Opening, transport: Transport
    ) -> None:
        self.ctx = ctx
        self.scope = scope
        self.opening = opening
        self.transport = transport
        self.proto: WebSocketProtocol | None = None
        self._state = _HANDSHAKE
        self._connect_sent = False
        self._inbox = Inbox(ctx.config.websocket_max_queue)
        self._lock = trio.StrictFIFOLock()
        self._opened = trio.Event()
        # Set once nothing more will be read: closing handshake done, failure, or EOF.
        self._read_done = trio.Event()
        self._reading = _NOBODY
        self._in_receive = 0  # app tasks inside receive()
        self._waiting = 0  # app tasks waiting while the background reader reads
        self._receive_count = 0
        self._away_scope: trio.CancelScope | None = None
        self._away_armed_at = -1  # _receive_count when the away timer was armed; -1: unarmed
        self._app_gone = False
        self._shutdown = False
        self._wake = trio.Event()  # for the control task: shutdown or a CLOSE
        self._pong: trio.Event | None = None
        self._ping_payload = b""
        self._close_code: int | None = None
        self._close_reason = ""
        self._drop = False  # the peer is unresponsive: do not wait for its CLOSE

    def statistics(self) -> dict[str, int]:
        """Messages waiting for the app (and the limit), bytes waiting for the transport."""
        return {
            "queued_messages": len(self._inbox),
            "max_queued_messages": self.ctx.config.websocket_max_queue,
            "pending_output_bytes": self.proto.pending_output if self.proto else 0,
        }

    def begin_shutdown(self) -> None:
        """Graceful shutdown: close with 1001 (going away) once open."""
        self._shutdown = True
        self._wake.set()
        if self._pong is not None:
            self._pong.set()

    async def run(self) -> None:
        """Run the app and the session's tasks; returns once the WebSocket is over."""
        counters = self.ctx.counters
        counters.websockets_total += 1
        counters.websockets_open += 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._background_reader)
                nursery.start_soon(self._control)
                nursery.start_soon(self.transport.watchdog)
                try:
                    linger = await self._run_app()
                finally:
                    nursery.cancel_scope.cancel()
            await self.transport.finish(linger=linger)
        finally:
            counters.websockets_open -= 1

    async def _run_app(self) -> bool:
        """Run the app, then end what it left open. Returns True when the transport should
        linger (the closing handshake did not complete)."""
        ctx = self.ctx
        error = False
        try:
            await ctx.app(self.scope, self.receive, self.send)
        except Exception as exc:
            error = True
            ctx.counters.app_errors += 1
            if not (isinstance(exc, ClientDisconnected) and self.transport.broken):
                log_app_exception(self.scope, exc)
        if self._state == _HANDSHAKE:
            await self._deny(500 if error else 403)
            return False
        if self._state == _RESPONDING:
            if not error:
                error_logger.error(
                    "ASGI app returned without completing its websocket.http.response"
                )
            self.opening.abort()
            self._state = _DONE
            return False
        if self._state != _OPEN:
            return False
        proto = self.proto
        assert proto is not None
        # The background reader reads the rest of the closing handshake.
        self._app_gone = True
        if self._away_scope is not None:
            self._away_scope.cancel()
        try:
            await self._close_local(1011 if error else 1000, "")
            if not self._drop and not self._read_done.is_set():
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await self._read_done.wait()
            await self._flush()
        except ClientDisconnected:
            return False
        return not self._drop and (proto.failed or not proto.finished)

    async def _deny(self, status: int) -> None:
        self._state = _DONE
        self._close(1006, "")
        try:
            await self.opening.respond(status, [(b"content-length", b"0")])
            await self.opening.respond_body(b"", more=False)
        except ClientDisconnected:
            pass

    # --- ASGI receive/send --------------------------------------------------------------
    async def receive(self) -> Message:
        """``websocket.connect``, then ``websocket.receive`` messages (``text`` or ``bytes``),
        then ``websocket.disconnect`` with ``code`` and ``reason``."""
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        inbox = self._inbox
        self._in_receive += 1
        self._receive_count += 1
        try:
            while True:
                item = inbox.get_nowait()
                if item is not None:
                    return item
                if inbox.closed:
                    return {
                        "type": "websocket.disconnect",
                        "code": self._close_code or 1006,
                        "reason": self._close_reason,
                    }
                if self._reading != _NOBODY or self.proto is None:
                    # Not accepted yet, or the background reader holds the transport: it
                    # hands over after the next message.
                    self._waiting += 1
                    try:
                        await inbox.wait()
                    finally:
                        self._waiting -= 1
                    continue
                self._reading = _APP
                try:
                    msg = await self._pump(inline=True)
                finally:
                    self._reading = _NOBODY
                    if self._waiting:
                        inbox.wake()
                if msg is not None:
                    return msg
        finally:
            self._in_receive -= 1
            if not self._in_receive:
                self._arm_away()

    async def send(self, message: Message) -> None:
        """Raises :class:`ClientDisconnected` for ``websocket.send`` once the WebSocket is
        closing or closed; :class:`RuntimeError`, :class:`TypeError` or :class:`ValueError` for
        a message that is invalid or out of order."""
        t = message["type"]
        if t == "websocket.send":
            proto = self.proto
            if proto is None or self._state != _OPEN:
                if self._state == _DONE:
                    raise ClientDisconnected("the WebSocket is closed")
                raise RuntimeError("ASGI: websocket.send before websocket.accept")
            if self._close_code is not None or self.transport.broken:
                raise ClientDisconnected("the WebSocket is closed")
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                if type(data) is not str:
                    raise TypeError("websocket.send needs 'bytes' or 'text'")
            elif type(data) is not bytes:
                data = bytes(data)
            try:
                proto.send_message(data)
            except WebSocketClosed:
                raise ClientDisconnected("the WebSocket is closed") from None
            await self._flush()
        elif t == "websocket.accept":
            await self._accept(message)
        elif t == "websocket.close":
            if self._state == _HANDSHAKE:
                await self._deny(403)
            elif self._state == _OPEN:
                code = message.get("code")
                code = 1000 if code is None else code
                check_close_code(code)
                try:
                    await self._close_local(code, message.get("reason") or "")
                except ClientDisconnected:
                    pass  # closing what is already gone is not an error
            elif self._state == _RESPONDING:
                raise RuntimeError("ASGI: websocket.close during websocket.http.response")
        elif t == "websocket.http.response.start":
            if self._state != _HANDSHAKE:
                raise RuntimeError("ASGI: websocket.http.response.start after the handshake")
            status = message.get("status")
            if type(status) is not int or not 100 <= status <= 599 or status == 101:
                raise ValueError(f"websocket.http.response.start: invalid status {status!r}")
            await self.opening.respond(status, _headers(message.get("headers")))
            self._state = _RESPONDING
            self._close(1006, "")
        elif t == "websocket.http.response.body":
            if self._state != _RESPONDING:
                raise RuntimeError("ASGI: websocket.http.response.body without a response start")
            more = bool(message.get("more_body", False))
            await self.opening.respond_body(bytes(message.get("body", b"")), more=more)
            if not more:
                self._state = _DONE
        else:
            raise RuntimeError(f"ASGI: unexpected message type {t!r} for a websocket scope")

    async def _accept(self, message: Message) -> None:
        if self._state != _HANDSHAKE:
            raise RuntimeError("ASGI: websocket.accept after the handshake")
        cfg = self.ctx.config
        subprotocol = message.get("subprotocol")
        try:
            proto = await self.opening.accept(
                subprotocol,
                _headers(message.get("headers")),
                deflate=cfg.websocket_per_message_deflate,
                max_message_size=cfg.websocket_max_message_size,
            )
        except ClientDisconnected:
            self._state = _DONE
            self._close(1006, "")
            raise
        self.proto = proto
        self._state = _OPEN
        self._opened.set()
        self._inbox.wake()  # an app task may already wait in receive()

    # --- closing and writing ------------------------------------------------------------
    def _close(self, code: int, reason: str) -> None:
        """Record who closed first (the code the app will see) and end the inbox."""
        if self._close_code is None:
            self._close_code = code
            self._close_reason = reason
        self._inbox.close()
        self._wake.set()
        if self._pong is not None:
            self._pong.set()

    async def _close_local(self, code: int, reason: str) -> None:
        proto = self.proto
        assert proto is not None
        if self._close_code is None and proto.open:
            proto.close(code, reason)
            self._close(code, reason)
        await self._flush()

    async def _flush(self) -> None:
        """Send everything the frame layer holds. Raises :class:`ClientDisconnected`."""
        proto = self.proto
        assert proto is not None
        lock = self._lock
        transport = self.transport
        while True:
            data: bytes | memoryview = proto.data_to_send()
            if not data:
                return
            if lock.locked():
                await lock.acquire()  # another task's write is under way: after it
            else:
                # No write is under way (the lock is held only across a write that waits),
                # so one the kernel takes whole needs no lock: taking one costs more.
                await trio.lowlevel.checkpoint_if_cancelled()
                sent = transport.send_now(data)  # type: ignore[arg-type]
                if sent == len(data):
                    await transport.after_send_now()
                    continue
                if sent:
                    data = memoryview(data)[sent:]
                lock.acquire_nowait()
            try:
                await transport.send_all(data)
            finally:
                lock.release()

    async def _flush_shielded(self) -> None:
        """:meth:`_flush` for the app's task while it reads: an app may cancel its
        ``receive()`` (a timeout), and a write cut short would break the framing on the wire.
        Bounded by ``write_timeout`` (or ``CLOSE_TIMEOUT``)."""
        limit = self.ctx.config.write_timeout or CLOSE_TIMEOUT
        with trio.CancelScope(shield=True, deadline=trio.current_time() + limit):
            await self._flush()

    # --- reading ------------------------------------------------------------------------
    async def _pump(self, *, inline: bool) -> Message | None:
        """Read and parse until the next message: returned when ``inline`` (the app reads),
        else queued in the inbox. Returns ``None`` once nothing more will be read, or (not
        ``inline``) after a message when an app task waits to read for itself. PINGs and
        CLOSEs are answered here."""
        proto = self.proto
        assert proto is not None
        transport = self.transport
        inbox = self._inbox
        lock = self._lock
        try:
            while True:
                ev = proto.next_event()
                if ev is None:
                    if proto.pending_output and (
                        not lock.locked() or proto.pending_output > READER_FLUSH_LIMIT
                        or proto.finished
                    ):
                        if inline:
                            await self._flush_shielded()
                        else:
                            await self._flush()
                    if proto.finished:
                        self._close(1006, "")
                        self._read_done.set()
                        return None
                    chunk = await transport.receive_some()
                    if chunk:
                        proto.receive_data(chunk)
                    else:
                        proto.receive_eof()
                    continue
                if ev is BUSY:
                    # A flood of tiny frames: let other connections have a turn.
                    await trio.lowlevel.checkpoint()
                    continue
                t = type(ev)
                if t is WSMessage:
                    if self._close_code is not None or self._app_gone:
                        continue  # closing: late messages are dropped
                    data = ev.data  # type: ignore[union-attr]
                    msg: Message = (
                        {"type": "websocket.receive", "text": data} if type(data) is str
                        else {"type": "websocket.receive", "bytes": data}
                    )
                    if inline:
                        return msg
                    if not inbox.put_nowait(msg):
                        if proto.pending_output:
                            await self._flush()  # answer PINGs before we stop reading
                        await inbox.put(msg)
                    if self._waiting:
                        return None  # the app is back: it reads for itself from now on
                elif t is PongReceived:
                    if self._pong is not None and ev.payload == self._ping_payload:  # type: ignore[union-attr]
                        self._pong.set()
                elif t is CloseReceived:
                    self._close(ev.code, ev.reason)  # type: ignore[union-attr]
                elif t is ProtocolFailure:
                    self.ctx.counters.protocol_errors += 1
                    self._close(ev.code, ev.reason)  # type: ignore[union-attr]
                elif t is ConnectionLost:
                    self._close(1006, "")
        except ClientDisconnected:
            self._close(1006, "")
            self._read_done.set()
            return None

    def _arm_away(self) -> None:
        """The app left ``receive()``: start the away timer unless it runs already."""
        scope = self._away_scope
        if scope is not None and self._away_armed_at < 0:
            self._away_armed_at = self._receive_count
            scope.deadline = trio.current_time() + AWAY_DELAY

    async def _background_reader(self) -> None:
        await self._opened.wait()
        rearm = True  # the app may never call receive(): time its absence from the start
        while not self._read_done.is_set():
            if not self._app_gone:
                with trio.CancelScope() as self._away_scope:
                    if rearm and not self._in_receive:
                        self._arm_away()
                    await trio.sleep_forever()
                self._away_scope = None
                armed_at, self._away_armed_at = self._away_armed_at, -1
                rearm = False
                if not self._app_gone:
                    if self._in_receive:
                        continue  # the app reads; it restarts the timer when it leaves
                    if armed_at != self._receive_count:
                        rearm = True  # it came and went since: away for less than the delay
                        continue
            if self._reading != _NOBODY:
                # Only if the app left a task reading behind it: give that one time.
                await trio.sleep(AWAY_DELAY)
                continue
            self._reading = _BACKGROUND
            try:
                await self._pump(inline=False)
            finally:
                self._reading = _NOBODY
                if self._waiting:
                    self._inbox.wake()
            rearm = True

    async def _control(self) -> None:
        await self._opened.wait()
        proto = self.proto
        assert proto is not None
        cfg = self.ctx.config
        interval = cfg.websocket_ping_interval
        count = 0
        try:
            while proto.open and not self._shutdown:
                with trio.move_on_after(interval if interval is not None else math.inf):
                    await self._wake.wait()
                if self._shutdown or not proto.open:
                    break
                count += 1
                self._ping_payload = b"%d" % count
                pong = self._pong = trio.Event()
                proto.send_ping(self._ping_payload)
                await self._flush()
                with trio.move_on_after(cfg.websocket_ping_timeout):
                    await pong.wait()
                if self._shutdown or not proto.open:
                    break
                if not pong.is_set():
                    self._drop = True
                    await self._close_local(1011, "keepalive ping timeout")
                    await self.transport.abort()
                    return
            if self._shutdown:
                await self._close_local(1001, "server shutting down")
            # A CLOSE went out (ours or our reply): a peer that does not finish the closing
            # handshake in time is dropped, which also ends an app task reading meanwhile.
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self._read_done.wait()
            if not self._read_done.is_set():
                self._drop = True
                await self.transport.abort()
        except (ClientDisconnected, WebSocketClosed):
            pass


# --- entry points ------------------------------------------------------------------------
class H1WebSocket:
    """A WebSocket on an HTTP/1.1 connection after ``Upgrade: websocket``: ``request`` is the
    upgrade request, ``data`` the bytes that followed it. :meth:`run` returns when the
    WebSocket is over; the caller then closes the connection."""

    def __init__(
        self, stream: trio.abc.Stream, ctx: ServerContext, info: ConnectionInfo,
        request: Request, data: bytes,
    ) -> None:
        self.ctx = ctx
        self.info = info
        self.request = request
        self.data = data
        cfg = ctx.config
        self.transport = SocketTransport(stream, cfg.read_size, cfg.write_timeout)
        self.session: WebSocketSession | None = None
        self._shutdown = False

    def begin_shutdown(self) -> None:
        self._shutdown = True
        if self.session is not None:
            self.session.begin_shutdown()

    async def run(self) -> None:
        try:
            opening = H1Opening(self.request)
        except HandshakeRejected as exc:
            self.ctx.counters.protocol_errors += 1
            try:
                await self.transport.send_all(rejection_bytes(exc))
            except ClientDisconnected:
                pass
            return
        scope = websocket_scope(self.request, self.info, opening.subprotocols)
        session = WebSocketSession(
            self.ctx, scope, H1Accept(opening, self.transport, self.data), self.transport
        )
        self.session = session
        if self._shutdown:
            session.begin_shutdown()
        await session.run()


async def serve_websocket_stream(
    ctx: ServerContext, info: ConnectionInfo, stream: HTTPStream, live: set[WebSocketSession]
) -> None:
    """Serve an extended CONNECT stream (``:protocol websocket``) of HTTP/2 or HTTP/3. The
    session is in ``live`` while it runs, for the connection's graceful shutdown."""
    try:
        opening = ConnectOpening(stream.request)
    except HandshakeRejected as exc:
        ctx.counters.protocol_errors += 1
        try:
            await stream.send({"type": "http.response.start", "status": exc.status_code,
                               "headers": exc.headers})
            await stream.send({"type": "http.response.body", "body": b""})
        except ClientDisconnected:
            pass
        return
    scope = websocket_scope(stream.request, info, opening.subprotocols)
    transport = StreamTransport(stream)
    session = WebSocketSession(ctx, scope, StreamAccept(opening, stream), transport)
    live.add(session)
    try:
        await session.run()
    finally:
        live.discard(session)
