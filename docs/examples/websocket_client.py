"""Talk to websocket_app.py with the `websockets` client library.

    python websocket_client.py ws://127.0.0.1:8000/shout
"""

import sys

from websockets.sync.client import connect

with connect(sys.argv[1], subprotocols=["shout.v1"], open_timeout=10) as ws:
    print("subprotocol:", ws.subprotocol)
    print("compression:", ws.protocol.extensions)  # permessage-deflate, RFC 7692
    for word in ("hello", "trio"):
        ws.send(word)
        print(ws.recv(timeout=10))
