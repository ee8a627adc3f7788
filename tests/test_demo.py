"""The demo app's routes, over real sockets: the page, the stylesheet, /api/info, /api/stats
(the server's statistics through the ``trio_http.statistics`` scope extension), /sse, /echo,
and the 103 Early Hints it sends when the server offers ``http.response.early_hint``."""

from __future__ import annotations

import json
from typing import Any

import h11
import httpx
import trio

from trio_http import Config
from trio_http.demo import PRELOAD
from trio_http.demo import app as demo_app


async def test_page_names_the_protocol(start_server, client_ssl_context):
    server = await start_server(demo_app, tls=True)
    async with httpx.AsyncClient(verify=client_ssl_context, http2=True) as client:
        r = await client.get(server.urls[0] + "/")
        assert r.http_version == "HTTP/2"
        assert '<p id="protocol">HTTP/2</p>' in r.text
        assert '<span id="transport">https, TLS 1.' in r.text
        css = await client.get(server.urls[0] + "/demo.css")
        assert css.headers["content-type"].startswith("text/css")
        info = (await client.get(server.urls[0] + "/api/info")).json()
        assert info["protocol"] == "HTTP/2" and info["scheme"] == "https"
        assert (await client.get(server.urls[0] + "/nowhere")).status_code == 404
        echoed = await client.post(server.urls[0] + "/echo", content=b"x" * 100_000)
        assert echoed.content == b"x" * 100_000


async def test_api_stats_are_the_running_servers(start_server):
    server = await start_server(demo_app)
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            await client.get(server.urls[0] + "/api/info")
        stats = (await client.get(server.urls[0] + "/api/stats")).json()
    # The fourth request, on the one keep-alive connection.
    assert stats["requests_total"] == 4
    assert stats["connections_total"] == 1
    assert stats["shutting_down"] is False
    assert server.statistics()["requests_total"] == 4


async def test_api_stats_without_the_extension():
    # Another server (here: the app called directly) offers no statistics: 404, not a crash.
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "http_version": "1.1", "scheme": "http", "method": "GET",
             "path": "/api/stats", "query_string": b"", "headers": []}
    await demo_app(scope, receive, send)
    assert sent[0]["status"] == 404


async def test_sse_streams_statistics_events(start_server):
    server = await start_server(demo_app, config=Config(h2_max_concurrent_streams=10))
    events = []
    async with httpx.AsyncClient(http1=False, http2=True) as client:  # h2c prior knowledge
        async with client.stream("GET", server.urls[0] + "/sse?interval=0.05&count=3") as r:
            assert r.headers["content-type"] == "text/event-stream"
            with trio.fail_after(10):
                text = (await r.aread()).decode()
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        assert fields["event"] == "stats"
        events.append(json.loads(fields["data"]))
    assert [e["seq"] for e in events] == [0, 1, 2]
    assert events[0]["statistics"]["streams_open"] == 1  # this stream


async def test_sse_ends_when_the_client_leaves(start_server):
    returned = trio.Event()

    async def watched(scope: Any, receive: Any, send: Any) -> None:
        try:
            await demo_app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                returned.set()

    server = await start_server(watched)
    async with httpx.AsyncClient() as client:
        async with client.stream("GET", server.urls[0] + "/sse?interval=60") as r:
            async for chunk in r.aiter_text():
                assert "event: stats" in chunk
                break
    # The stream's 60 s wait is cut short by the disconnect.
    with trio.fail_after(5):
        await returned.wait()
    assert server.statistics()["app_errors"] == 0


async def _raw_get(port: int, path: str) -> list[Any]:
    """One HTTP/1.1 GET with h11, returning every event including 1xx responses."""
    conn = h11.Connection(h11.CLIENT)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(conn.send(h11.Request(
            method="GET", target=path, headers=[("host", "localhost"), ("connection", "close")]
        )) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        out: list[Any] = []
        with trio.fail_after(10):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                out.append(event)
                if type(event) in (h11.EndOfMessage, h11.ConnectionClosed):
                    return out


async def test_early_hints_when_offered(start_server):
    server = await start_server(demo_app)
    async with httpx.AsyncClient() as client:
        offered = (await client.get(server.urls[0] + "/api/info")).json()["early_hints"]
    events = await _raw_get(server.port, "/")
    informational = [e for e in events if isinstance(e, h11.InformationalResponse)]
    body = b"".join(e.data for e in events if isinstance(e, h11.Data)).decode()
    if offered:
        assert [e.status_code for e in informational] == [103]
        assert (b"link", PRELOAD) in informational[0].headers
        assert "a 103 preloaded /demo.css" in body
    else:
        assert informational == []
        assert "not offered by the server" in body


async def test_early_hint_sent_before_the_response_when_advertised():
    # Whatever the server offers, the demo's own logic: advertise the extension and record.
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "http_version": "2", "scheme": "https", "method": "GET",
             "path": "/", "query_string": b"", "headers": [],
             "extensions": {"http.response.early_hint": {}}}
    await demo_app(scope, receive, send)
    assert [m["type"] for m in sent] == [
        "http.response.early_hint", "http.response.start", "http.response.body",
    ]
    assert sent[0]["links"] == [PRELOAD]
