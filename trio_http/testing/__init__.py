"""Real in-process trio_http servers for any test suite: HTTP/1.1, HTTP/2 (h2 and h2c) and,
where trio_http serves it, HTTP/3, on 127.0.0.1 with a trustme certificate.

- :func:`open_test_server`: ``async with open_test_server(app) as server:`` in trio code.
- :func:`serve_in_thread`: ``with serve_in_thread(app) as server:`` anywhere else (sync or
  asyncio tests); the server runs its own trio loop in a background thread.
- :class:`RecordingApp`: records the requests an app sees (protocol, headers, body).
- The pytest plugin (registered automatically): fixtures ``trio_http_ca``,
  ``trio_http_serve``, ``trio_http_thread_server``, ``trio_http_client``.

See ``docs/testing.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._certs import default_ca as default_ca
    from ._recording import RecordedRequest as RecordedRequest
    from ._recording import RecordingApp as RecordingApp
    from ._server import TestServer as TestServer
    from ._server import open_test_server as open_test_server
    from ._thread import serve_in_thread as serve_in_thread

__all__ = [
    "RecordedRequest",
    "RecordingApp",
    "TestServer",
    "default_ca",
    "open_test_server",
    "serve_in_thread",
]

# Loaded on first access: pytest imports this package for the plugin (._plugin) in every run
# of every project with trio_http installed, and most of those runs never use a test server.
_WHERE = {
    "default_ca": "._certs",
    "RecordedRequest": "._recording",
    "RecordingApp": "._recording",
    "TestServer": "._server",
    "open_test_server": "._server",
    "serve_in_thread": "._thread",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
