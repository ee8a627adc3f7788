"""Serving WSGI applications (PEP 3333: Flask, Django...) as ASGI, over every protocol.

Each request runs the WSGI callable in a trio worker thread, at most ``max_threads`` at once
(a :class:`trio.CapacityLimiter`; further requests wait for a token). The thread pulls the
request body with ``trio.from_thread.run(receive)`` as ``wsgi.input`` is read, so at most one
ASGI body message (<= the server's read size, or one HTTP/2 or HTTP/3 frame's worth) is
buffered per request; and it pushes each response chunk with ``trio.from_thread.run(send)``,
so a slow client makes the app's iteration wait: backpressure both ways. Since trio 0.23
those calls run in the request's own task, so cancellation reaches the thread as an exception
out of ``read()`` or ``write()``.
"""

from __future__ import annotations

import inspect
import io
import sys
from collections.abc import Callable, Iterable
from typing import Any

import trio

from ._types import Message, Receive, Scope, Send

__all__ = ["WSGIMiddleware", "is_wsgi_app"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def is_wsgi_app(app: Any) -> bool:
    """Guess whether ``app`` is WSGI: a synchronous callable taking ``(environ,
    start_response)``. ASGI 3 apps are coroutine functions (or objects whose ``__call__`` is),
    and ASGI 2 apps take one argument (the scope)."""
    if inspect.isclass(app):
        return False
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)  # noqa: B004,E501
    if call is None or inspect.iscoroutinefunction(call):
        return False
    func = getattr(app, "func", None)  # functools.partial
    if func is not None and inspect.iscoroutinefunction(func):
        return False
    try:
        params = [
            p for p in inspect.signature(call).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return False
    return len(params) == 2


class _Input(io.RawIOBase):
    """``wsgi.input``: reads pull ASGI ``http.request`` messages from the request's task."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._buffer = bytearray()
        self._more = True

    def readable(self) -> bool:
        return True

    def _pull(self) -> bool:
        if not self._more:
            return False
        message: Message = trio.from_thread.run(self._receive)
        if message["type"] == "http.disconnect":
            self._more = False
            raise OSError("the client disconnected")
        self._buffer += message.get("body", b"")
        self._more = bool(message.get("more_body", False))
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer and self._pull():
            pass
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        del self._buffer[:n]
        return n

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._pull():
                pass
            out = bytes(self._buffer)
            self._buffer.clear()
            return out
        while len(self._buffer) < size and self._pull():
            pass
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def readline(self, size: int | None = -1) -> bytes:
        while b"\n" not in self._buffer and self._pull():
            pass
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        if size is not None and size >= 0:
            end = min(end, size)
        out = bytes(self._buffer[:end])
        del self._buffer[:end]
        return out


def _environ(scope: Scope, body: _Input) -> dict[str, Any]:
    root = scope.get("root_path", "")
    path = scope["path"]
    if root and path.startswith(root):
        path = path[len(root):]
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        # PEP 3333: native strings holding the bytes as latin-1.
        "SCRIPT_NAME": root.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] if server[1] is not None else 0),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    if client:
        environ["REMOTE_ADDR"] = str(client[0])
        environ["REMOTE_PORT"] = str(client[1])
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = name
        else:
            key = "HTTP_" + name
        if key in environ:
            sep = "; " if key == "HTTP_COOKIE" else ","
            environ[key] = environ[key] + sep + value
        else:
            environ[key] = value
    return environ


class _Response:
    """``start_response`` and ``write`` for one request; the head goes out with the first
    non-empty chunk (PEP 3333: headers may be replaced until then)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_sent = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and self.head_sent:
            raise exc_info[1].with_traceback(exc_info[2])
        if self.status is not None and exc_info is None:
            raise RuntimeError("start_response called twice without exc_info")
        self.status = int(status.split(" ", 1)[0])
        self.headers = [
            (n.strip().lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers
        ]
        return self.write

    def _message(self, message: Message) -> None:
        trio.from_thread.run(self._send, message)

    def write(self, data: bytes) -> None:
        if self.status is None:
            raise RuntimeError("write() before start_response()")
        if not self.head_sent:
            self.head_sent = True
            self._message({"type": "http.response.start", "status": self.status,
                           "headers": self.headers})
        if data:
            self._message({"type": "http.response.body", "body": bytes(data), "more_body": True})

    def finish(self) -> None:
        if not self.head_sent:
            self.write(b"")
        self._message({"type": "http.response.body", "body": b"", "more_body": False})


class WSGIMiddleware:
    """An ASGI app serving the WSGI ``app`` (``http`` scopes; ``lifespan`` is acknowledged,
    ``websocket`` refused). ``max_threads``: requests running the app at once (threads)."""

    def __init__(self, app: WSGIApp, *, max_threads: int = 40) -> None:
        self.app = app
        self.limiter = trio.CapacityLimiter(max_threads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        response = _Response(send)
        # Abandoned on cancellation so that shutdown keeps its deadline; the limiter token is
        # held until the thread really returns, so abandoned threads still count.
        await trio.to_thread.run_sync(
            self._run, scope, receive, response, limiter=self.limiter, abandon_on_cancel=True
        )

    def _run(self, scope: Scope, receive: Receive, response: _Response) -> None:
        body = _Input(receive)
        result = self.app(_environ(scope, body), response.start_response)
        try:
            for chunk in result:
                if chunk:
                    response.write(chunk)
            if response.status is None:
                raise RuntimeError("the WSGI app returned without calling start_response()")
            response.finish()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
