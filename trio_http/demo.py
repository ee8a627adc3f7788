"""The built-in demo app, served by ``python -m trio_http`` with no APP argument.

``/`` is a small page showing the protocol the request came over, with a WebSocket echo form;
``/api/info`` returns the same facts as JSON; ``/echo`` (POST) echoes the request body; ``/ws``
is a WebSocket echo (over HTTP/1.1 Upgrade or HTTP/2 extended CONNECT).
"""

from __future__ import annotations

import html
import json
from typing import Any

from ._types import Receive, Scope, Send

_PROTOCOLS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2", "3": "HTTP/3"}


def _info(scope: Scope) -> dict[str, Any]:
    client = scope.get("client")
    return {
        "protocol": _PROTOCOLS.get(scope["http_version"], scope["http_version"]),
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "method": scope["method"],
        "path": scope["path"],
        "client": f"{client[0]}:{client[1]}" if client else None,
        "server": "trio_http",
    }


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>trio_http demo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;line-height:1.5}}
code{{background:#eee;padding:0 .3em}} #protocol{{font-size:2em;font-weight:bold}}</style>
</head><body>
<h1>trio_http is running</h1>
<p>This page came to you over</p>
<p id="protocol">{protocol}</p>
<p>({scheme}, from {client}). JSON: <a href="/api/info"><code>/api/info</code></a>.</p>
<h2>WebSocket echo</h2>
<form id="ws-form"><input id="ws-text" value="hello" autocomplete="off">
<button>Send</button></form>
<pre id="ws-log"></pre>
<script>
const log = document.getElementById("ws-log");
const say = (line) => {{ log.textContent += line + "\\n"; }};
const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
const ws = new WebSocket(url);
ws.onopen = () => say("connected to " + url);
ws.onmessage = (e) => say("< " + e.data);
ws.onclose = (e) => say("closed (" + e.code + ")");
document.getElementById("ws-form").onsubmit = (e) => {{
  e.preventDefault();
  const text = document.getElementById("ws-text").value;
  if (ws.readyState === WebSocket.OPEN) {{ ws.send(text); say("> " + text); }}
}};
</script>
</body></html>
"""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The demo ASGI 3 application."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await _websocket_echo(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/api/info":
        body = json.dumps(_info(scope)).encode()
        ctype = b"application/json"
        status = 200
    elif path == "/echo":
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        ctype = b"application/octet-stream"
        status = 200
    elif path == "/":
        info = _info(scope)
        body = _PAGE.format(**{k: html.escape(str(v)) for k, v in info.items()}).encode()
        ctype = b"text/html; charset=utf-8"
        status = 200
    else:
        body = b"not found\n"
        ctype = b"text/plain; charset=utf-8"
        status = 404
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


async def _websocket_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """``/ws``: greet with the protocol the WebSocket runs over, then echo every message."""
    if (await receive())["type"] != "websocket.connect":
        return
    if scope["path"] != "/ws":
        await send({"type": "websocket.close"})  # 403
        return
    await send({"type": "websocket.accept"})
    protocol = _PROTOCOLS.get(scope["http_version"], scope["http_version"])
    await send({"type": "websocket.send", "text": f"welcome: a WebSocket over {protocol}"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
