"""HTTP/1.1 connections: one task reads, runs the app and writes (no task per request, no
channel hop per message: see DESIGN.md, "The cost of a request").

While the app runs, ``receive()`` reads the socket itself: the body first, then, once the body is
done, it waits for the peer to go away (``http.disconnect``) or for the response to complete.
Bytes of a pipelined next request that arrive meanwhile stay buffered in h11 (at most
``max_request_header_size`` of them before reading pauses).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import trio

from ._asgi import error_logger, log_access, log_app_exception
from ._errors import ClientDisconnected, ProtocolError
from ._h1_cycle import Cycle
from ._sansio._events import NEED_DATA, Data, EndOfMessage, Request
from ._sansio._h1_parser import make_h1_connection
from ._sansio._http1 import RequestLimits
from ._sansio._scope import ConnectionInfo, build_scope
from ._sockio import advance, raw_socket, receive_after_yield, try_send

if TYPE_CHECKING:
    from ._context import ServerContext

__all__ = ["H1Server", "Takeover"]


class Takeover(NamedTuple):
    """An upgrade the HTTP/1.1 loop hands to its caller: the request, the bytes that followed
    it (the new protocol's), and the request body already read (h2c)."""

    request: Request
    data: bytes
    body: bytes

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)
#: Bytes under which queued pieces are joined into one write.
_COALESCE = 65536


def _coalesce(parts: list[bytes | memoryview]) -> Iterator[bytes | memoryview]:
    # One write for the usual small response; past _COALESCE bytes, big pieces go out as they
    # are (a megabyte joined is a fresh allocation and copy per response).
    if len(parts) == 1:
        yield parts[0]
        return
    chunk: list[bytes | memoryview] = []
    for part in parts:
        if len(part) >= _COALESCE:
            if chunk:
                yield b"".join(chunk)
                chunk = []
            yield part
        else:
            chunk.append(part)
    if chunk:
        yield b"".join(chunk)


class H1Server:
    """Serves one HTTP/1.1 connection over ``stream``. ``data`` is what was already read from it
    (while choosing the protocol). :meth:`run` returns when the connection should be closed, or
    hands over to HTTP/2 after ``Upgrade: h2c``."""

    def __init__(
        self, stream: trio.abc.Stream, ctx: ServerContext, info: ConnectionInfo, data: bytes = b""
    ) -> None:
        self.stream = stream
        #: The plain socket under ``stream`` for the hot path's direct calls (_sockio.py).
        self._sock = raw_socket(stream)
        self.ctx = ctx
        self.info = info
        cfg = ctx.config
        self.conn = make_h1_connection(
            cfg.h1_parser, max_request_header_size=cfg.max_request_header_size,
            limits=RequestLimits(
                max_request_line_size=cfg.max_request_line_size,
                max_request_header_size=cfg.max_request_header_size,
                max_request_header_count=cfg.max_request_header_count,
                max_request_body_size=cfg.max_request_body_size,
                server_names=ctx.server_names,
            ),
        )
        if data:
            self.conn.receive_data(data)
        # One cancel scope for the whole connection, armed only while waiting for a request
        # head (see run()): moving a deadline costs less than entering a scope per request.
        self._watchdog: trio.CancelScope | None = None
        self._head_reading = False  # waiting for a request head: begin_shutdown may stop it
        # Head timeouts armed lazily (see _head_timeouts.py): the wait's end, and whether the
        # watchdog has it as its deadline.
        self.head_deadline = math.inf
        self._armed = False
        self._head_begun = False  # ...and part of it is here (its timeout is a 408)
        self._shutdown = False
        self._read_size = ctx.config.read_size
        self._write_lock = trio.StrictFIFOLock()
        self._requests = 0  # requests begun on this connection
        self.max_body = cfg.max_request_body_size
        self.broken = False  # the socket failed or the peer closed

    @property
    def head_waiting(self) -> bool:
        """Waiting for a request head with no deadline armed (for :class:`HeadTimeouts`)."""
        return self._head_reading and not self._armed

    def arm_head_deadline(self) -> None:
        """Called by :class:`HeadTimeouts` when this connection's head wait is nearly due."""
        if self._watchdog is not None:
            self._armed = True
            self._watchdog.deadline = self.head_deadline

    def begin_shutdown(self) -> None:
        self._shutdown = True
        self.conn.close_after_response()
        if self._head_reading and self._watchdog is not None:
            self._watchdog.cancel()

    # --- socket helpers ----------------------------------------------------------------
    async def _read(self) -> bytes:
        try:
            data = await self.stream.receive_some(self._read_size)
        except _STREAM_ERRORS:
            data = b""
        if not data:
            self.broken = True
        return bytes(data)

    async def _read_head(self) -> bytes:
        """Read while waiting for a request head (a checkpoint: the watchdog's deadline
        applies)."""
        if self._sock is None:
            return await self._read()
        data = await receive_after_yield(self._sock, self._read_size)
        if not data:
            self.broken = True
        return data

    async def _write(self, data: bytes | memoryview) -> None:
        """Write all of ``data`` (see :meth:`_write_parts`)."""
        await self._write_parts([data])

    async def _flush(self, checkpoint: bool = True) -> None:
        """Write what the state machine has queued; ``checkpoint=False`` for a response's last
        flush (see :meth:`_write_parts`)."""
        parts: list[bytes | memoryview] = self.conn.data_to_send_parts()  # type: ignore[assignment]
        if parts:
            await self._write_parts(parts, checkpoint)

    async def _write_parts(self, parts: list[bytes | memoryview], checkpoint: bool = True) -> None:
        """Write all of ``parts`` (consumed), in order, under ``write_timeout``; raises
        :exc:`ClientDisconnected` if the connection failed or stalled.

        With ``checkpoint=False`` (a response's last write: the connection loop's next read is
        a checkpoint) a write the kernel takes at once does not go through the scheduler."""
        if self.broken:
            raise ClientDisconnected("the client has disconnected")
        lock = self._write_lock
        sock = self._sock
        try:
            if sock is not None and not lock.locked():
                # No write is under way (the lock is held only across a wait), so one the
                # kernel takes at once needs no lock: taking one costs more than the write.
                # sendmsg() gathers a head and its body: no joining copy.
                await trio.lowlevel.checkpoint_if_cancelled()
                advance(parts, try_send(sock, parts))
                if not parts:
                    if checkpoint:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return
            async with lock:
                if sock is not None:
                    while parts:
                        await self._bounded(trio.lowlevel.wait_writable, sock)
                        advance(parts, try_send(sock, parts))
                else:
                    for data in _coalesce(parts):
                        await self._bounded(self.stream.send_all, data)
        except (*_STREAM_ERRORS, trio.TooSlowError, OSError) as exc:
            self.broken = True
            raise ClientDisconnected("the client has disconnected") from exc

    async def _bounded(self, fn: Callable[[Any], Awaitable[object]], arg: Any) -> None:
        """``await fn(arg)`` (a write, or a wait for room to write) under ``write_timeout``;
        raises :exc:`trio.TooSlowError` when it passes."""
        timeout = self.ctx.config.write_timeout
        watchdog = self._watchdog
        if timeout is None:
            await fn(arg)
        elif watchdog is not None:
            # The connection's watchdog (see run()) bounds the write: moving its deadline
            # costs less than a scope per write. Once fired it stays cancelled: the app is
            # told ClientDisconnected here and is cancelled at its next checkpoint.
            watchdog.deadline = trio.current_time() + timeout
            try:
                await fn(arg)
            except trio.Cancelled:
                if not watchdog.cancel_called:
                    raise
                raise trio.TooSlowError from None
            finally:
                watchdog.deadline = math.inf
            if watchdog.cancel_called:
                self.broken = True  # the deadline passed as the write ended
        else:
            # A bare CancelScope: trio.fail_after wraps one in a generator context manager,
            # which costs more than the write itself on this path.
            with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
                await fn(arg)
            if scope.cancelled_caught:
                raise trio.TooSlowError

    async def _read_body(self) -> bytes | None:
        """Read more of a request body; ``None`` when none came for ``body_read_timeout``
        seconds (a slow or stalled sender)."""
        timeout = self.ctx.config.body_read_timeout
        if timeout is None:
            return await self._read()
        with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
            return await self._read()
        assert scope.cancelled_caught
        return None

    # --- the connection loop ----------------------------------------------------------
    async def run(self) -> Takeover | None:
        """Serve requests until the connection must close. Returns a :class:`Takeover` when the
        peer asked to upgrade to a protocol served elsewhere (h2c, websocket)."""
        # The watchdog has a deadline only while a head is awaited (keep-alive or head
        # timeout) or a write is under way (write_timeout), and begin_shutdown cancels it only
        # while a head is awaited: no read deadline ever cancels the app, which runs inside
        # it. Once fired it stays cancelled, so the connection ends.
        timeouts = self.ctx.head_timeouts
        with trio.CancelScope() as watchdog:
            self._watchdog = watchdog
            timeouts.add(self)
            try:
                return await self._serve(watchdog)
            finally:
                timeouts.discard(self)
                self._watchdog = None
        # The watchdog fired: a head read timed out or was stopped by begin_shutdown, or a
        # write stalled past write_timeout (then _head_reading is False).
        if self._head_reading and self._head_begun and not self._shutdown:
            self.ctx.counters.protocol_errors += 1
            self.conn.send_error(408, "request head timeout")
            try:
                await self._flush()
            except ClientDisconnected:
                pass
        return None

    async def _serve(self, watchdog: trio.CancelScope) -> Takeover | None:
        conn = self.conn
        cfg = self.ctx.config
        keep_alive = cfg.keep_alive_timeout
        head_timeout = cfg.request_head_timeout
        max_requests = cfg.max_requests_per_connection
        counters = self.ctx.counters
        timeouts = self.ctx.head_timeouts
        after_cycle = False  # a cycle ended: if the next request is here already, yield first
        # Each request's app runs in a copy of the connection's context, as it would in a task
        # of its own (HTTP/2 and HTTP/3 start one per stream; Uvicorn and Hypercorn one per
        # request): a context variable the app sets (a user, a request id, structlog's bound
        # values) must not still be set for the next request on this connection. A task per
        # request would cost a trip through the scheduler; a coroutine driven step by step in
        # Context.run costs 3% of a request. trio runs each step of a task in task.context, so
        # a new copy put there before the yield that precedes the next app call (the head
        # read, or the checkpoint before a pipelined request) is the context the app runs in.
        task = trio.lowlevel.current_task()
        base = task.context.copy()
        try:
            while True:
                if after_cycle:
                    task.context = base.copy()
                event = conn.next_event()
                if after_cycle and event is not NEED_DATA:
                    # A response's last write skips its checkpoint (see _write) because the
                    # head read below is one; a pipelined request skips that read.
                    await trio.lowlevel.checkpoint()
                after_cycle = True
                # Once part of a head is here, the rest must follow within head_timeout of
                # that, however it trickles in (slowloris); before, keep_alive applies.
                head_deadline = None
                while event is NEED_DATA:
                    if self._shutdown and conn.buffered == 0:
                        return None
                    now = trio.current_time()
                    if conn.buffered == 0:
                        deadline = now + keep_alive
                    else:
                        if head_deadline is None:
                            head_deadline = (
                                now + head_timeout if head_timeout is not None else math.inf
                            )
                        deadline = head_deadline
                    self._head_begun = head_deadline is not None
                    self._head_reading = True
                    # The watchdog's Cancelled ends run() in _read_head. Once armed, the
                    # deadline stays until the head is complete (see below the loop).
                    self.head_deadline = deadline
                    # While HeadTimeouts runs, it arms the deadline if the wait nears it.
                    if self._armed:
                        if watchdog.deadline != deadline:  # keep-alive, then head timeout
                            watchdog.deadline = deadline
                    elif not timeouts.running:
                        self._armed = True
                        watchdog.deadline = deadline
                    data = await self._read_head()
                    self._head_reading = False
                    if watchdog.cancel_called:
                        # The deadline passed (or shutdown began) just as the bytes came:
                        # a timeout all the same, and the app must not start cancelled.
                        await trio.lowlevel.checkpoint()
                    if data:
                        conn.receive_data(data)
                    else:
                        conn.receive_eof()
                    event = conn.next_event()
                if self._armed:
                    # The head is here: no deadline while the app runs.
                    self._armed = False
                    watchdog.deadline = math.inf
                if type(event) is not Request:
                    return None  # ConnectionTerminated (EOF) or a stray event
                counters.requests_total += 1
                self._requests += 1
                if max_requests is not None and self._requests >= max_requests:
                    conn.close_after_response()
                if event.upgrade is not None:
                    takeover = await self._maybe_upgrade(event)
                    if takeover is not None:
                        return takeover
                await self._run_app(event)
                if self.broken or not conn.start_next_cycle():
                    return None
        except ProtocolError as exc:
            counters.protocol_errors += 1
            conn.send_error(exc.status_code, str(exc))
            try:
                await self._flush()
            except ClientDisconnected:
                pass
            return None

    async def _maybe_upgrade(self, request: Request) -> Takeover | None:
        """h2c (RFC 7540 §3.2): read the whole request body, then switch. The body is handed
        to the HTTP/2 layer with the request. Other upgrades are served by the caller
        (websocket) or ignored."""
        if request.upgrade == b"websocket" and request.method == b"GET":
            return await self._websocket_takeover(request)
        if (request.upgrade != b"h2c" or self.info.tls or self._shutdown
                or self.ctx.config.h2c not in ("both", "upgrade")):
            return None
        if not any(n == b"http2-settings" for n, _ in request.headers):
            return None
        body = bytearray()
        limit = self.ctx.config.h2_initial_window_size
        for name, value in request.headers:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                # Too large to buffer for stream 1: the upgrade is optional (RFC 9110 §7.8),
                # so serve this request over HTTP/1.1 instead.
                return None
        while True:
            event = self.conn.next_event()
            if type(event) is Data:
                body += event.data
                if len(body) > limit:
                    # Too large to replay on stream 1's window: answer over HTTP/1.1 instead.
                    # The body read so far is lost, so the app would see a truncated body;
                    # refuse with 413 rather than serve it wrongly.
                    raise ProtocolError("h2c upgrade request body too large", status_code=413)
            elif type(event) is EndOfMessage:
                break
            elif event is NEED_DATA:
                data = await self._read_body()
                if data is None:
                    raise ProtocolError("request body timeout", status_code=408)
                if not data:
                    return None
                self.conn.receive_data(data)
            else:
                return None
        self.conn.send_informational(101, [(b"connection", b"Upgrade"), (b"upgrade", b"h2c")])
        rest = self.conn.trailing_data
        await self._flush()
        return Takeover(request, rest, bytes(body))

    async def _websocket_takeover(self, request: Request) -> Takeover:
        """RFC 6455 §4.1: the upgrade request has no body, and the bytes after it are
        WebSocket frames for the caller's handler (_websocket.H1WebSocket)."""
        if self._shutdown:
            raise ProtocolError("the server is shutting down", status_code=503)
        while True:
            event = self.conn.next_event()
            if type(event) is EndOfMessage:
                return Takeover(request, self.conn.trailing_data, b"")
            if event is NEED_DATA:
                data = await self._read_body()
                if data is None:
                    raise ProtocolError("request body timeout", status_code=408)
                if not data:
                    raise ProtocolError("the peer closed during the WebSocket handshake")
                self.conn.receive_data(data)
            elif type(event) is not Data or event.data:
                raise ProtocolError("a WebSocket upgrade request may not have a body")

    async def _run_app(self, request: Request) -> None:
        ctx = self.ctx
        cycle = Cycle(self, request)
        scope = build_scope(request, self.info)
        cycle.scope = scope
        try:
            await ctx.app(scope, cycle.receive, cycle.send)
        except Exception as exc:
            ctx.counters.app_errors += 1
            if not (self.broken and isinstance(exc, ClientDisconnected)):
                log_app_exception(scope, exc)
            await cycle.fail()
        else:
            if not self.conn.response_complete:
                if self.conn.response_started:
                    error_logger.error("ASGI app returned without completing its response")
                else:
                    error_logger.error("ASGI app returned without sending a response")
                await cycle.fail()
        if ctx.access_log:
            log_access(
                ctx.config.access_log_format, scope, cycle.status, cycle.sent, cycle.started,
                cycle.response_headers,
            )
        if not self.broken and self.conn.response_complete and not self.conn.request_complete:
            self._drain_buffered_body()

    def _drain_buffered_body(self) -> None:
        # The app did not read the whole body. If the rest is already here, skip it so the
        # connection can be reused; otherwise h11 will refuse the next cycle and we close.
        try:
            while True:
                event = self.conn.next_event()
                if type(event) is not Data:
                    return
        except ProtocolError:
            self.broken = True
