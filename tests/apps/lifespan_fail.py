"""An app whose lifespan startup fails: the CLI must exit 3 with the app's message."""

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    raise AssertionError("never served")
