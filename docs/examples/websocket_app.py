"""A Starlette WebSocket endpoint: upper-cases every text message it receives.

    python -m trio_http websocket_app:app --bind 127.0.0.1:8000 --ws-max-message-size 65536
"""

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def shout(websocket: WebSocket):
    await websocket.accept(subprotocol="shout.v1" if websocket.scope["subprotocols"] else None)
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(text.upper())
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/shout", shout)])
