"""The parts of the ASGI bridge shared by every protocol: application calling conventions,
response-head validation, default headers, error logging and access logging.

Source: the ASGI specification (https://asgi.readthedocs.io/en/latest/specs/www.html).
"""

from __future__ import annotations

import inspect
import logging
import time
from email.utils import formatdate
from typing import Any

from ._types import ASGIApp, Receive, Scope, Send

__all__ = [
    "DEFAULT_SERVER",
    "access_logger",
    "error_logger",
    "http_date",
    "wrap_app",
]

error_logger = logging.getLogger("trio_http.error")
access_logger = logging.getLogger("trio_http.access")

DEFAULT_SERVER = b"trio_http"


def wrap_app(app: Any) -> ASGIApp:
    """Return an ASGI 3 callable for ``app``, wrapping an ASGI 2 (double-callable) app.

    Detection follows Uvicorn: a class whose instances are awaitable is ASGI 3; any other
    class is ASGI 2; a callable whose ``__call__`` is a coroutine function is ASGI 3.
    """
    if inspect.isclass(app):
        asgi3 = hasattr(app, "__await__")
    elif inspect.isfunction(app) or inspect.ismethod(app):
        asgi3 = inspect.iscoroutinefunction(app)
    else:
        call = getattr(app, "__call__", None)  # noqa: B004
        asgi3 = inspect.iscoroutinefunction(call) or not callable(call)
        if not asgi3 and call is not None:
            # functools.partial of an async function, or similar: look through it.
            func = getattr(app, "func", None)
            asgi3 = func is not None and inspect.iscoroutinefunction(func)
    if asgi3:
        return app  # type: ignore[no-any-return]

    async def asgi2_adapter(scope: Scope, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi2_adapter


class _DateCache:
    """The ``date`` header value (RFC 9110 §6.6.1), formatted at most once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


http_date = _DateCache().get


def log_app_exception(scope: Scope | None, exc: BaseException) -> None:
    """Log an exception raised by the application, with the request it was serving."""
    where = ""
    if scope is not None:
        where = f" for {scope.get('method', scope.get('type', '?'))} {scope.get('path', '')!r}"
    error_logger.error("Exception in ASGI application%s", where, exc_info=exc)


class AccessLogAtoms(dict[str, str]):
    """Gunicorn-style access log atoms (``%(h)s %(r)s %(s)s %(b)s %(D)s`` ...)."""

    def __init__(
        self, scope: Scope, status: int, size: int, duration: float, response_headers: Any = ()
    ) -> None:
        client = scope.get("client")
        method = scope.get("method", "GET")
        path = scope.get("raw_path", b"").decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        protocol = f"HTTP/{scope.get('http_version', '1.1')}"
        target = f"{path}?{query}" if query else path
        super().__init__(
            h=client[0] if client else "-",
            l="-",
            u="-",
            t=time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
            r=_escape(f"{method} {target} {protocol}"),
            m=method,
            U=_escape(path),
            q=_escape(query),
            H=protocol,
            s=str(status),
            b=str(size) if size else "-",
            B=str(size),
            D=str(int(duration * 1_000_000)),
            T=str(int(duration)),
            L=f"{duration:.6f}",
            p=f"<{id(scope)}>",
        )
        self._headers = scope.get("headers", ())
        self._response_headers = response_headers

    def __missing__(self, key: str) -> str:
        # {name}i: a request header; {name}o: a response header (Gunicorn's atoms).
        if key.startswith("{") and key[-2:] in ("}i", "}o"):
            want = key[1:-2].lower().encode("latin-1")
            fields = self._headers if key[-1] == "i" else self._response_headers
            for name, value in fields:
                if bytes(name).lower() == want:
                    return _escape(bytes(value).decode("latin-1"))
        return "-"


def _escape(text: str) -> str:
    # Untrusted request data must not forge log lines or terminal escapes.
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


def log_access(
    fmt: str, scope: Scope, status: int, size: int, started: float,
    response_headers: Any = (),
) -> None:
    """Emit one access log line at INFO on ``trio_http.access``. ``response_headers`` are the
    app's ``http.response.start`` headers, for ``{name}o`` atoms."""
    atoms = AccessLogAtoms(scope, status, size, time.perf_counter() - started, response_headers)
    try:
        line = fmt % atoms
    except (KeyError, TypeError, ValueError):
        line = f"{atoms['h']} \"{atoms['r']}\" {atoms['s']} {atoms['b']}"
    access_logger.info(line)
