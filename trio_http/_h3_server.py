"""HTTP/3 connections: one task per QUIC connection (see :mod:`._quic` for the UDP endpoint
that feeds it), holding a receiver, a sender, and one task per request stream running the app.

* receiver: takes datagrams from the connection's inbox (a bounded channel the endpoint fills
  with ``send_nowait``; a full inbox drops datagrams, which QUIC recovers), feeds them to the
  sans-io connection and routes the events to streams. It never waits on a stream: request
  body bytes go into the stream's inbox, bounded by the stream's receive credit, and the
  credit returns only when the app's ``receive()`` takes them.
* sender: the only task that takes datagrams out of the connection. It sleeps until woken
  (new input, or a stream queued data) or until the QUIC timer (retransmission, ACK delay,
  idle timeout) falls due, with the timer as its cancel-scope deadline.
* streams: ``send()`` queues response bytes as far as the stream's send buffer allows and
  waits, on that stream alone, for acknowledgements to make room.

Time is ``trio.current_time()``, the clock of the cancel-scope deadlines.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio

from ._asgi import error_logger
from ._errors import ClientDisconnected
from ._sansio._events import (
    ConnectionTerminated,
    Data,
    EndOfMessage,
    Request,
    StreamReset,
    WindowUpdated,
)
from ._sansio._http3 import (
    H3_INTERNAL_ERROR,
    H3_NO_ERROR,
    ConnectionIdIssued,
    ConnectionIdRetired,
    H3Connection,
    H3Event,
    StreamClosed,
)
from ._sansio._scope import ConnectionInfo
from ._stream_bridge import StreamBridge
from ._websocket import WebSocketSession, serve_websocket_stream

if TYPE_CHECKING:
    from ._context import ServerContext
    from ._quic import QuicEndpoint

__all__ = ["INBOX_DATAGRAMS", "H3Server"]

#: Datagrams queued from the endpoint to one connection before more are dropped.
INBOX_DATAGRAMS = 256



class H3Server:
    """Serves one QUIC connection carrying HTTP/3. Created by the endpoint for a client's
    first Initial packet; :meth:`run` returns once the connection is over (closed by either
    side, idle for ``quic_idle_timeout``, handshake not done within ``tls_handshake_timeout``)."""

    def __init__(
        self, endpoint: QuicEndpoint, conn: H3Connection, ctx: ServerContext, info: ConnectionInfo
    ) -> None:
        self.endpoint = endpoint
        self.conn = conn
        self.ctx = ctx
        self.info = info
        self.inbox, self._inbox = trio.open_memory_channel[tuple[bytes, Any]](INBOX_DATAGRAMS)
        self.streams: dict[int, _Stream] = {}
        self.cids: set[bytes] = set()
        self.websockets: set[WebSocketSession] = set()
        self.handshaking = True
        self._wake = trio.Event()
        self._closing = False
        self._scope = trio.CancelScope()
        self._handshake_deadline = trio.current_time() + ctx.config.tls_handshake_timeout

    # --- lifecycle ---------------------------------------------------------------------
    def begin_shutdown(self) -> None:
        """GOAWAY now; CONNECTION_CLOSE once the streams in flight are done."""
        self._closing = True
        self.conn.start_shutdown()
        for session in list(self.websockets):
            session.begin_shutdown()  # CLOSE 1001; the stream ends when the client answers
        self._maybe_finish()
        self.kick()

    def _maybe_finish(self) -> None:
        # Close only once every response has been acknowledged: CONNECTION_CLOSE would
        # discard what is still in flight.
        conn = self.conn
        if self._closing and not conn.closing and not conn.active and conn.responses_acknowledged():
            conn.close(H3_NO_ERROR, "shutting down")
            self.kick()

    async def run(self) -> None:
        counters = self.ctx.counters
        counters.connections_total += 1
        counters.connections_open += 1
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._sender, nursery)
                    await self._receiver(nursery)
                    nursery.cancel_scope.cancel()
        except Exception:
            error_logger.exception("Internal error on the HTTP/3 connection from %s",
                                   self.info.client)
        finally:
            for st in self.streams.values():
                st.disconnect()
            counters.connections_open -= 1
            self.endpoint.forget(self)
            if not self.conn.terminated:
                # Cancelled (shutdown deadline) or failed: tell the peer, best effort.
                self.conn.close(H3_NO_ERROR, "server going away")
                self.endpoint.send_nowait(self.conn.datagrams_to_send(trio.current_time()))

    def _terminate(self) -> None:
        for st in self.streams.values():
            st.disconnect()
        self._scope.cancel()

    async def _receiver(self, nursery: trio.Nursery) -> None:
        conn = self.conn
        inbox = self._inbox
        while True:
            deadline = self._handshake_deadline if self.handshaking else math.inf
            with trio.move_on_at(deadline):
                data, addr = await inbox.receive()
            if self.handshaking and trio.current_time() >= deadline:
                self.ctx.counters.tls_handshake_failures += 1
                return
            now = trio.current_time()
            events = conn.receive_datagram(data, addr, now)
            while True:  # take what else has arrived before answering: fewer, fuller packets
                try:
                    data, addr = inbox.receive_nowait()
                except trio.WouldBlock:
                    break
                events += conn.receive_datagram(data, addr, now)
            if self.handshaking and conn.handshake_complete:
                self.handshaking = False
                self.endpoint.handshake_done(self)
            if events:
                self._handle(events, nursery)
            if self._closing:
                self._maybe_finish()
            self.kick()

    def kick(self) -> None:
        """Wake the sender: the connection has something to send."""
        self._wake.set()

    async def _sender(self, nursery: trio.Nursery) -> None:
        conn = self.conn
        endpoint = self.endpoint
        while True:
            timer = conn.get_timer()
            if not self._wake.is_set():
                with trio.move_on_at(math.inf if timer is None else timer):
                    await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            if timer is not None and now >= timer:
                events = conn.handle_timer(now)
                if events:
                    self._handle(events, nursery)
            datagrams = conn.datagrams_to_send(now)
            if datagrams:
                await endpoint.send(datagrams)
            if conn.terminated:  # ended without an event (an aioquic failure)
                self._terminate()

    # --- events --------------------------------------------------------------------------
    def _handle(self, events: list[H3Event], nursery: trio.Nursery) -> None:
        streams = self.streams
        for ev in events:
            t = type(ev)
            if t is Data:
                st = streams.get(ev.stream_id)  # type: ignore[union-attr]
                if st is not None:
                    st.inbox.append((ev.data, len(ev.data)))  # type: ignore[union-attr]
                    st.buffered += len(ev.data)  # type: ignore[union-attr]
                    st.wake()
                else:
                    self.conn.acknowledge_data(ev.stream_id, len(ev.data))  # type: ignore[union-attr]
            elif t is Request:
                self._open_stream(ev, nursery)  # type: ignore[arg-type]
            elif t is EndOfMessage:
                st = streams.get(ev.stream_id)  # type: ignore[union-attr]
                if st is not None:
                    st.ended = True
                    st.wake()
            elif t is WindowUpdated:
                st = streams.get(ev.stream_id)  # type: ignore[union-attr]
                if st is not None:
                    st.wake_window()
            elif t is StreamReset:
                st = streams.get(ev.stream_id)  # type: ignore[union-attr]
                if st is not None:
                    st.disconnect()
                    st.cancel_scope.cancel()
            elif t is ConnectionIdIssued:
                self.endpoint.add_route(ev.cid, self)  # type: ignore[union-attr]
            elif t is ConnectionIdRetired:
                self.endpoint.remove_route(ev.cid, self)  # type: ignore[union-attr]
            elif t is ConnectionTerminated:
                reason: str = ev.reason  # type: ignore[union-attr]
                if reason.startswith("internal error"):
                    error_logger.error("HTTP/3 connection from %s failed: %s",
                                       self.info.client, reason)
                elif not ev.by_peer and ev.error_code not in (0, H3_NO_ERROR):  # type: ignore[union-attr]
                    self.ctx.counters.protocol_errors += 1
                    error_logger.debug("HTTP/3 connection error: %s", reason)
                self._terminate()
                return

    def _open_stream(self, request: Request, nursery: trio.Nursery) -> None:
        # After GOAWAY the sans-io layer rejects streams at or past the GOAWAY id; the ones
        # below it were sent before the client knew and are served (RFC 9114 §5.2).
        st = _Stream(self, request)
        self.streams[request.stream_id] = st
        self.ctx.counters.requests_total += 1
        self.ctx.counters.streams_open += 1
        nursery.start_soon(self._run_stream, st)

    async def _run_stream(self, st: _Stream) -> None:
        if st.request.method == b"CONNECT":
            # Extended CONNECT (RFC 9220): WebSockets, through the same layer as HTTP/2.
            await self._run_websocket(st)
            return
        completed = False
        try:
            completed = await st.run_app(self.info)
        finally:
            self._stream_finished(st, completed)

    async def _run_websocket(self, st: _Stream) -> None:
        try:
            with st.cancel_scope:
                await serve_websocket_stream(self.ctx, self.info, st, self.websockets)
        finally:
            self._stream_finished(st, st.response_done)

    def _stream_finished(self, st: _Stream, completed: bool) -> None:
        sid = st.request.stream_id
        self.ctx.counters.streams_open -= 1
        del self.streams[sid]
        self.conn.stream_done(sid, completed=completed)
        self.kick()
        self._maybe_finish()


class _Stream(StreamBridge):
    """An HTTP/3 request stream: DATA waits for room under ``send_buffer_size``
    unacknowledged bytes on this stream; no server push, no Alt-Svc."""

    __slots__ = ()
    stream_closed = StreamClosed
    internal_error = H3_INTERNAL_ERROR
    advertise_alt_svc = False

    async def _send_body(self, view: memoryview, last: bool) -> None:
        server = self.server
        conn = server.conn
        sid = self.request.stream_id
        if not view:
            if last:
                conn.end_stream(sid)
                server.kick()
            return
        while view:
            writable = self._writable = trio.Event()
            n = conn.send_data(sid, view, end_stream=last)
            if n:
                self.sent += n
                server.kick()
                view = view[n:]
            if view:
                await writable.wait()
                if self.disconnected:
                    raise ClientDisconnected("the stream was reset or the connection closed")
