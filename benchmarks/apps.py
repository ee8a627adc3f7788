"""Minimal ASGI 3 applications used by the load benchmark (``benchmarks/load.py``).

Each app is lifespan-aware (it acknowledges ``lifespan.startup`` and
``lifespan.shutdown``) so that every server under test can run it with its
default lifespan handling.

* ``hello`` -- ``200 text/plain`` ``Hello, world!`` with ``content-length``.
* ``echo``  -- reads the whole request body and sends it back.
* ``big``   -- a 1 MiB response body sent in a single ``http.response.body``.

Run e.g. ``python -m trio_http benchmarks.apps:hello --bind 127.0.0.1:8000``
from the repository root.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO_BODY = b"Hello, world!"
BIG_BODY = b"x" * (1024 * 1024)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Send, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(receive: Receive) -> bytes | None:
    """Return the full request body, or None if the client disconnected."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _not_supported(scope: Scope) -> None:
    raise RuntimeError(f"unsupported scope type {scope['type']!r}")


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        await _respond(send, HELLO_BODY, b"text/plain")
    else:
        await _not_supported(scope)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        body = await _read_body(receive)
        if body is not None:
            await _respond(send, body, b"application/octet-stream")
    else:
        await _not_supported(scope)


async def big(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        await _respond(send, BIG_BODY, b"application/octet-stream")
    else:
        await _not_supported(scope)


__all__ = ["big", "echo", "hello"]
