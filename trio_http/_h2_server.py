"""HTTP/2 connections: a nursery per connection holding a reader, the single writer, and one
task per stream running the app.

Backpressure, edge by edge:

* socket -> stream: the reader never awaits a stream. DATA goes into the stream's inbox, which is
  bounded in bytes by the stream's receive window (the peer cannot send more), and the credit
  goes back only when the app's ``receive()`` takes the bytes.
* app -> socket: ``send()`` queues frames into h2's output buffer as far as the stream's send
  window allows and waits for WINDOW_UPDATE on that stream alone; it also waits while more than
  ``h2_write_buffer_size`` bytes are queued for the writer.
* the writer takes everything h2 has queued in one go, so frames from many streams leave in one
  write.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from ._asgi import error_logger
from ._errors import ClientDisconnected
from ._extensions import (
    PUSH_QUEUE,
    h2_push,
    serve_pushes,
)
from ._sansio._events import (
    ConnectionTerminated,
    Data,
    EndOfMessage,
    Event,
    Request,
    StreamReset,
    WindowUpdated,
)
from ._sansio._http2 import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    INTERNAL_ERROR,
    H2Connection,
    StreamClosed,
)
from ._sansio._scope import ConnectionInfo
from ._sockio import raw_socket, receive_after_wait, try_send
from ._stream_bridge import StreamBridge
from ._types import Message
from ._websocket import WebSocketSession, serve_websocket_stream

if TYPE_CHECKING:
    from ._context import ServerContext

__all__ = ["H2Server"]

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


class H2Server:
    """Serves one HTTP/2 connection over ``stream``."""

    def __init__(self, stream: trio.abc.Stream, ctx: ServerContext, info: ConnectionInfo) -> None:
        cfg = ctx.config
        self.stream = stream
        self.ctx = ctx
        self.info = info
        self.conn = H2Connection(
            max_concurrent_streams=cfg.h2_max_concurrent_streams,
            initial_window_size=cfg.h2_initial_window_size,
            max_frame_size=cfg.h2_max_frame_size,
            max_header_list_size=cfg.h2_max_header_list_size,
            reset_budget=cfg.h2_reset_budget,
            control_frame_budget=cfg.h2_control_frame_budget,
            max_request_header_count=cfg.max_request_header_count,
            max_request_line_size=cfg.max_request_line_size,
            max_request_body_size=cfg.max_request_body_size,
            server_names=ctx.server_names,
        )
        self.streams: dict[int, _Stream] = {}
        #: Open WebSocket sessions (RFC 8441 streams), told to close with 1001 on shutdown.
        self.websockets: set[WebSocketSession] = set()
        self._write_wanted = trio.Event()
        self._drained = trio.Event()
        self._queued = 0  # bytes queued in h2 since the writer last took them
        self._reader_scope: trio.CancelScope | None = None
        # Keepalive PINGs: the task's scope (cancelled when the connection ends) and the
        # event the reader sets when the ACK of the PING in flight arrives.
        self._keepalive_scope = trio.CancelScope()
        self._ping_acked: trio.Event | None = None
        self._read_scope: trio.CancelScope | None = None  # the reader's current receive
        # Idle (no stream active) since when: the keep-alive deadline runs from here, and
        # frames that open no stream (PING...) do not push it back.
        self._idle_since = trio.current_time()
        self._streams_opened = 0
        # Bytes of output (control frames and responses) queued for a peer before the reader
        # stops reading from it: a peer that sends PINGs but reads nothing fills no memory.
        self._max_output = max(1 << 20, 4 * cfg.h2_write_buffer_size)
        self._closing = False  # no new streams; end once the active ones finish
        self._finished = False  # the reader is done: the writer flushes and returns
        self.broken = False
        #: Requests promised by server push, for serve_pushes to start (PUSH_QUEUE of them).
        self.pushes, self._pushed = trio.open_memory_channel[Request](PUSH_QUEUE)

    # --- lifecycle -------------------------------------------------------------------
    def begin_shutdown(self) -> None:
        self.conn.start_shutdown()
        self._closing = True
        for ws in list(self.websockets):
            ws.begin_shutdown()
        self.kick()
        self._maybe_finish()

    def _idle_deadline(self) -> float:
        if self.conn.active:
            return math.inf
        return self._idle_since + self.ctx.config.keep_alive_timeout

    def _maybe_finish(self) -> None:
        if self._closing and not self.conn.active and self._reader_scope is not None:
            self._reader_scope.cancel()

    async def run(
        self, data: bytes = b"", upgrade: tuple[Request, bytes, bytes] | None = None
    ) -> None:
        """Serve until the peer closes, the connection fails, or shutdown completes.
        ``upgrade`` is ``(request, settings_header, body)`` after ``Upgrade: h2c``."""
        conn = self.conn
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer)
            nursery.start_soon(serve_pushes, self, self._pushed, nursery)
            if self.ctx.config.h2_ping_interval is not None:
                nursery.start_soon(self._keepalive)
            if upgrade is not None:
                request, settings, body = upgrade
                conn.initiate_upgrade(settings, request)
                request.http_version = "2"
                st = self._open_stream(request, nursery)
                if body:
                    st.inbox.append((body, 0))
                    st.buffered += len(body)
                st.ended = True
            else:
                conn.initiate()
            if data:
                self._handle(conn.receive_data(data, trio.current_time()), nursery)
            self.kick()
            try:
                await self._reader(nursery)
            finally:
                # The connection is over: streams still running have lost their peer.
                for st in list(self.streams.values()):
                    st.disconnect()
                    st.cancel_scope.cancel()
                conn.close()
                self._closing = True
                self._keepalive_scope.cancel()
                self.pushes.close()  # serve_pushes returns
                # The writer flushes the final GOAWAY and returns (bounded by write_timeout,
                # or by the shutdown deadline); the nursery then closes.
                self._finished = True
                self.kick()

    async def _reader(self, nursery: trio.Nursery) -> None:
        conn = self.conn
        cfg = self.ctx.config
        read_size = cfg.read_size
        head_timeout = cfg.request_head_timeout
        sock = raw_socket(self.stream)  # h2c: the direct calls of _sockio.py
        with trio.CancelScope() as self._reader_scope:
            self._maybe_finish()
            while not conn.terminated:
                deadline = self._idle_deadline()
                block = conn.header_block_started
                if block is not None and head_timeout is not None:
                    deadline = min(deadline, block + head_timeout)
                with trio.CancelScope(deadline=deadline) as s:
                    self._read_scope = s
                    data: bytes | bytearray
                    if sock is not None:
                        data = await receive_after_wait(sock, read_size)
                    else:
                        try:
                            data = await self.stream.receive_some(read_size)
                        except _STREAM_ERRORS:
                            data = b""
                self._read_scope = None
                if s.cancelled_caught:
                    if conn.header_block_started is not None:
                        # A header block trickling in (slowloris over HTTP/2).
                        self.ctx.counters.protocol_errors += 1
                        conn.close(ENHANCE_YOUR_CALM)
                    else:
                        conn.start_shutdown()  # idle too long: GOAWAY and close
                    break
                if data:
                    events = conn.receive_data(bytes(data), trio.current_time())
                else:
                    events = conn.receive_eof()
                    self.broken = True
                self._handle(events, nursery)
                self.kick()
                if self._ping_acked is not None and not conn.ping_outstanding:
                    self._ping_acked.set()
                if self._closing and not conn.active:
                    break
                while conn.pending_output > self._max_output and not self.broken:
                    # The peer is not reading what it asks for: stop reading until it does
                    # (or the write timeout drops it).
                    await self._drained.wait()

    def _handle(self, events: list[Event], nursery: trio.Nursery) -> None:
        streams = self.streams
        for ev in events:
            t = type(ev)
            if t is Data:
                st = streams.get(ev.stream_id)  # type: ignore[union-attr]
                if st is not None:
                    st.inbox.append((ev.data, ev.flow_controlled_length))  # type: ignore[union-attr]
                    st.buffered += len(ev.data)  # type: ignore[union-attr]
                    st.wake()
                else:
                    self.conn.acknowledge_data(ev.stream_id, ev.flow_controlled_length)  # type: ignore[union-attr]
            elif t is Request:
                if self._closing:
                    self.conn.refuse_stream(ev.stream_id)  # type: ignore[union-attr]
                    continue
                self._open_stream(ev, nursery)  # type: ignore[arg-type]
            elif t is EndOfMessage:
                st = streams.get(ev.stream_id)  # type: ignore[union-attr]
                if st is not None:
                    st.ended = True
                    st.wake()
            elif t is WindowUpdated:
                if ev.stream_id == 0:  # type: ignore[union-attr]
                    for st in streams.values():
                        st.wake_window()
                else:
                    st = streams.get(ev.stream_id)  # type: ignore[union-attr]
                    if st is not None:
                        st.wake_window()
            elif t is StreamReset:
                st = streams.get(ev.stream_id)  # type: ignore[union-attr]
                if st is not None:
                    st.disconnect()
                    st.cancel_scope.cancel()
            elif t is ConnectionTerminated:
                if ev.by_peer:  # type: ignore[union-attr]
                    # GOAWAY from the peer: streams in flight may finish.
                    self._closing = True
                else:
                    self.ctx.counters.protocol_errors += 1
                    error_logger.debug("HTTP/2 connection error: %s", ev.reason)  # type: ignore[union-attr]

    def _open_stream(self, request: Request, nursery: trio.Nursery) -> _Stream:
        st = _Stream(self, request)
        self.streams[request.stream_id] = st
        if request.end_stream:
            st.ended = True
        self.ctx.counters.requests_total += 1
        self.ctx.counters.streams_open += 1
        self._streams_opened += 1
        limit = self.ctx.config.max_requests_per_connection
        if limit is not None and self._streams_opened >= limit and not self._closing:
            # GOAWAY naming this stream as the last: the client opens the next ones elsewhere.
            self.conn.start_shutdown()
            self._closing = True
        if request.protocol is not None:
            nursery.start_soon(self._run_websocket, st)
        else:
            nursery.start_soon(self._run_stream, st)
        return st

    async def _run_websocket(self, st: _Stream) -> None:
        # Not inside st.cancel_scope: a reset stream reaches the app as a 1006 disconnect.
        try:
            await serve_websocket_stream(self.ctx, self.info, st, self.websockets)
        finally:
            self._stream_finished(st, st.response_done)

    async def _run_stream(self, st: _Stream) -> None:
        completed = False
        try:
            completed = await st.run_app(self.info)
        finally:
            self._stream_finished(st, completed)

    def _stream_finished(self, st: _Stream, completed: bool) -> None:
        self.ctx.counters.streams_open -= 1
        del self.streams[st.request.stream_id]
        # Unread body credit goes back so the connection window does not leak.
        for _, flow in st.inbox:
            self.conn.acknowledge_data(st.request.stream_id, flow)
        st.inbox.clear()
        self.conn.stream_done(st.request.stream_id, completed=completed)
        if not self.conn.active:
            self._idle_since = trio.current_time()
            if self._read_scope is not None:
                self._read_scope.deadline = min(self._read_scope.deadline, self._idle_deadline())
        self.kick()
        self._maybe_finish()

    async def _keepalive(self) -> None:
        # A PING every h2_ping_interval seconds (counted from the last ACK), whatever the
        # streams are doing: a vanished peer leaves a stream that only waits to send (server-
        # sent events, a WebSocket) with no write to time out, and TCP may not notice for
        # hours.
        cfg = self.ctx.config
        interval, timeout = cfg.h2_ping_interval, cfg.h2_ping_timeout
        assert interval is not None
        conn = self.conn
        with self._keepalive_scope:
            while not conn.terminated:
                await trio.sleep(interval)
                conn.send_ping()
                acked = self._ping_acked = trio.Event()
                self.kick()
                with trio.move_on_after(timeout):
                    await acked.wait()
                self._ping_acked = None
                if conn.ping_outstanding and not conn.terminated:
                    error_logger.debug("HTTP/2 keepalive PING to %s unanswered for %s s: "
                                       "dropping the connection", self.info.client, timeout)
                    self._drop()  # as for a write timeout: nothing more reaches the peer
                    return

    def _drop(self) -> None:
        """The peer is gone: nothing more is written, every stream sees a disconnect, and the
        reader stops (run() then ends the connection)."""
        self.broken = True
        for st in list(self.streams.values()):
            st.disconnect()
        if self._reader_scope is not None:
            self._reader_scope.cancel()

    # --- writing ------------------------------------------------------------------------
    def kick(self) -> None:
        """Wake the writer: h2 has bytes queued."""
        self._write_wanted.set()

    def queued(self, n: int) -> None:
        self._queued += n
        self._write_wanted.set()

    async def wait_writable(self) -> None:
        """Wait while too many bytes are queued for the writer (connection backpressure)."""
        while self._queued > self.ctx.config.h2_write_buffer_size and not self.broken:
            await self._drained.wait()

    async def _writer(self) -> None:
        timeout = self.ctx.config.write_timeout or float("inf")
        sock = raw_socket(self.stream)
        while True:
            await self._write_wanted.wait()
            self._write_wanted = trio.Event()
            data: bytes | bytearray | memoryview = self.conn.data_to_send()
            self._queued = 0
            if data and not self.broken:
                if sock is not None:
                    # h2c: try the write at once; only a full buffer needs the timed wait.
                    try:
                        sent = try_send(sock, [data])
                    except OSError:
                        sent = 0
                        self.broken = True
                    data = memoryview(data)[sent:] if sent < len(data) else b""
                if data and not self.broken:
                    with trio.CancelScope(deadline=trio.current_time() + timeout) as stall:
                        try:
                            await self.stream.send_all(data)
                        except _STREAM_ERRORS:
                            self.broken = True
                    if stall.cancelled_caught:
                        self.broken = True  # the peer stopped reading: drop it
                if self.broken:
                    self._drop()
            drained, self._drained = self._drained, trio.Event()
            drained.set()
            # Bytes queued while this write was under way (the final GOAWAY...) still go out.
            if self._finished and (self.broken or not self._write_wanted.is_set()):
                return


class _Stream(StreamBridge):
    """An HTTP/2 request stream: DATA waits for the connection's write buffer and for this
    stream's window, both bounded by ``write_timeout``; server push is served."""

    __slots__ = ()
    stream_closed = StreamClosed
    internal_error = INTERNAL_ERROR

    async def _send_body(self, view: memoryview, last: bool) -> None:
        server = self.server
        conn = server.conn
        sid = self.request.stream_id
        limit = server.ctx.config.h2_write_buffer_size
        while True:
            if server._queued > limit:  # tested here: a coroutine per response costs more
                await server.wait_writable()
            if self.disconnected:
                raise ClientDisconnected("the stream was reset or the connection closed")
            n = conn.send_data(sid, view, end_stream=last)
            if n:
                self.sent += n
                server.queued(n)
                view = view[n:]
            if not view:
                break
            writable = self._writable = trio.Event()
            if conn.send_window(sid) <= 0:
                await self._wait_for_window(writable)
        server.kick()  # a bare END_STREAM is not counted by queued()

    async def _wait_for_window(self, writable: trio.Event) -> None:
        # A peer that never opens its window stalls us as surely as one that stops reading
        # the socket: the same write_timeout bounds the wait (RFC 9113 §6.9).
        timeout = self.server.ctx.config.write_timeout
        if timeout is None:
            await writable.wait()
            return
        with trio.move_on_after(timeout) as scope:
            await writable.wait()
        if scope.cancelled_caught:
            self.server.conn.reset_stream(self.request.stream_id, CANCEL)
            self.server.kick()
            self.disconnect()
            raise ClientDisconnected("the peer's flow-control window stayed shut")

    def _push(self, message: Message) -> None:
        h2_push(self, message)
