"""WSGI apps served over HTTP/1.1 and HTTP/2: the environ, request bodies streamed in and
responses streamed out, errors as 500, the thread limiter, --interface auto from the CLI, and
Flask when it is installed."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
import trio

from trio_http import Config
from trio_http._wsgi import WSGIMiddleware, is_wsgi_app

from .apps.prod_apps import info_app, wsgi_app
from .prod_helpers import http_get, run_cli


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2c"])
async def test_wsgi_environ_and_streamed_echo(start_server, http2):
    server = await start_server(WSGIMiddleware(wsgi_app), config=Config(root_path="/mnt"))
    body = bytes(range(256)) * 4096  # 1 MiB
    async with httpx.AsyncClient(http1=not http2, http2=http2) as client:
        r = await client.get(server.urls[0] + "/mnt/caf%C3%A9?x=1", headers={"x-test": "yes"})
        assert r.status_code == 200
        view = r.json()
        assert view["script_name"] == "/mnt"
        assert view["path_info"] == "/café".encode().decode("latin-1")
        assert view["query"] == "x=1" and view["x_test"] == "yes"
        assert view["remote_addr"] == "127.0.0.1"
        assert view["protocol"] == ("HTTP/2" if http2 else "HTTP/1.1")

        async def chunks() -> Any:
            for i in range(0, len(body), 65536):
                yield body[i:i + 65536]

        r = await client.post(server.urls[0] + "/echo", content=chunks())
        assert r.status_code == 200 and r.headers["x-length"] == str(len(body))
        assert r.content == body
        assert (await client.get(server.urls[0] + "/fail")).status_code == 500


async def test_thread_limiter_bounds_concurrency(start_server):
    lock = threading.Lock()
    gate = threading.Event()
    running = peak = 0

    def slow(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait(10)
        with lock:
            running -= 1
        start_response("200 OK", [])
        return [b"ok"]

    app = WSGIMiddleware(slow, max_threads=2)
    server = await start_server(app)
    results: list[int] = []

    async def one(client: httpx.AsyncClient) -> None:
        results.append((await client.get(server.urls[0])).status_code)

    # A generous client timeout: under CPU load the default 5 s could cancel a request and
    # blur what the limiter did.
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=10), timeout=60) as client:
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one, client)
            with trio.fail_after(10):
                # Threads, not tasks, move it: poll.
                while app.limiter.statistics().tasks_waiting < 3 or running < 2:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            assert app.limiter.borrowed_tokens == 2
            gate.set()
    assert results == [200] * 5 and peak == 2


def test_interface_detection():
    assert is_wsgi_app(wsgi_app)
    assert not is_wsgi_app(info_app)

    class Asgi2:
        def __init__(self, scope: Any) -> None: ...

    class Callable2:
        def __call__(self, environ: Any, start_response: Any) -> Any: ...

    assert not is_wsgi_app(Asgi2)
    assert is_wsgi_app(Callable2())


async def test_wsgi_app_from_the_cli_is_detected():
    async with run_cli("tests.apps.prod_apps:wsgi_app", "--bind", "127.0.0.1:0") as server:
        status, body = await trio.to_thread.run_sync(http_get, server.port, "/x?y=2")
        assert status == 200 and b'"query": "y=2"' in body


async def test_flask_app(start_server):
    flask = pytest.importorskip("flask")
    app = flask.Flask("t")

    @app.post("/hello/<name>")
    def hello(name: str) -> Any:
        return {"name": name, "body": flask.request.get_data(as_text=True)}

    server = await start_server(WSGIMiddleware(app))
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        r = await client.post(server.urls[0] + "/hello/trio", content=b"data")
    assert r.http_version == "HTTP/2" and r.json() == {"name": "trio", "body": "data"}
