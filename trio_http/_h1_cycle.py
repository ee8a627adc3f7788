"""The ASGI ``receive``/``send`` pair of one HTTP/1.1 request-response exchange, for
:class:`~trio_http._h1_server.H1Server` (which owns the socket and the connection loop)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import trio

from ._errors import ClientDisconnected, ProtocolError
from ._extensions import (
    EARLY_HINT,
    FILE_MESSAGES,
    INFORMATIONAL,
    PUSH,
    TRAILERS,
    gather_trailers,
    h1_accepts_trailers,
    informational_head,
    send_file,
)
from ._sansio._events import NEED_DATA, ConnectionTerminated, Data, EndOfMessage, Request
from ._types import Headers, Message

if TYPE_CHECKING:
    from ._h1_server import H1Server

__all__ = ["Cycle"]

_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}


class Cycle:
    """The ASGI ``receive``/``send`` pair of one request-response exchange."""

    __slots__ = (
        "body_done",
        "pending",
        "received",
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
        "wait_scope",
    )

    def __init__(self, server: H1Server, request: Request) -> None:
        self.server = server
        self.request = request
        self.body_done = False
        self.response_done = False
        self.pending: Any = None
        self.received = 0  # request body bytes, counted against max_request_body_size
        self.start_message: Message | None = None
        self.status = 0
        self.response_headers: Any = ()  # the app's, for the access log's {name}o atoms
        self.sent = 0
        self.started = time.perf_counter() if server.ctx.access_log else 0.0
        self.scope: dict[str, Any] | None = None
        self.wait_scope: trio.CancelScope | None = None
        #: Trailer fields gathered when the response promised some and can carry them.
        self.trailers: Headers | None = None
        self.trailers_due = False  # the body is complete; the trailers end the response

    async def receive(self) -> Message:
        server = self.server
        conn = server.conn
        if server.broken:
            return _DISCONNECT
        if self.body_done:
            return await self._wait_for_disconnect()
        while True:
            event = self.pending if self.pending is not None else self._next()
            self.pending = None
            t = type(event)
            if t is Data:
                body = event.data
                if server.max_body is not None:
                    self.received += len(body)
                    if self.received > server.max_body:
                        self.pending = self._refuse(413, "request body too large")
                        continue
                nxt = self._next()
                if type(nxt) is EndOfMessage:
                    self.body_done = True
                    return {"type": "http.request", "body": body, "more_body": False}
                self.pending = nxt
                return {"type": "http.request", "body": body, "more_body": True}
            if t is EndOfMessage:
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if event is NEED_DATA:
                if conn.waiting_for_100_continue and not conn.response_started:
                    conn.send_informational(100, [])
                    try:
                        await server._flush()
                    except ClientDisconnected:
                        return _DISCONNECT
                data = await server._read_body()
                if data is None:
                    self.pending = self._refuse(408, "request body timeout")
                    continue
                if not data:
                    return _DISCONNECT
                conn.receive_data(data)
                continue
            # ConnectionTerminated, PAUSED or a protocol error: the request cannot go on.
            # _next() may have queued a 400 for a broken body: it must leave before we close.
            try:
                await server._flush()
            except ClientDisconnected:
                pass
            server.broken = True
            return _DISCONNECT

    def _next(self) -> Any:
        try:
            return self.server.conn.next_event()
        except ProtocolError as exc:
            # A broken body (bad chunk framing...): answer 400 if we still can, then close.
            return self._refuse(exc.status_code, str(exc))

    def _refuse(self, status: int, message: str) -> ConnectionTerminated:
        # The request cannot go on: queue the error response (if none has started), and let
        # receive() flush it and close.
        self.server.ctx.counters.protocol_errors += 1
        self.server.conn.send_error(status, message)
        return ConnectionTerminated(reason=message)

    async def _wait_for_disconnect(self) -> Message:
        server = self.server
        if self.response_done:
            return _DISCONNECT
        with trio.CancelScope() as scope:
            self.wait_scope = scope
            while not server.broken:
                if server.conn.buffered > server.ctx.config.max_request_header_size:
                    # A pipelining peer sent more than one more request head: stop reading
                    # until this response is done.
                    await trio.sleep_forever()
                data = await server._read()
                if data:
                    server.conn.receive_data(data)
        self.wait_scope = None
        return _DISCONNECT

    async def send(self, message: Message) -> None:
        server = self.server
        conn = server.conn
        t = message["type"]
        if t == "http.response.body":
            if self.start_message is None:
                if self.response_done:
                    raise RuntimeError("ASGI: http.response.body after the response completed")
                raise RuntimeError("ASGI: http.response.body before http.response.start")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if server.broken:
                raise ClientDisconnected("the client has disconnected")
            if self.trailers_due:
                raise RuntimeError("ASGI: http.response.body after the final body")
            if not conn.response_started:
                # With trailers to come, the body must be chunked: no content-length.
                self._start(len(body) if not more and self.trailers is None else None)
            if body:
                self.sent += len(body)
                conn.send_data(body)
            if not more:
                if self.trailers is not None:
                    self.trailers_due = True
                else:
                    conn.send_end()
                    self.response_done = True
                    self.start_message = None
                    if self.wait_scope is not None:
                        self.wait_scope.cancel()
            await server._flush(checkpoint=not self.response_done)
        elif t == "http.response.start":
            if self.start_message is not None or self.response_done:
                raise RuntimeError("ASGI: http.response.start sent twice")
            self.start_message = message
            self.status = message.get("status", 0)
            self.response_headers = message.get("headers", ())
            if message.get("trailers") and h1_accepts_trailers(self.request, message):
                self.trailers = []
        elif t in FILE_MESSAGES:
            await send_file(self, message, head_sent=conn.response_started, cycle=self)
        elif t == TRAILERS:
            await self._send_trailers(message)
        elif t == EARLY_HINT or t == INFORMATIONAL:
            head = informational_head(message)
            # Only before the final head; never to HTTP/1.0 (it would take a 1xx for the
            # response); and not while the client waits for 100 Continue, which any 1xx would
            # make h11 forget.
            if (head is not None and not conn.response_started and not server.broken
                    and self.request.http_version != "1.0"
                    and (head[0] == 100 or not conn.waiting_for_100_continue)):
                conn.send_informational(*head)
                await server._flush()
        elif t != PUSH:  # server push is HTTP/2 only: ignored here
            raise RuntimeError(f"ASGI: unexpected message type {t!r} for an http scope")

    async def _send_trailers(self, message: Message) -> None:
        # Trailers the client did not ask for (no TE: trailers) were never gathered: the body's
        # last message ended the response, and these messages are ignored.
        trailers = gather_trailers(self, message)
        if trailers is None:
            return
        if self.server.broken:
            raise ClientDisconnected("the client has disconnected")
        self.server.conn.send_end(trailers)
        self.response_done = True
        self.start_message = None
        if self.wait_scope is not None:
            self.wait_scope.cancel()
        await self.server._flush(checkpoint=False)

    def _start(self, content_length: int | None) -> None:
        server = self.server
        message = self.start_message
        assert message is not None
        server.conn.send_response(
            message.get("status", 0), message.get("headers", ()),
            # With the whole body in hand, say its length rather than chunk it.
            content_length=content_length, defaults=server.ctx.default_fields(),
        )

    async def fail(self) -> None:
        """The app failed: a 500 if nothing was sent, otherwise close the connection."""
        server = self.server
        if server.broken:
            return
        if not server.conn.response_started:
            self.status = 500
            server.conn.send_error(500)
            try:
                await server._flush()
            except ClientDisconnected:
                pass
        server.broken = True
