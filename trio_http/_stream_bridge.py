"""The ASGI side of one HTTP/2 or HTTP/3 request stream, written once for both: the body
inbox and its credit, ``receive()``, the ``send()`` message dispatch (with the response
extensions), trailers and the 500-or-reset of a failed app. What differs (how DATA waits for
send room, server push) lives in each protocol's subclass."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import trio

from ._asgi import error_logger, log_access, log_app_exception
from ._errors import ClientDisconnected
from ._extensions import (
    EARLY_HINT,
    FILE_MESSAGES,
    INFORMATIONAL,
    PUSH,
    TRAILERS,
    gather_trailers,
    informational_head,
    send_file,
)
from ._sansio._events import Headers, Request
from ._sansio._scope import ConnectionInfo, build_scope
from ._types import Message

__all__ = ["StreamBridge"]

_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}


class StreamBridge:
    """One HTTP/2 or HTTP/3 request stream as the app sees it: its body inbox (``(bytes,
    credit)`` pairs, bounded in bytes by the stream's receive window), the wait for send room,
    and its ASGI ``receive``/``send``. Subclasses give the protocol's body-sending loop, its
    closed-stream exception, its reset code for a failed app, and what else it serves.

    ``server`` is the connection (``H2Server`` or ``H3Server``): its ``conn`` sans-io object,
    ``ctx`` and ``kick()``.
    """

    #: The sans-io layer's "stream can no longer send" exception.
    stream_closed: type[Exception] = Exception
    #: Error code of the reset that ends a response the app failed to finish.
    internal_error: int = 0
    #: ``alt-svc`` for responses on this protocol (HTTP/3 advertises nothing).
    advertise_alt_svc = True

    __slots__ = (
        "_headers_sent",
        "_readable",
        "_writable",
        "body_done",
        "buffered",
        "cancel_scope",
        "disconnected",
        "ended",
        "inbox",
        "request",
        "response_done",
        "response_headers",
        "scope",
        "sent",
        "server",
        "start_message",
        "started",
        "status",
        "trailers",
        "trailers_due",
    )

    def __init__(self, server: Any, request: Request) -> None:
        self.server = server
        self.request = request
        self.inbox: deque[tuple[bytes, int]] = deque()  # (data, credit to return)
        self.buffered = 0  # bytes in inbox
        self.ended = request.end_stream
        self.body_done = False
        self.disconnected = False
        self.response_done = False
        self.start_message: Message | None = None
        self.status = 0
        self.response_headers: Any = ()  # the app's, for the access log's {name}o atoms
        self.sent = 0
        self.started = time.perf_counter() if server.ctx.access_log else 0.0
        self.cancel_scope = trio.CancelScope()
        self.scope: dict[str, Any] | None = None
        self._headers_sent = False
        # Made only when a task is about to wait: most streams never wait for either.
        self._readable: trio.Event | None = None
        self._writable: trio.Event | None = None
        #: Trailer fields gathered when the response promised some (``trailers: True``).
        self.trailers: Headers | None = None
        self.trailers_due = False  # the body is complete; the trailers end the stream

    async def run_app(self, info: ConnectionInfo) -> bool:
        """Run the ASGI app on this stream inside its cancel scope (a peer reset cancels it).
        An app exception becomes a 500, or a reset once the response has begun, and is logged.
        Returns whether the response was completed."""
        ctx = self.server.ctx
        scope = build_scope(self.request, info)
        self.scope = scope
        with self.cancel_scope:
            try:
                await ctx.app(scope, self.receive, self.send)
            except Exception as exc:
                ctx.counters.app_errors += 1
                if not (self.disconnected and isinstance(exc, ClientDisconnected)):
                    log_app_exception(scope, exc)
                self.fail()
            else:
                if not self.response_done:
                    error_logger.error("ASGI app returned without completing its response")
                    self.fail()
        if ctx.access_log:
            log_access(
                ctx.config.access_log_format, scope, self.status, self.sent, self.started,
                self.response_headers,
            )
        return self.response_done

    def wake(self) -> None:
        if self._readable is not None:
            self._readable.set()

    def wake_window(self) -> None:
        if self._writable is not None:
            self._writable.set()

    def disconnect(self) -> None:
        self.disconnected = True
        self.wake()
        self.wake_window()

    def statistics(self) -> dict[str, int]:
        """Bytes and chunks waiting in the inbox."""
        return {"buffered_bytes": self.buffered, "buffered_chunks": len(self.inbox)}

    async def receive(self) -> Message:
        while True:
            if self.inbox:
                inbox = self.inbox
                if len(inbox) == 1:
                    body, flow = inbox.popleft()
                else:
                    parts = []
                    flow = 0
                    while inbox:
                        b, f = inbox.popleft()
                        parts.append(b)
                        flow += f
                    body = b"".join(parts)
                self.buffered = 0
                if flow:
                    # Credit returns only now that the app has the bytes.
                    self.server.conn.acknowledge_data(self.request.stream_id, flow)
                    self.server.kick()
                self.body_done = self.ended
                return {"type": "http.request", "body": body, "more_body": not self.ended}
            if self.disconnected:
                return _DISCONNECT
            if self.ended and not self.body_done:
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.body_done and self.response_done:
                return _DISCONNECT
            # No await between the checks above and this wait, so no wake-up is lost.
            readable = self._readable = trio.Event()
            timeout = self.server.ctx.config.body_read_timeout
            # An extended CONNECT stream (a WebSocket) may rightly be silent for long.
            if self.ended or timeout is None or self.request.protocol is not None:
                await readable.wait()
                continue
            with trio.move_on_after(timeout) as scope:
                await readable.wait()
            if scope.cancelled_caught:
                # No body for body_read_timeout seconds: 408 (or a reset) and disconnect.
                self.server.ctx.counters.protocol_errors += 1
                self.server.conn.abort_request(self.request.stream_id, 408)
                self.server.kick()
                self.disconnect()

    async def send(self, message: Message) -> None:
        t = message["type"]
        server = self.server
        conn = server.conn
        sid = self.request.stream_id
        if t == "http.response.body":
            if self.start_message is None:
                raise RuntimeError("ASGI: http.response.body before http.response.start")
            if self.response_done:
                raise RuntimeError("ASGI: http.response.body after the response completed")
            if self.disconnected:
                raise ClientDisconnected("the stream was reset or the connection closed")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if self.trailers_due:
                raise RuntimeError("ASGI: http.response.body after the final body")
            last = not more and self.trailers is None  # this message ends the stream
            try:
                if not self._headers_sent:
                    self._send_head(end_stream=not body and last)
                    if not body and not more:
                        self._body_complete(last)
                        return
                await self._send_body(memoryview(body), last)
                if not more:
                    self._body_complete(last)
            except self.stream_closed:
                self.disconnect()
                raise ClientDisconnected("the stream was reset or the connection closed") from None
        elif t == "http.response.start":
            if self.start_message is not None or self.response_done:
                raise RuntimeError("ASGI: http.response.start sent twice")
            self.start_message = message
            self.status = message.get("status", 0)
            self.response_headers = message.get("headers", ())
            if message.get("trailers"):
                self.trailers = []
        elif t in FILE_MESSAGES:
            await send_file(self, message, head_sent=self._headers_sent)
        elif t == TRAILERS:
            self._send_trailers(message)
        elif t == EARLY_HINT or t == INFORMATIONAL:
            head = informational_head(message)
            if head is not None and not self._headers_sent and not self.disconnected:
                try:
                    conn.send_response(sid, *head)  # an interim HEADERS frame
                except self.stream_closed:
                    self.disconnect()
                    raise ClientDisconnected("the stream was reset") from None
                server.kick()
        elif t == PUSH:
            self._push(message)
        else:
            raise RuntimeError(f"ASGI: unexpected message type {t!r} for an http scope")

    def _body_complete(self, last: bool) -> None:
        if last:
            self._finish()
        else:
            self.trailers_due = True

    def _send_trailers(self, message: Message) -> None:
        trailers = gather_trailers(self, message)
        if trailers is None:
            return
        if self.disconnected:
            raise ClientDisconnected("the stream was reset or the connection closed")
        try:
            self.server.conn.end_stream(self.request.stream_id, trailers)
        except self.stream_closed:
            self.disconnect()
            raise ClientDisconnected("the stream was reset or the connection closed") from None
        self.server.kick()
        self._finish()

    async def _send_body(self, view: memoryview, last: bool) -> None:
        """Queue ``view`` as DATA as send room allows, ending the stream if ``last`` (an
        empty ``view`` too); only this stream waits. Raises ``stream_closed`` or
        :class:`ClientDisconnected`."""
        raise NotImplementedError

    def _push(self, message: Message) -> None:
        """``http.response.push``: ignored unless the protocol serves it."""

    def _send_head(self, *, end_stream: bool) -> None:
        message = self.start_message
        assert message is not None
        status = message.get("status")
        if type(status) is not int or not 200 <= status <= 599:
            raise ValueError(f"http.response.start: invalid status {status!r}")
        # send_response() checks the app's fields in the same pass that leaves out
        # connection-specific ones (RFC 9113 §8.2.2, RFC 9114 §4.2) and adds the defaults.
        self.server.conn.send_response(
            self.request.stream_id, status, message.get("headers", ()), end_stream=end_stream,
            defaults=self.server.ctx.default_fields(alt_svc=self.advertise_alt_svc),
        )
        self._headers_sent = True
        self.server.kick()

    def _finish(self) -> None:
        self.response_done = True
        self.wake()  # a receive() waiting for disconnect may return now

    def fail(self) -> None:
        """The app failed: a 500 if nothing was sent, otherwise reset the stream."""
        if self.disconnected:
            return
        conn = self.server.conn
        sid = self.request.stream_id
        try:
            if not self._headers_sent:
                self.status = 500
                body = b"500 Internal Server Error\n"
                conn.send_response(sid, 500, [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ])
                conn.send_data(sid, body, end_stream=True)
                self.response_done = True
            else:
                conn.reset_stream(sid, self.internal_error)
        except self.stream_closed:
            pass
        self.server.kick()
