"""Build ASGI ``http`` and ``websocket`` scopes from :class:`Request` events: the one place
where request-targets are split and percent-decoded (ASGI HTTP spec, "HTTP Connection Scope")."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from ._events import Request

__all__ = ["ASGI_VERSION", "ConnectionInfo", "build_scope"]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}


class ConnectionInfo:
    """What a scope needs from the connection, computed once per connection: ``client`` and
    ``server`` as ``(host, port)`` (or ``None``, or ``(path, None)`` for unix sockets),
    whether TLS is on, the ``root_path``, the lifespan ``state`` to copy into each scope, and the
    ``extensions`` dict (shared, read-only)."""

    __slots__ = ("client", "extensions", "root_path", "server", "state", "tls")

    def __init__(
        self,
        *,
        client: tuple[str, int] | None,
        server: tuple[str, int | None] | None,
        tls: bool,
        root_path: str = "",
        state: dict[str, Any] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.server = server
        self.tls = tls
        self.root_path = root_path
        self.state = state
        self.extensions = extensions if extensions is not None else {}


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    path, _, query = target.partition(b"?")
    if not path.startswith(b"/"):
        # absolute-form (RFC 9112 §3.2.2): keep only the path part.
        if b"://" in path:
            rest = path.split(b"://", 1)[1]
            slash = rest.find(b"/")
            path = rest[slash:] if slash >= 0 else b"/"
        elif path != b"*":
            path = b"/" + path
    return path, query


def build_scope(
    request: Request, info: ConnectionInfo, *, websocket: bool = False
) -> dict[str, Any]:
    """The ASGI scope for ``request``. ``path`` is percent-decoded UTF-8 and, as Uvicorn and
    Starlette expect, starts with ``root_path``; ``raw_path`` is the path as sent."""
    raw_path, query = _split_target(request.target)
    # unquote() is costly; most paths hold no escapes. (find(), not "in": bytes.__contains__
    # first tries its argument as an integer and formats a TypeError each time.)
    # Unquoted as latin-1 so that escaped bytes stay bytes; the UTF-8 decoding below then
    # applies once to escaped and raw bytes alike.
    path = (unquote(raw_path.decode("latin-1"), encoding="latin-1") if raw_path.find(b"%") >= 0
            else raw_path.decode("latin-1"))
    if not path.isascii():
        path = path.encode("latin-1").decode("utf-8", "replace")
    root = info.root_path
    if websocket:
        scheme = "wss" if info.tls else "ws"
    else:
        scheme = request.scheme or ("https" if info.tls else "http")
    scope: dict[str, Any] = {
        "type": "websocket" if websocket else "http",
        "asgi": ASGI_VERSION,
        "http_version": request.http_version,
        "scheme": scheme,
        "path": root + path if root and not path.startswith(root) else path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root,
        "headers": request.headers,
        "client": info.client,
        "server": info.server,
        "extensions": info.extensions,
    }
    if not websocket:
        scope["method"] = request.method.decode("ascii")
    if info.state is not None:
        scope["state"] = info.state.copy()
    return scope
