"""The ASGI lifespan protocol around a real server: startup before the server is ready, state
copied into every request scope, shutdown after the last request drained, and failures that
stop the server with :class:`LifespanFailure`."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
import pytest
import trio

from trio_http import Config, LifespanFailure, serve_asgi


class LifespanApp:
    def __init__(self, *, startup: str = "complete", shutdown: str = "complete",
                 hang: str | None = None) -> None:
        self.events: list[str] = []
        self.startup = startup
        self.shutdown = shutdown
        self.hang = hang

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                phase = msg["type"].split(".")[1]
                self.events.append(phase)
                if self.hang == phase:
                    await trio.sleep_forever()
                if phase == "startup":
                    if self.startup == "raise":
                        raise RuntimeError("startup exploded")
                    scope["state"]["pool"] = ["conn"]
                    await send({"type": f"lifespan.startup.{self.startup}",
                                "message": "no database"})
                else:
                    await send({"type": f"lifespan.shutdown.{self.shutdown}",
                                "message": "could not flush"})
                    return
        self.events.append("request")
        body = repr(sorted(scope["state"])).encode()
        scope["state"]["pool"].append("mutated")  # a shallow copy: the list is shared
        scope["state"]["per_request"] = True  # but keys added here do not leak
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def test_startup_state_and_shutdown_order():
    app = LifespanApp()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_asgi, app, binds=["127.0.0.1:0"]))
        assert app.events == ["startup"]
        async with httpx.AsyncClient() as client:
            for _ in range(2):
                r = await client.get(server.urls[0])
                assert r.text == "['pool']"
        assert server.state == {"pool": ["conn", "mutated", "mutated"]}
        nursery.cancel_scope.cancel()
    assert app.events == ["startup", "request", "request", "shutdown"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"startup": "failed"}, "no database"),
    ({"startup": "raise"}, "startup exploded"),
])
async def test_startup_failure_raises_and_never_serves(kwargs, message):
    app = LifespanApp(**kwargs)
    async with trio.open_nursery() as nursery:
        with pytest.raises(LifespanFailure, match=message):
            await nursery.start(partial(serve_asgi, app, binds=["127.0.0.1:0"],
                                        config=Config(lifespan="on")))


async def test_startup_timeout(autojump_clock):
    app = LifespanApp(hang="startup")
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        with pytest.raises(LifespanFailure, match="startup"):
            await nursery.start(partial(serve_asgi, app, binds=["127.0.0.1:0"],
                                        config=Config(startup_timeout=7)))
    assert 7 <= trio.current_time() - start < 7.5


async def test_shutdown_timeout_is_bounded(autojump_clock, caplog):
    app = LifespanApp(hang="shutdown")
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_asgi, app, binds=["127.0.0.1:0"],
                                    config=Config(shutdown_timeout=4)))
        start = trio.current_time()
        nursery.cancel_scope.cancel()
    assert 4 <= trio.current_time() - start < 4.5
    assert "lifespan shutdown" in caplog.text


async def test_shutdown_failure_is_logged(caplog):
    app = LifespanApp(shutdown="failed")
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_asgi, app, binds=["127.0.0.1:0"]))
        nursery.cancel_scope.cancel()
    assert "could not flush" in caplog.text


async def test_app_without_lifespan_support_is_served_in_auto_mode():
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "no lifespan here"
        assert "state" not in scope
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_asgi, app, binds=["127.0.0.1:0"]))
        assert server.state is None
        async with httpx.AsyncClient() as client:
            assert (await client.get(server.urls[0])).text == "plain"
        nursery.cancel_scope.cancel()


async def test_app_without_lifespan_support_fails_in_on_mode():
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("only http")

    async with trio.open_nursery() as nursery:
        with pytest.raises(LifespanFailure):
            await nursery.start(partial(serve_asgi, app, binds=["127.0.0.1:0"],
                                        config=Config(lifespan="on")))


async def test_lifespan_off_never_calls_the_app():
    app = LifespanApp()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_asgi, app, binds=["127.0.0.1:0"],
                                             config=Config(lifespan="off")))
        assert server.state is None
        nursery.cancel_scope.cancel()
    assert app.events == []
