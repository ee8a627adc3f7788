"""ASGI apps for the WebSocket tests: an echo server and a recorder that keeps what the app
saw (messages, the exception a late ``send()`` raised) for the test to check."""

from __future__ import annotations

from typing import Any

import trio


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """WebSocket echo at any path (first offered subprotocol accepted); ``hello`` over HTTP."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello"})
        return
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    subprotocols = scope["subprotocols"]
    await send({"type": "websocket.accept",
                "subprotocol": subprotocols[0] if subprotocols else None})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})


class Recorder:
    """An app that accepts, optionally sends ``greeting`` messages, then echoes until the
    disconnect, which it records with everything else it saw; ``done`` is set when it
    returns. ``send_after_close`` makes it call ``send()`` once more after the disconnect
    (the exception is kept in ``late_send_error``)."""

    def __init__(self, *, greeting: list[Any] | None = None, send_after_close: bool = False):
        self.greeting = greeting or []
        self.send_after_close = send_after_close
        self.scope: dict[str, Any] | None = None
        self.received: list[dict[str, Any]] = []
        self.disconnect: dict[str, Any] | None = None
        self.late_send_error: BaseException | None = None
        self.done = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        self.scope = scope
        try:
            await receive()
            await send({"type": "websocket.accept"})
            for item in self.greeting:
                key = "text" if isinstance(item, str) else "bytes"
                await send({"type": "websocket.send", key: item})
            while True:
                msg = await receive()
                self.received.append(msg)
                if msg["type"] == "websocket.disconnect":
                    self.disconnect = msg
                    break
                await send({"type": "websocket.send", **{
                    k: v for k, v in msg.items() if k in ("text", "bytes")
                }})
            if self.send_after_close:
                try:
                    await send({"type": "websocket.send", "text": "too late"})
                except BaseException as exc:  # the test checks which one
                    self.late_send_error = exc
        finally:
            self.done.set()
