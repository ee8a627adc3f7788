"""The embedding API beyond serve_asgi: open_asgi_server and handle_asgi_stream, over real
sockets on 127.0.0.1."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest
import trio

from trio_http import handle_asgi_stream, open_asgi_server

from .conftest import hello_app


async def test_open_asgi_server_serves_then_shuts_down() -> None:
    with trio.fail_after(10):
        async with open_asgi_server(hello_app, binds=["127.0.0.1:0"]) as server:
            url = server.urls[0]
            assert server.port != 0
            async with httpx.AsyncClient() as client:
                r = await client.get(url)
            assert r.text == "hello over 1.1"
            assert server.statistics()["requests_total"] == 1
        # Leaving the block closed the listener: nothing answers any more.
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", server.port)


async def _serve_one(listener: trio.SocketListener, wrap: Any = None) -> None:
    stream: trio.abc.Stream = await listener.accept()
    if wrap is not None:
        stream = wrap(stream)
    await handle_asgi_stream(hello_app, stream)


async def test_handle_asgi_stream_plain_socket() -> None:
    with trio.fail_after(10):
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listener.socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_one, listener)
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{port}/")
                again = await client.get(f"http://127.0.0.1:{port}/")  # keep-alive
        await listener.aclose()
    assert r.status_code == 200 and r.text == "hello over 1.1"
    assert again.text == "hello over 1.1"


async def test_handle_asgi_stream_tls_picks_h2_by_alpn(
    cert_files: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_files["certfile"], cert_files["keyfile"])
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    with trio.fail_after(10):
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listener.socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                _serve_one, listener,
                lambda s: trio.SSLStream(s, server_ctx, server_side=True),
            )
            async with httpx.AsyncClient(verify=client_ssl_context, http2=True) as client:
                r = await client.get(f"https://localhost:{port}/")
        await listener.aclose()
    assert r.http_version == "HTTP/2"
    assert r.text == "hello over 2"
