"""Graceful shutdown: cancelling the server lets requests in flight finish (HTTP/1.1 with
``Connection: close``, HTTP/2 with GOAWAY), refuses new connections, closes idle ones at once,
and never waits longer than ``graceful_timeout``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import h2.errors
import pytest
import trio
from hyperframe.frame import RstStreamFrame

from trio_http import Config, RunningServer, serve_asgi

from .apps.peers import H1Client, H2Client, connect, parse_frames, read_until_eof

ERR = h2.errors.ErrorCodes


class SlowApp:
    """``/slow`` waits for ``release`` (which may never come); anything else answers at once."""

    def __init__(self) -> None:
        self.entered = trio.Event()
        self.release = trio.Event()
        self.cancelled = False
        self.completed = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            self.entered.set()
            try:
                await self.release.wait()
            except trio.Cancelled:
                self.cancelled = True
                raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done " + scope["path"].encode()})
        self.completed += 1


@dataclass
class Handle:
    server: RunningServer
    scope: trio.CancelScope
    stopped: trio.Event
    cancelled_at: float = 0.0
    stopped_at: float = 0.0

    def shutdown(self) -> None:
        self.cancelled_at = trio.current_time()
        self.scope.cancel()


@asynccontextmanager
async def running(app: Any, config: Config) -> AsyncIterator[Handle]:
    """A server in its own cancel scope, so a test can shut it down and keep running."""
    scope = trio.CancelScope()
    stopped = trio.Event()
    handle: Handle | None = None

    async def run(task_status: trio.TaskStatus[RunningServer]) -> None:
        with scope:
            await serve_asgi(app, binds=["127.0.0.1:0"], config=config, task_status=task_status)
        if handle is not None:
            handle.stopped_at = trio.current_time()
        stopped.set()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(run)
        handle = Handle(server, scope, stopped)
        yield handle
        scope.cancel()


async def assert_refused(port: int) -> None:
    with pytest.raises(OSError):
        stream = await connect(port)
        # A connection that got through must at least not be served.
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert await read_until_eof(stream) == b""
        raise ConnectionRefusedError


async def test_http1_request_in_flight_completes(autojump_clock):
    app = SlowApp()
    async with running(app, Config(graceful_timeout=10)) as h:
        port = h.server.port
        client = await H1Client.open(port)
        idle = await H1Client.open(port)
        assert (await idle.request("GET", "/fast")).status == 200
        await client.send(*_get("/slow"))
        await app.entered.wait()
        h.shutdown()
        await trio.testing.wait_all_tasks_blocked()
        # The idle keep-alive connection is closed at once.
        assert await read_until_eof(idle.stream) == b""
        await assert_refused(port)
        assert not h.stopped.is_set()
        await trio.sleep(1)
        app.release.set()
        r = await client.read_response()
        assert r.status == 200
        assert r.body == b"done /slow"
        assert r.header(b"connection") == b"close"
        assert await read_until_eof(client.stream) == b""
        with trio.fail_after(1):
            await h.stopped.wait()
    assert not app.cancelled
    assert h.stopped_at - h.cancelled_at < 1.5


def _get(path: str) -> list[Any]:
    import h11

    return [h11.Request(method="GET", target=path, headers=[("host", "a")]), h11.EndOfMessage()]


async def test_shutdown_waits_at_most_graceful_timeout(autojump_clock):
    app = SlowApp()  # release never fires
    async with running(app, Config(graceful_timeout=3)) as h:
        client = await H1Client.open(h.server.port)
        await client.send(*_get("/slow"))
        await app.entered.wait()
        h.shutdown()
        with trio.fail_after(60):
            await h.stopped.wait()
        # The app was cancelled at the deadline; the connection is gone.
        assert await read_until_eof(client.stream) == b""
    assert app.cancelled
    assert 3 <= h.stopped_at - h.cancelled_at < 3.5


async def test_shutdown_without_connections_is_immediate(autojump_clock):
    async with running(SlowApp(), Config(graceful_timeout=30)) as h:
        h.shutdown()
        with trio.fail_after(60):
            await h.stopped.wait()
    assert h.stopped_at - h.cancelled_at < 0.1


async def test_http2_stream_in_flight_completes_and_client_gets_goaway(autojump_clock):
    app = SlowApp()
    async with running(app, Config(graceful_timeout=10)) as h:
        client = await H2Client.open(h.server.port)
        sid = await client.request("GET", "/slow")
        await app.entered.wait()
        h.shutdown()
        await client.wait(lambda: client.goaway is not None)
        assert client.goaway.error_code == ERR.NO_ERROR
        assert client.goaway.last_stream_id == sid
        # A stream opened after the GOAWAY is refused; the one in flight is not affected.
        late = sid + 2
        await client.raw_request(late, "/late")

        def refused() -> bool:
            return any(isinstance(f, RstStreamFrame) and f.stream_id == late
                       and f.error_code == ERR.REFUSED_STREAM
                       for f in parse_frames(client.received))

        await client.wait(refused)
        await assert_refused(h.server.port)
        await trio.sleep(1)
        app.release.set()
        await client.wait_done(sid)
        assert client.streams[sid].status == 200
        assert bytes(client.streams[sid].data) == b"done /slow"
        await client.drain_until_closed()
        with trio.fail_after(1):
            await h.stopped.wait()
    assert not app.cancelled


async def test_http2_shutdown_deadline_cancels_streams(autojump_clock):
    app = SlowApp()
    async with running(app, Config(graceful_timeout=2)) as h:
        client = await H2Client.open(h.server.port)
        await client.request("GET", "/slow")
        await app.entered.wait()
        h.shutdown()
        with trio.fail_after(60):
            await h.stopped.wait()
            await client.drain_until_closed()
    assert app.cancelled
    assert client.goaway is not None
    assert 2 <= h.stopped_at - h.cancelled_at < 2.5


async def test_idle_http2_connection_closes_at_once_on_shutdown(autojump_clock):
    app = SlowApp()
    async with running(app, Config(graceful_timeout=10)) as h:
        client = await H2Client.open(h.server.port)
        sid = await client.request("GET", "/fast")
        await client.wait_done(sid)
        h.shutdown()
        with trio.fail_after(60):
            await client.drain_until_closed()
            await h.stopped.wait()
    assert client.goaway is not None
    assert h.stopped_at - h.cancelled_at < 0.5


async def test_connection_mid_request_head_is_closed_on_shutdown(autojump_clock):
    # A client that sent half a request head has no request in flight yet: it does not hold
    # shutdown up for the whole graceful period.
    app = SlowApp()
    async with running(app, Config(graceful_timeout=10)) as h:
        stream = await connect(h.server.port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        await trio.testing.wait_all_tasks_blocked()
        h.shutdown()
        with trio.fail_after(60):
            await h.stopped.wait()
            await read_until_eof(stream)
    assert h.stopped_at - h.cancelled_at < 0.5
