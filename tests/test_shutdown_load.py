"""Graceful shutdown under load loses nothing: with HTTP/1.1 and HTTP/2 requests in flight on
many connections, slow handlers, and more requests arriving while the server stops, every
response a client receives is complete, every request the app took is answered, and every
other request is clearly refused (connection refused or closed before any response on
HTTP/1.1; REFUSED_STREAM or a stream above the GOAWAY's last stream id on HTTP/2)."""

from __future__ import annotations

from typing import Any

import h2.errors
import h11
import trio
import trio.testing
from hyperframe.frame import RstStreamFrame

from trio_http import Config

from .apps.peers import H1Client, H2Client, connect, parse_frames, read_until_eof
from .test_shutdown import running

ERR = h2.errors.ErrorCodes
BODY = 20_000  # bytes per response: big enough to leave in several writes


class LoadApp:
    """``/slow/...`` waits for ``release``; every response carries ``BODY`` bytes naming its
    path, in four parts."""

    def __init__(self, expected: int) -> None:
        self.release = trio.Event()
        self.all_in = trio.Event()
        self.expected = expected
        self.entered: list[str] = []
        self.completed: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        self.entered.append(path)
        if path.startswith("/slow"):
            if len(self.entered) >= self.expected:
                self.all_in.set()
            await self.release.wait()
        body = expected_body(path)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        for i in range(4):
            part = body[i * len(body) // 4 : (i + 1) * len(body) // 4]
            await send({"type": "http.response.body", "body": part, "more_body": i < 3})
        self.completed.append(path)


def expected_body(path: str) -> bytes:
    return (path.encode() * (BODY // len(path) + 1))[:BODY]


def h1_get(path: str) -> list[Any]:
    return [h11.Request(method="GET", target=path, headers=[("host", "a")]), h11.EndOfMessage()]


async def test_shutdown_under_load_loses_nothing(autojump_clock):
    n_h1, n_idle, n_h2, streams_per_h2 = 12, 6, 3, 10
    app = LoadApp(expected=n_h1 + n_h2 * streams_per_h2)
    async with running(app, Config(graceful_timeout=20, lifespan="off")) as h:
        port = h.server.port
        # Requests in flight: HTTP/1.1, one per connection, and HTTP/2, many per connection.
        busy = [await H1Client.open(port) for _ in range(n_h1)]
        for i, c in enumerate(busy):
            await c.send(*h1_get(f"/slow/h1/{i}"))
        h2s = [await H2Client.open(port) for _ in range(n_h2)]
        sids: list[list[int]] = [
            [await c.request("GET", f"/slow/h2/{j}/{k}") for k in range(streams_per_h2)]
            for j, c in enumerate(h2s)
        ]
        # Idle keep-alive connections, used once before the shutdown.
        idle = [await H1Client.open(port) for _ in range(n_idle)]
        for i, c in enumerate(idle):
            r = await c.request("GET", f"/fast/idle/{i}")
            assert r.body == expected_body(f"/fast/idle/{i}")
        with trio.fail_after(30):
            await app.all_in.wait()

        h.shutdown()

        # More requests keep coming while the server drains: on the idle HTTP/1.1
        # connections (half of them racing the start of the shutdown, half surely after it),
        # as new HTTP/2 streams, and as new connections.
        for i, c in enumerate(idle):
            if i == n_idle // 2:
                await trio.testing.wait_all_tasks_blocked()
            try:
                await c.send(*h1_get(f"/late/idle/{i}"))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        late_sids: list[list[int]] = []
        for j, c in enumerate(h2s):
            with trio.fail_after(30):
                await c.wait(lambda c=c: c.goaway is not None)
            base = max(sids[j]) + 2
            late = [base + 2 * k for k in range(3)]
            for sid in late:
                try:
                    await c.raw_request(sid, f"/late/h2/{j}/{sid}")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            late_sids.append(late)
        new_conns = 0
        for _ in range(5):
            try:
                stream = await connect(port)
            except OSError:
                new_conns += 1  # refused: clearly not processed
                continue
            try:
                await stream.send_all(b"GET /late/new HTTP/1.1\r\nHost: a\r\n\r\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            with trio.fail_after(30):
                assert await read_until_eof(stream) == b""  # closed without a response
            new_conns += 1
        assert new_conns == 5

        await trio.sleep(1)
        app.release.set()

        with trio.fail_after(60):
            # Every HTTP/1.1 request in flight: a complete response that says it closes.
            for i, c in enumerate(busy):
                r = await c.read_response()
                assert r.status == 200
                assert r.body == expected_body(f"/slow/h1/{i}")
                assert r.header(b"connection") == b"close"
                assert await read_until_eof(c.stream) == b""
            # Every late HTTP/1.1 request on an idle connection: answered in full (it arrived
            # before the server began to stop) or closed with nothing answered.
            for i, c in enumerate(idle):
                raw = await read_until_eof(c.stream)
                if i >= n_idle // 2:
                    assert raw == b""
                elif raw:
                    c.conn.receive_data(raw)
                    c.conn.receive_data(b"")
                    r = await c.read_response()
                    assert r.body == expected_body(f"/late/idle/{i}")
            # Every HTTP/2 stream in flight: complete; every late one refused or above the
            # GOAWAY's last stream id, and never answered.
            for j, c in enumerate(h2s):
                await c.drain_until_closed()
                assert c.goaway is not None and c.goaway.error_code == ERR.NO_ERROR
                assert c.goaway.last_stream_id >= max(sids[j])
                for k, sid in enumerate(sids[j]):
                    st = c.streams[sid]
                    assert st.ended and st.reset is None
                    assert st.status == 200
                    assert bytes(st.data) == expected_body(f"/slow/h2/{j}/{k}")
                resets = {f.stream_id: f.error_code for f in parse_frames(bytes(c.received))
                          if isinstance(f, RstStreamFrame)}
                for sid in late_sids[j]:
                    assert sid > c.goaway.last_stream_id or resets.get(sid) == ERR.REFUSED_STREAM
                    assert sid not in c.streams or c.streams[sid].status is None
            await h.stopped.wait()
    # Nothing the app took was lost (each was answered in full above); nothing that arrived
    # after the shutdown began reached it.
    assert sorted(app.completed) == sorted(app.entered)
    late = [p for p in app.entered if p.startswith("/late")]
    assert all(p.startswith("/late/idle/") and int(p.rsplit("/", 1)[1]) < n_idle // 2
               for p in late)
    assert len(app.completed) == n_h1 + n_idle + n_h2 * streams_per_h2 + len(late)
