"""A real framework WebSocket app for the CLI tests: Starlette endpoints served by
``python -m trio_http tests.apps.ws_starlette:app`` (Starlette runs on trio through anyio)."""

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket


async def echo(websocket: WebSocket) -> None:
    offered = websocket.scope["subprotocols"]
    await websocket.accept(subprotocol="echo" if "echo" in offered else None)
    await websocket.send_json({
        "http_version": websocket.scope["http_version"],
        "path": websocket.url.path,
        "query": websocket.query_params.get("q"),
    })
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message["bytes"])


async def goodbye(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close(code=4400, reason="goodbye from starlette")


async def forbidden(websocket: WebSocket) -> None:
    await websocket.close()  # before accept: 403


app = Starlette(routes=[
    WebSocketRoute("/ws", echo),
    WebSocketRoute("/bye", goodbye),
    WebSocketRoute("/forbidden", forbidden),
])
