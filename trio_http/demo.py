"""The built-in demo app, served by ``python -m trio_http`` with no APP argument: a page that
shows what the server does, on whichever protocol the browser used.

Routes:

* ``/``: the showcase page. It names the protocol it came over (HTTP/1.1, HTTP/2, HTTP/3) and
  the TLS version; it was preceded by a ``103 Early Hints`` preload of its stylesheet when the
  server offers the ``http.response.early_hint`` extension; it runs a WebSocket echo and shows
  the server's live statistics, streamed by server-sent events.
* ``/demo.css``: the page's stylesheet, the resource the 103 preloads.
* ``/api/info``: the facts about this request, as JSON.
* ``/api/stats``: the server's ``RunningServer.statistics()`` as JSON, read through the
  ``trio_http.statistics`` scope extension (404 under a server that does not offer it).
* ``/sse``: ``text/event-stream``; a ``stats`` event every ``interval`` seconds (query
  parameter, 0.05 to 60, default 1) ``count`` times (default: until the client leaves).
* ``/echo`` (POST): the request body, echoed.
* ``/ws``: a WebSocket (HTTP/1.1 Upgrade, or extended CONNECT over HTTP/2 and HTTP/3) that
  greets with the protocol it runs over, then echoes every message.
"""

from __future__ import annotations

import html
import json
import math
import time
from typing import Any
from urllib.parse import parse_qs

import trio

from ._errors import ClientDisconnected
from ._types import Receive, Scope, Send

__all__ = ["app"]

_PROTOCOLS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2", "3": "HTTP/3"}
_TLS_VERSIONS = {0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
#: The Link header the 103 Early Hints carries (RFC 8297; preload, W3C Preload).
PRELOAD = b"</demo.css>; rel=preload; as=style"
#: Bounds of the ``/sse`` query parameters: seconds between events, and events per stream.
SSE_INTERVAL_RANGE = (0.05, 60.0)
SSE_MAX_COUNT = 1_000_000


def _protocol(scope: Scope) -> str:
    return _PROTOCOLS.get(scope["http_version"], f"HTTP/{scope['http_version']}")


def _extensions(scope: Scope) -> dict[str, Any]:
    return scope.get("extensions") or {}


def _statistics(scope: Scope) -> dict[str, Any] | None:
    """The server's live counters, when it offers them (trio_http does)."""
    ext = _extensions(scope).get("trio_http.statistics")
    if not ext or not callable(ext.get("statistics")):
        return None
    stats: dict[str, Any] = ext["statistics"]()
    return stats


def _info(scope: Scope) -> dict[str, Any]:
    client = scope.get("client")
    tls = _extensions(scope).get("tls") or {}
    return {
        "protocol": _protocol(scope),
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "tls_version": _TLS_VERSIONS.get(tls.get("tls_version") or 0),
        "method": scope["method"],
        "path": scope["path"],
        "client": f"{client[0]}:{client[1]}" if client else None,
        "server": "trio_http",
        "early_hints": "http.response.early_hint" in _extensions(scope),
    }


async def _respond(send: Send, status: int, ctype: bytes, body: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
                    *(extra or [])],
    })
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, value: Any, status: int = 200) -> None:
    await _respond(send, status, b"application/json", json.dumps(value, default=str).encode())


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The demo ASGI 3 application (see the module's documentation for its routes)."""
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
    if path == "/":
        await _page(scope, send)
    elif path == "/demo.css":
        await _respond(send, 200, b"text/css; charset=utf-8", _CSS.encode(),
                       [(b"cache-control", b"max-age=600")])
    elif path == "/api/info":
        await _json(send, _info(scope))
    elif path == "/api/stats":
        stats = _statistics(scope)
        if stats is None:
            await _json(send, {"error": "this server offers no statistics"}, 404)
        else:
            await _json(send, stats)
    elif path == "/sse":
        await _sse(scope, receive, send)
    elif path == "/echo" and scope["method"] == "POST":
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await _respond(send, 200, b"application/octet-stream", b"".join(chunks))
    else:
        await _respond(send, 404, b"text/plain; charset=utf-8", b"not found\n")


async def _page(scope: Scope, send: Send) -> None:
    info = _info(scope)
    if info["early_hints"]:
        # RFC 8297: the browser may fetch the stylesheet while this response is prepared.
        await send({"type": "http.response.early_hint", "links": [PRELOAD]})
        hints = "sent: a 103 preloaded /demo.css before this page"
    else:
        hints = "not offered by the server on this connection"
    values = {
        "protocol": info["protocol"],
        "transport": (f"{info['scheme']}, {info['tls_version']}" if info["tls_version"]
                      else info["scheme"]),
        "client": info["client"] or "unknown",
        "hints": hints,
    }
    body = _PAGE.format(**{k: html.escape(str(v)) for k, v in values.items()}).encode()
    await _respond(send, 200, b"text/html; charset=utf-8", body,
                   [(b"cache-control", b"no-store")])


def _query_number(query: dict[str, list[str]], name: str, default: float) -> float:
    try:
        value = float(query[name][0])
    except (KeyError, ValueError):
        return default
    return value if math.isfinite(value) else default


async def _sse(scope: Scope, receive: Receive, send: Send) -> None:
    """Server-sent events (WHATWG HTML, "Server-sent events"): the statistics, periodically."""
    query = parse_qs(scope["query_string"].decode("latin-1"))
    low, high = SSE_INTERVAL_RANGE
    interval = min(max(_query_number(query, "interval", 1.0), low), high)
    count = int(min(max(_query_number(query, "count", SSE_MAX_COUNT), 1), SSE_MAX_COUNT))
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")],
    })
    try:
        async with trio.open_nursery() as nursery:
            # The client leaving ends the stream at once, not at the next event.
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
            for seq in range(count):
                if seq:
                    await trio.sleep(interval)
                event = {"seq": seq, "time": time.time(), "statistics": _statistics(scope)}
                data = json.dumps(event, default=str)
                await send({
                    "type": "http.response.body",
                    "body": f"id: {seq}\nevent: stats\ndata: {data}\n\n".encode(),
                    "more_body": True,
                })
            await send({"type": "http.response.body", "body": b""})
            nursery.cancel_scope.cancel()
    except* ClientDisconnected:
        pass  # the client left between two events


async def _cancel_on_disconnect(receive: Receive, cancel_scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    cancel_scope.cancel()


async def _websocket_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """``/ws``: greet with the protocol the WebSocket runs over, then echo every message."""
    if (await receive())["type"] != "websocket.connect":
        return
    if scope["path"] != "/ws":
        await send({"type": "websocket.close"})  # 403
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": f"welcome: a WebSocket over {_protocol(scope)}"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


_CSS = """body{font-family:system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;
line-height:1.5;color:#222}
code{background:#eee;padding:0 .3em;border-radius:3px}
#protocol{font-size:2.4em;font-weight:bold;margin:0}
section{border-top:1px solid #ddd;margin-top:1.5em}
pre{background:#f6f6f6;padding:.5em;min-height:3em;white-space:pre-wrap}
table{border-collapse:collapse}td{padding:0 1em 0 0}td.n{text-align:right;font-family:monospace}
.muted{color:#666}
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>trio_http demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/demo.css">
</head><body>
<h1>trio_http is running</h1>
<p>This page came to you over</p>
<p id="protocol">{protocol}</p>
<p class="muted">(<span id="transport">{transport}</span>, from {client}; your browser says
<code id="next-hop">?</code>). JSON: <a href="/api/info"><code>/api/info</code></a>,
<a href="/api/stats"><code>/api/stats</code></a>.</p>
<p>103 Early Hints: <span id="early-hints">{hints}</span>.</p>

<section><h2>WebSocket echo</h2>
<form id="ws-form"><input id="ws-text" value="hello" autocomplete="off">
<button id="ws-send">Send</button></form>
<pre id="ws-log"></pre></section>

<section><h2>Server statistics</h2>
<p class="muted">Streamed live from <code>/sse</code> (server-sent events):
<span id="sse-status">connecting</span>.</p>
<table id="stats"></table></section>

<script>
const nav = performance.getEntriesByType("navigation")[0];
document.getElementById("next-hop").textContent = nav ? nav.nextHopProtocol : "?";

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

const table = document.getElementById("stats");
const sseStatus = document.getElementById("sse-status");
const events = new EventSource("/sse");
events.addEventListener("stats", (e) => {{
  const event = JSON.parse(e.data);
  sseStatus.textContent = "event " + event.seq;
  table.replaceChildren();
  for (const [key, value] of Object.entries(event.statistics || {{}})) {{
    const row = table.insertRow();
    row.insertCell().textContent = key;
    const cell = row.insertCell();
    cell.className = "n";
    cell.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
  }}
}});
events.onerror = () => {{ sseStatus.textContent = "reconnecting"; }};
</script>
</body></html>
"""
