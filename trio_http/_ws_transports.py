"""The transports a WebSocket runs over, and the opening handshake on each.

* :class:`SocketTransport`: the byte stream of an HTTP/1.1 connection after ``101 Switching
  Protocols`` (RFC 6455); :class:`H1Accept` answers the upgrade request.
* :class:`StreamTransport`: DATA frames of an extended CONNECT stream (RFC 8441 §5 for HTTP/2;
  RFC 9220 for HTTP/3): bytes in through the stream's ``receive()``, whose flow-control credit
  returns as the WebSocket reader takes them, bytes out through ``send()``, which waits for
  the stream's send window. :class:`StreamAccept` answers with ``:status 200``.
* :class:`Inbox`: the bounded queue of messages read for the app while it was away.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

import trio

from ._errors import ClientDisconnected
from ._sansio._events import Request
from ._sansio._websocket import ConnectOpening, H1Opening, WebSocketProtocol
from ._sockio import raw_socket, receive_after_yield, try_send
from ._types import Headers, Message

__all__ = ["H1Accept", "HTTPStream", "Inbox", "Opening", "SocketTransport", "StreamAccept",
           "StreamTransport", "Transport"]

#: Seconds to keep draining a failed HTTP/1.1 connection after our CLOSE and FIN, so that
#: unread input does not turn our close into a TCP reset that loses the CLOSE frame.
LINGER_TIMEOUT = 2.0

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


class Transport(Protocol):
    broken: bool

    async def receive_some(self) -> bytes: ...
    def send_now(self, data: bytes) -> int: ...
    async def after_send_now(self) -> None: ...
    async def send_all(self, data: bytes | memoryview) -> None: ...
    async def finish(self, *, linger: bool) -> None: ...
    async def watchdog(self) -> None: ...
    async def abort(self) -> None: ...


class SocketTransport:
    """The byte stream of an upgraded HTTP/1.1 connection.

    A write may stall for at most ``write_timeout`` seconds: :meth:`watchdog` (run beside the
    session) then closes the stream, which fails the write with :class:`ClientDisconnected`.
    A watchdog rather than a cancel scope per write, because a scope with a deadline costs
    more than a small WebSocket message: writes only note when they start, and arm the
    watchdog's deadline when it is not armed already."""

    __slots__ = ("_read_size", "_sock", "_timeout", "_watch_scope", "_write_started",
                 "_yield_due", "broken", "stream")

    def __init__(self, stream: trio.abc.Stream, read_size: int, write_timeout: float | None):
        self.stream = stream
        # Under a plain socket, the direct calls of _sockio.py (as HTTP/1.1 makes them).
        self._sock = raw_socket(stream)
        self._yield_due = False  # a write skipped its checkpoint and no read waited since
        self._read_size = read_size
        self._timeout = write_timeout
        self._write_started: float | None = None
        self._watch_scope: trio.CancelScope | None = None
        self.broken = False

    async def receive_some(self) -> bytes:
        if self._sock is not None:
            self._yield_due = False  # always a checkpoint
            return await receive_after_yield(self._sock, self._read_size)
        try:
            return bytes(await self.stream.receive_some(self._read_size))
        except _STREAM_ERRORS:
            return b""

    def send_now(self, data: bytes) -> int:
        """Write what the kernel takes of ``data`` at once (no wait, no checkpoint): the bytes
        written, 0 when the transport cannot (not a plain socket). Raises
        :class:`ClientDisconnected`."""
        sock = self._sock
        if sock is None:
            return 0
        if self.broken:
            raise ClientDisconnected("the WebSocket peer has disconnected")
        try:
            return try_send(sock, [data])
        except OSError as exc:
            self.broken = True
            raise ClientDisconnected("the WebSocket peer has disconnected") from exc

    async def after_send_now(self) -> None:
        """The checkpoint owed by a :meth:`send_now` that wrote everything. Skipped when a read
        has waited since the last one skipped: an echo (read, write, read...) goes through
        the scheduler once per message, and a task that only writes yields at every other
        write."""
        if self._yield_due:
            self._yield_due = False
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            self._yield_due = True

    async def send_all(self, data: bytes | memoryview) -> None:
        if self.broken:
            raise ClientDisconnected("the WebSocket peer has disconnected")
        timeout = self._timeout
        if timeout is not None:
            # Noted even before the watchdog runs: it starts from the write in progress.
            self._write_started = started = trio.current_time()
            scope = self._watch_scope
            if scope is not None and scope.deadline == math.inf:
                scope.deadline = started + timeout
        try:
            await self.stream.send_all(data)
        except _STREAM_ERRORS as exc:
            self.broken = True
            raise ClientDisconnected("the WebSocket peer has disconnected") from exc
        except BaseException:
            self.broken = True  # cancelled mid-write: the framing on the wire is lost
            raise
        finally:
            self._write_started = None

    async def abort(self) -> None:
        """Drop the connection; a task reading or writing meanwhile gets EOF or
        :class:`ClientDisconnected`."""
        self.broken = True
        await trio.aclose_forcefully(self.stream)

    async def watchdog(self) -> None:
        """Close the stream once a write has stalled for ``write_timeout`` seconds."""
        timeout = self._timeout
        if timeout is None:
            return
        try:
            while True:
                started = self._write_started
                with trio.CancelScope(
                    deadline=math.inf if started is None else started + timeout
                ) as self._watch_scope:
                    await trio.sleep_forever()
                started = self._write_started
                if started is not None and trio.current_time() - started >= timeout:
                    await self.abort()
                    return
        finally:
            self._watch_scope = None

    async def finish(self, *, linger: bool) -> None:
        if not linger or self.broken:
            return
        with trio.move_on_after(LINGER_TIMEOUT):
            try:
                if isinstance(self.stream, trio.abc.HalfCloseableStream):
                    await self.stream.send_eof()
                while await self.stream.receive_some(self._read_size):
                    pass
            except (*_STREAM_ERRORS, trio.BusyResourceError):
                pass


class HTTPStream(Protocol):
    """An HTTP/2 or HTTP/3 request stream as the HTTP layer serves it: ASGI-shaped
    ``receive()`` (``http.request`` / ``http.disconnect``) and ``send()``
    (``http.response.start`` / ``http.response.body``, raising :class:`ClientDisconnected`),
    ``fail()`` (500 or reset), ``disconnect()`` (wake its readers and writers as if the
    peer had gone), and the :class:`Request` it carries."""

    request: Request
    response_done: bool

    async def receive(self) -> Message: ...
    async def send(self, message: Message) -> None: ...
    def fail(self) -> None: ...
    def disconnect(self) -> None: ...


class StreamTransport:
    """WebSocket bytes in DATA frames (RFC 8441 §5): credit returns as the reader takes them;
    sends wait for the stream's send window."""

    __slots__ = ("_ended", "broken", "stream")

    def __init__(self, stream: HTTPStream) -> None:
        self.stream = stream
        self._ended = False
        self.broken = False

    async def receive_some(self) -> bytes:
        while not self._ended:
            msg = await self.stream.receive()
            if msg["type"] != "http.request":
                self._ended = True
                self.broken = True
                return b""
            if not msg.get("more_body", False):
                self._ended = True
            body: bytes = msg.get("body", b"")
            if body or self._ended:
                return body
        return b""

    def send_now(self, data: bytes) -> int:
        return 0  # every write goes through the stream's flow control

    async def after_send_now(self) -> None:  # pragma: no cover - send_now never sends here
        await trio.lowlevel.checkpoint()

    async def send_all(self, data: bytes | memoryview) -> None:
        try:
            await self.stream.send(
                {"type": "http.response.body", "body": bytes(data), "more_body": True}
            )
        except BaseException:
            # ClientDisconnected, or cancelled with part of a frame sent: either way no more
            # WebSocket frames can go on this stream.
            self.broken = True
            raise

    async def watchdog(self) -> None:
        return  # the HTTP/2 (HTTP/3) layer bounds its own writes

    async def abort(self) -> None:
        """Reset the stream; a task reading or writing meanwhile gets EOF or
        :class:`ClientDisconnected`."""
        self.broken = True
        self.stream.fail()
        self.stream.disconnect()

    async def finish(self, *, linger: bool) -> None:
        if self.broken or self.stream.response_done:
            return
        try:
            await self.stream.send({"type": "http.response.body", "body": b""})  # END_STREAM
        except ClientDisconnected:
            pass


# --- openings: accept or refuse over each transport ---------------------------------------
class Opening(Protocol):
    async def accept(
        self, subprotocol: str | None, headers: Headers, *, deflate: bool, max_message_size: int
    ) -> WebSocketProtocol: ...
    async def respond(self, status: int, headers: Headers) -> None: ...
    async def respond_body(self, body: bytes, *, more: bool) -> None: ...
    def abort(self) -> None: ...


class H1Accept:
    __slots__ = ("opening", "trailing", "transport")

    def __init__(self, opening: H1Opening, transport: SocketTransport, trailing: bytes):
        self.opening = opening
        self.transport = transport
        self.trailing = trailing

    async def accept(
        self, subprotocol: str | None, headers: Headers, *, deflate: bool, max_message_size: int
    ) -> WebSocketProtocol:
        data, proto = self.opening.accept(
            subprotocol, headers, deflate=deflate, max_message_size=max_message_size
        )
        # Frames the client sent right behind its request.
        proto.receive_data(self.trailing)
        self.trailing = b""
        await self.transport.send_all(data)
        return proto

    async def respond(self, status: int, headers: Headers) -> None:
        await self.transport.send_all(self.opening.reject(status, headers))

    async def respond_body(self, body: bytes, *, more: bool) -> None:
        await self.transport.send_all(self.opening.reject_data(body, finished=not more))

    def abort(self) -> None:
        pass  # the connection closes when the session ends: the response is cut short


class StreamAccept:
    __slots__ = ("opening", "stream")

    def __init__(self, opening: ConnectOpening, stream: HTTPStream) -> None:
        self.opening = opening
        self.stream = stream

    async def accept(
        self, subprotocol: str | None, headers: Headers, *, deflate: bool, max_message_size: int
    ) -> WebSocketProtocol:
        fields, proto = self.opening.accept(
            subprotocol, deflate=deflate, max_message_size=max_message_size
        )
        await self.stream.send(
            {"type": "http.response.start", "status": 200, "headers": fields + headers}
        )
        # An empty non-final body sends the HEADERS frame now, without END_STREAM.
        await self.stream.send({"type": "http.response.body", "body": b"", "more_body": True})
        return proto

    async def respond(self, status: int, headers: Headers) -> None:
        await self.stream.send(
            {"type": "http.response.start", "status": status, "headers": headers}
        )

    async def respond_body(self, body: bytes, *, more: bool) -> None:
        await self.stream.send({"type": "http.response.body", "body": body, "more_body": more})

    def abort(self) -> None:
        self.stream.fail()


# --- the inbox ---------------------------------------------------------------------------
class Inbox:
    """Messages the background reader read for the app: at most ``limit`` of them (unit:
    messages). Also where the app waits while that reader holds the transport."""

    __slots__ = ("_items", "_limit", "_readable", "_writable", "closed")

    def __init__(self, limit: int) -> None:
        self._items: deque[Message] = deque()
        self._limit = limit
        self.closed = False
        self._readable = trio.Event()
        self._writable = trio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Message) -> bool:
        """Queue ``item`` unless full; False when full. Dropped once closed."""
        if self.closed:
            return True
        if len(self._items) >= self._limit:
            return False
        self._items.append(item)
        self._readable.set()
        return True

    async def put(self, item: Message) -> None:
        while len(self._items) >= self._limit and not self.closed:
            self._writable = trio.Event()
            await self._writable.wait()
        if not self.closed:
            self._items.append(item)
            self._readable.set()

    def get_nowait(self) -> Message | None:
        if not self._items:
            return None
        self._writable.set()
        return self._items.popleft()

    async def wait(self) -> None:
        """Wait for a message, the close, or :meth:`wake`."""
        if not self._items and not self.closed:
            self._readable = trio.Event()
            await self._readable.wait()

    def wake(self) -> None:
        self._readable.set()

    def close(self) -> None:
        """No more messages: queued ones are still delivered."""
        self.closed = True
        self._readable.set()
        self._writable.set()
