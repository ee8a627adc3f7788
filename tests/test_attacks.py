"""Attacks over real sockets (127.0.0.1 only), each beside a well-behaved client that must keep
being served: request smuggling shapes, size limits, slow clients, peers that never read,
floods, rapid and provoked resets, garbage at every protocol state, and internal faults.
Timeouts run on trio's MockClock (autojump), so nothing here really waits; every loop is
bounded in count and in (mock) time."""

from __future__ import annotations

import logging
import random
import socket
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import h2.errors
import h2.settings
import h11
import pytest
import trio
import trio.lowlevel
import trio.testing
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

from trio_http import Config, ConfigError, RunningServer
from trio_http._cli import build_parser, config_from_args

from .apps.peers import (
    H1Client,
    H2Client,
    StreamState,
    connect,
    goaway_of,
    parse_frames,
    raw_exchange,
    read_until_eof,
)

ERR = h2.errors.ErrorCodes
SC = h2.settings.SettingCodes


class Recorder:
    """Answers ``METHOD path`` after reading the whole body; remembers every path it saw, so a
    test can tell that a smuggled request never reached the app. ``/hold`` waits for
    ``release``; ``/big`` streams ``big_chunks`` chunks of 64 KiB and records how it ended."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.release = trio.Event()
        self.active = 0
        self.max_active = 0
        self.send_errors: list[BaseException] = []
        self.send_failed = trio.Event()
        self.messages: list[str] = []
        self.big_chunks = 2000

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.paths.append(scope["path"])
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if scope["path"] == "/big":
                await self._big(send)
                return
            if scope["path"] == "/noread":
                await self.release.wait()
            body = bytearray()
            while True:
                msg = await receive()
                self.messages.append(msg["type"])
                if msg["type"] == "http.disconnect":
                    return
                body += msg.get("body", b"")
                if not msg.get("more_body"):
                    break
            if scope["path"] == "/hold":
                await self.release.wait()
            reply = f"{scope['method']} {scope['path']} {len(body)}".encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": reply})
        finally:
            self.active -= 1

    async def _big(self, send: Any) -> None:
        chunk = b"x" * 65536
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(self.big_chunks):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError as exc:
            self.send_errors.append(exc)
            self.send_failed.set()


@contextmanager
def memory_growth_below(limit: int) -> Iterator[None]:
    """Fail unless Python allocations (server and client, one process) grow by less than
    ``limit`` bytes at their peak inside the block."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - base < limit, f"memory grew by {peak - base} bytes"


class Good:
    """A well-behaved keep-alive HTTP/1.1 client and an HTTP/2 client, opened before an attack
    and checked after it."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.h1: H1Client | None = None
        self.h2: H2Client | None = None
        self.n = 0

    async def open(self) -> Good:
        self.h1 = await H1Client.open(self.server.port)
        self.h2 = await H2Client.open(self.server.port)
        await self.check()
        return self

    async def check(self) -> None:
        assert self.h1 is not None and self.h2 is not None
        self.n += 1
        with trio.fail_after(30):
            r = await self.h1.request("POST", f"/good{self.n}", body=b"abc")
            assert (r.status, r.body) == (200, f"POST /good{self.n} 3".encode())
            sid = await self.h2.request("POST", f"/good{self.n}", body=b"abcd")
            await self.h2.wait_done(sid)
        st = self.h2.streams[sid]
        assert (st.status, bytes(st.data)) == (200, f"POST /good{self.n} 4".encode())

    async def aclose(self) -> None:
        for c in (self.h1, self.h2):
            if c is not None:
                await c.aclose()


async def start(start_server: Any, app: Any = None, **config: Any) -> tuple[RunningServer, Good]:
    cfg = Config(lifespan="off", **config)
    server = await start_server(app or Recorder(), config=cfg)
    return server, await Good(server).open()


async def until(predicate: Any) -> None:
    """Let the server run until ``predicate()`` holds (no sleeping: it waits for every task to
    block, then yields once more for the kernel's part)."""
    with trio.fail_after(30):
        for _ in range(100_000):
            if predicate():
                return
            await trio.testing.wait_all_tasks_blocked()
            await trio.lowlevel.checkpoint()
    raise AssertionError("condition never held")


async def settle(server: RunningServer, open_connections: int) -> None:
    """Wait until the server holds exactly ``open_connections`` connections (the attacker's is
    gone)."""
    await until(lambda: server.statistics()["connections_open"] == open_connections)


def status_of(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1.1 "), raw[:100]
    return int(raw[9:12])


# --- HTTP/1.1 request smuggling (RFC 9112 §6, RFC 9110 §5.5) -------------------------------

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"

SMUGGLING = [
    ("te-and-cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    ("two-te", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400, 501}),
    ("te-list", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     b"0\r\n\r\n", {501}),
    ("te-identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n"
     b"Content-Length: 3\r\n\r\nabc", {400, 501}),
    ("te-vtab", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n"
     b"0\r\n\r\n", {400, 501}),
    ("te-obs-fold", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
     b"0\r\n\r\n", {400}),
    ("te-space-before-colon", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n"
     b"\r\n0\r\n\r\n", {400}),
    ("te-http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    ("cl-list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", {400}),
    ("cl-twice-same", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
     b"Content-Length: 3\r\n\r\nabc", {400}),
    ("cl-conflict", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
     b"Content-Length: 30\r\n\r\nabc", {400}),
    ("cl-plus", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", {400}),
    ("cl-hex", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc", {400}),
    ("cl-huge", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n"
     b"\r\n", {400}),
    ("bare-lf", b"GET / HTTP/1.1\nHost: a\n\n", {400}),
    ("bare-lf-in-head", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", {400}),
    ("bare-cr", b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", {400}),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\tz\r\n\r\n", {400}),
    ("fold-at-start", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", {400}),
    ("nul-in-value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", {400}),
    ("soh-in-value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", {400}),
    ("ff-in-value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0cb\r\n\r\n", {400}),
    ("fs-in-value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x1cb\r\n\r\n", {400}),
    ("us-in-value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x1fb\r\n\r\n", {400}),
    ("del-in-value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", {400}),
    ("ctl-in-cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\x1f\r\n\r\nabc", {400}),
    ("space-in-name", b"GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", {400}),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", {400}),
    ("bad-method", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("missing-host", b"GET / HTTP/1.1\r\n\r\n", {400}),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("bad-host", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", {400}),
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", {400}),
    ("asterisk-not-options", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("authority-form", b"GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("absolute-ftp", b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("absolute-host-mismatch", b"GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("absolute-userinfo", b"GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("relative-target", b"GET x/y HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("connect", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", {405}),
    ("http2-version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", {400, 505}),
    ("chunk-size-hex-prefix", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n0x3\r\nabc\r\n0\r\n\r\n", {400}),
    ("chunk-size-overflow", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     b"\r\nfffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n", {400}),
    ("chunk-bare-lf", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n3\nabc\r\n0\r\n\r\n", {400}),
    ("chunk-missing-crlf", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n3\r\nabcXX0\r\n\r\n", {400}),
]


@pytest.mark.usefixtures("h1_parser")
@pytest.mark.parametrize(("shape", "request_bytes", "statuses"), SMUGGLING,
                         ids=[s[0] for s in SMUGGLING])
async def test_smuggling_shape_is_refused_and_closes(start_server, shape, request_bytes,
                                                     statuses):
    app = Recorder()
    server, good = await start(start_server, app)
    raw = await raw_exchange(server.port, request_bytes + SMUGGLED)
    assert status_of(raw) in statuses, (shape, raw[:200])
    # One response, which says it closes; nothing after it was taken as a request.
    assert raw.count(b"HTTP/1.1 ") == 1
    assert b"connection: close" in raw.lower()
    assert "/smuggled" not in app.paths
    await good.check()
    await settle(server, 2)
    await good.aclose()


ACCEPTED = [
    ("absolute-form", b"GET http://a/x?q HTTP/1.1\r\nHost: a\r\n\r\n", "/x"),
    ("absolute-form-upper-scheme", b"GET HTTP://A:80/x HTTP/1.1\r\nHost: a:80\r\n\r\n", "/x"),
    ("options-asterisk", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "*"),
    ("obs-text-value", b"GET /o HTTP/1.1\r\nHost: a\r\nX: caf\xe9 \x85\r\n\r\n", "/o"),
    ("htab-in-value", b"GET /t HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n", "/t"),
    ("ipv6-host", b"GET /6 HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n", "/6"),
    ("http10-no-host", b"GET /ten HTTP/1.0\r\n\r\n", "/ten"),
    ("chunked", b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
     b"3;ext=1\r\nabc\r\n0\r\n\r\n", "/c"),
]


@pytest.mark.usefixtures("h1_parser")
@pytest.mark.parametrize(("shape", "request_bytes", "path"), ACCEPTED,
                         ids=[s[0] for s in ACCEPTED])
async def test_strictness_leaves_valid_requests_alone(start_server, shape, request_bytes, path):
    app = Recorder()
    server = await start_server(app, config=Config(lifespan="off"))
    raw = await raw_exchange(server.port, request_bytes.replace(b"\r\n\r\n", b"\r\n"
                                                                 b"Connection: close\r\n\r\n", 1))
    assert status_of(raw) == 200, (shape, raw[:200])
    assert app.paths == [path]


# --- limits ----------------------------------------------------------------------------------

@pytest.mark.usefixtures("h1_parser")
@pytest.mark.parametrize(("request_bytes", "status"), [
    pytest.param(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, id="line"),
    pytest.param(b"GET /" + b"a" * 5000, 414, id="line-unfinished"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 21 + b"\r\n", 431,
                 id="header-count"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 5000 + b"\r\n\r\n", 431,
                 id="header-size"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n" + b"x" * 101, 413,
                 id="declared-body"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n"
                 b"Expect: 100-continue\r\n\r\n", 413, id="declared-body-expect-100"),
])
async def test_http1_limits(start_server, request_bytes, status):
    app = Recorder()
    server, good = await start(
        start_server, app, max_request_line_size=100, max_request_header_count=20,
        max_request_header_size=4096, max_request_body_size=100,
    )
    raw = await raw_exchange(server.port, request_bytes)
    assert status_of(raw) == status
    assert raw.count(b"HTTP/1.1 ") == 1
    assert all(p.startswith("/good") for p in app.paths)  # never the refused request
    await good.check()
    await good.aclose()


@pytest.mark.usefixtures("h1_parser")
async def test_http1_streamed_body_over_limit_is_413(start_server):
    app = Recorder()
    server, good = await start(start_server, app, max_request_body_size=1000)
    stream = await connect(server.port)
    await stream.send_all(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        await stream.send_all(b"190\r\n" + b"x" * 400 + b"\r\n")
    with trio.fail_after(10):
        raw = await read_until_eof(stream)
    assert status_of(raw) == 413
    assert app.messages[-1] == "http.disconnect"
    await good.check()
    await good.aclose()


async def test_http2_limits_refuse_one_stream(start_server):
    app = Recorder()
    server, good = await start(
        start_server, app, max_request_line_size=100, max_request_header_count=20,
        max_request_body_size=1000,
    )
    client = await H2Client.open(server.port)
    many = [(b"x-h", b"v")] * 25
    s_count = await client.request("GET", "/many", headers=many)
    s_line = await client.request("GET", "/" + "a" * 200)
    s_cl = await client.request("POST", "/cl", headers=[(b"content-length", b"5000")],
                                end_stream=False)
    s_stream = await client.request("POST", "/stream", end_stream=False)
    await client.send_body(s_stream, b"y" * 1500, end_stream=False)
    s_ok = await client.request("POST", "/ok", body=b"z" * 1000)
    with trio.fail_after(10):
        await client.wait_done(s_count, s_line, s_cl, s_stream, s_ok)
    st = client.streams
    assert st[s_count].status == 431
    assert st[s_line].status == 414
    assert st[s_cl].status == 413
    assert st[s_stream].status == 413
    assert (st[s_ok].status, bytes(st[s_ok].data)) == (200, b"POST /ok 1000")
    assert client.goaway is None
    assert "/many" not in app.paths and "/cl" not in app.paths
    await good.check()
    await client.aclose()
    await good.aclose()


@pytest.mark.usefixtures("h1_parser")
async def test_max_requests_per_connection(start_server):
    server, good = await start(start_server, max_requests_per_connection=3)
    client = await H1Client.open(server.port)
    for i in range(3):
        r = await client.request("GET", f"/r{i}")
        assert r.status == 200
    assert r.header(b"connection") == b"close"
    with trio.fail_after(10):
        assert await read_until_eof(client.stream) == b""
    h2c = await H2Client.open(server.port)
    sids = [await h2c.request("GET", f"/s{i}") for i in range(3)]
    with trio.fail_after(10):
        await h2c.wait_done(*sids)
        await h2c.wait(lambda: h2c.goaway is not None)
    assert h2c.goaway.last_stream_id == sids[-1]
    assert all(h2c.streams[s].status == 200 for s in sids)
    with trio.fail_after(10):
        await h2c.drain_until_closed()
    await good.aclose()


async def test_max_connections_makes_accept_wait_and_drops_nothing(start_server):
    app = Recorder()
    server = await start_server(app, config=Config(lifespan="off", max_connections=2))
    held = [await H1Client.open(server.port) for _ in range(2)]
    for c in held:
        assert (await c.request("GET", "/held")).status == 200
    # Five more connect (the kernel backlog holds them) and send a request each.
    waiting = []
    for i in range(5):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(f"GET /w{i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        sock.setblocking(False)
        waiting.append(sock)
    await trio.testing.wait_all_tasks_blocked()
    assert server.statistics()["connections_open"] == 2
    for sock in waiting:
        with pytest.raises(BlockingIOError):
            sock.recv(100)
    # Each connection let go admits one waiting connection; all are answered.
    for c in held:
        await c.aclose()
    replies = []
    with trio.fail_after(20):
        for sock in waiting:
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
            replies.append(await read_until_eof(stream))
            assert server.statistics()["connections_open"] <= 2
            await stream.aclose()
    assert all(status_of(r) == 200 for r in replies)
    assert sorted(p for p in app.paths if p.startswith("/w")) == [f"/w{i}" for i in range(5)]


# --- slow clients (MockClock) ----------------------------------------------------------------

@pytest.mark.usefixtures("h1_parser")
async def test_slowloris_head_gets_408_at_the_head_deadline(start_server, autojump_clock):
    server, good = await start(start_server, request_head_timeout=10, keep_alive_timeout=600)
    stream = await connect(server.port)
    head = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Slow: y\r\n" * 50
    started = trio.current_time()
    result: list[bytes] = []

    async def drip(cancel: trio.CancelScope) -> None:
        # One byte every 2 s: each arrival would reset a per-read timer, not the head deadline.
        with cancel:
            for b in head:
                try:
                    await stream.send_all(bytes([b]))
                except trio.BrokenResourceError:
                    return
                await trio.sleep(2)

    async with trio.open_nursery() as nursery:
        cancel = trio.CancelScope()
        nursery.start_soon(drip, cancel)
        result.append(await read_until_eof(stream))
        cancel.cancel()
    assert status_of(result[0]) == 408
    assert 10 <= trio.current_time() - started < 12
    await good.check()
    await good.aclose()


@pytest.mark.usefixtures("h1_parser")
async def test_slow_body_gets_408_and_app_sees_disconnect(start_server, autojump_clock):
    app = Recorder()
    server, good = await start(start_server, app, body_read_timeout=7, keep_alive_timeout=600)
    stream = await connect(server.port)
    await stream.send_all(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
    t0 = trio.current_time()
    with trio.fail_after(60):
        raw = await read_until_eof(stream)
    assert status_of(raw) == 408
    assert 7 <= trio.current_time() - t0 < 8
    assert app.messages[-1] == "http.disconnect"
    await good.check()
    await good.aclose()


async def test_http2_slow_body_gets_408_and_stream_reset(start_server, autojump_clock):
    app = Recorder()
    server, good = await start(start_server, app, body_read_timeout=7, keep_alive_timeout=600)
    client = await H2Client.open(server.port)
    sid = await client.request("POST", "/slow", end_stream=False)
    await client.send_body(sid, b"abc", end_stream=False)
    t0 = trio.current_time()
    with trio.fail_after(60):
        await client.wait_done(sid)
    assert client.streams[sid].status == 408
    assert 7 <= trio.current_time() - t0 < 8
    assert app.messages[-1] == "http.disconnect"
    # The connection carries on.
    sid2 = await client.request("GET", "/after")
    with trio.fail_after(10):
        await client.wait_done(sid2)
    assert client.streams[sid2].status == 200
    await good.check()
    await good.aclose()


async def test_http2_slow_header_block_gets_goaway(start_server, autojump_clock):
    server, good = await start(start_server, request_head_timeout=3, keep_alive_timeout=600)
    client = await h2_open(server)
    block = client.conn.encoder.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                        (b":authority", b"a"), (b":path", b"/x")])
    first = HeadersFrame(1)
    first.data = block[:5]
    t0 = trio.current_time()
    # No END_HEADERS, and the rest never comes.
    goaway, _ = await send_then_read(client, first.serialize())
    assert goaway is not None and goaway.error_code == ERR.ENHANCE_YOUR_CALM
    assert 3 <= trio.current_time() - t0 < 4
    await good.check()
    await good.aclose()


async def test_http2_header_block_split_across_reads_is_served(start_server):
    # The first read (taken while choosing the protocol) ends inside a header block: its
    # deadline must run from the server's clock, not from zero.
    server, good = await start(start_server)
    stream = await connect(server.port)
    client = H2Client(stream)
    client.conn.initiate_connection()
    # A field larger than a frame: h2 sends HEADERS and CONTINUATION.
    sid = client.conn.get_next_available_stream_id()
    client.conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"),
                                   (b":authority", b"a"), (b":path", b"/split"),
                                   (b"x-big", b"v" * 20000)], end_stream=True)
    client.streams[sid] = StreamState()
    data = client.conn.data_to_send()
    cut = len(data) - 5000  # inside the CONTINUATION frame
    await stream.send_all(data[:cut])
    await trio.testing.wait_all_tasks_blocked()
    await stream.send_all(data[cut:])
    with trio.fail_after(10):
        await client.wait_done(sid)
    assert client.streams[sid].status == 200
    assert client.goaway is None
    await client.aclose()
    await good.aclose()


async def test_http2_pings_do_not_keep_an_idle_connection_open(start_server, autojump_clock):
    server = await start_server(Recorder(), config=Config(lifespan="off", keep_alive_timeout=5))
    client = await H2Client.open(server.port)
    t0 = trio.current_time()
    with trio.fail_after(60):
        for i in range(20):
            if client.goaway is not None:
                break
            try:
                await client.ping(i.to_bytes(8, "big"))
            except EOFError:
                break
            await trio.sleep(1)
    assert client.goaway is not None and client.goaway.error_code == ERR.NO_ERROR
    assert 5 <= trio.current_time() - t0 < 7
    await (await Good(server).open()).aclose()


async def test_tls_handshake_timeout(start_server, autojump_clock, client_ssl_context):
    server = await start_server(Recorder(), tls=True,
                                config=Config(lifespan="off", tls_handshake_timeout=4))
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.send_all(b"\x16\x03\x01\x00")  # the start of a ClientHello, then nothing
    t0 = trio.current_time()
    with trio.fail_after(60):
        assert await read_until_eof(stream) == b""
    assert 4 <= trio.current_time() - t0 < 5
    assert server.statistics()["tls_handshake_failures"] == 1
    good = await H1Client.open(server.port, ssl_context=http11_tls_context(client_ssl_context))
    assert (await good.request("GET", "/tls")).status == 200
    await good.aclose()


# --- peers that never read -------------------------------------------------------------------

def http11_tls_context(ca_context: Any) -> Any:
    ca_context.set_alpn_protocols(["http/1.1"])
    return ca_context


def small_window_socket(port: int) -> trio.SocketStream:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return trio.SocketStream(trio.socket.from_stdlib_socket(sock))


@pytest.mark.usefixtures("h1_parser")
async def test_http1_peer_that_never_reads_is_dropped(start_server, autojump_clock):
    app = Recorder()
    server, good = await start(start_server, app, write_timeout=20, keep_alive_timeout=600)
    stream = small_window_socket(server.port)
    # Pipelined requests, never read: the server stops reading too (bounded buffers).
    await stream.send_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n" * 20)
    with memory_growth_below(16 << 20):
        with trio.fail_after(120):
            await app.send_failed.wait()
    assert isinstance(app.send_errors[0], OSError)  # ClientDisconnected from send()
    await settle(server, 2)
    await good.check()
    await stream.aclose()
    await good.aclose()


async def test_http2_peer_that_never_reads_is_dropped(start_server, autojump_clock):
    app = Recorder()
    server, good = await start(start_server, app, write_timeout=20, keep_alive_timeout=600)
    stream = small_window_socket(server.port)
    client = H2Client(stream, settings={SC.INITIAL_WINDOW_SIZE: 2**31 - 1})
    client.conn.initiate_connection()
    client.conn.increment_flow_control_window(2**31 - 1 - 65535)
    await client.flush()
    await client.request("GET", "/big")
    with memory_growth_below(16 << 20):
        with trio.fail_after(120):
            await app.send_failed.wait()
    await settle(server, 2)
    await good.check()
    await stream.aclose()
    await good.aclose()


async def test_http2_zero_window_stall_ends_at_write_timeout(start_server, autojump_clock):
    app = Recorder()
    server, good = await start(start_server, app, write_timeout=20, keep_alive_timeout=600)
    client = await H2Client.open(server.port)
    client.conn.increment_flow_control_window(2**30)  # the connection window stays open
    sid = await client.request("GET", "/big")
    client.hold_credit.add(sid)  # but this stream's window is never opened again
    t0 = trio.current_time()
    with trio.fail_after(120):
        await client.wait_done(sid)
    assert client.streams[sid].reset == ERR.CANCEL
    assert 20 <= trio.current_time() - t0 < 22
    assert app.send_errors
    sid2 = await client.request("GET", "/next")
    with trio.fail_after(10):
        await client.wait_done(sid2)
    assert client.streams[sid2].status == 200
    await good.check()
    await good.aclose()


# --- floods ----------------------------------------------------------------------------------

@pytest.mark.usefixtures("h1_parser")
async def test_http1_body_flood_to_an_app_that_does_not_read(start_server, autojump_clock):
    app = Recorder()
    server, good = await start(start_server, app, body_read_timeout=None, keep_alive_timeout=600)
    stream = await connect(server.port)
    await stream.send_all(b"POST /noread HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\n"
                          b"\r\n")
    chunk = b"z" * 65536
    sent = 0
    with memory_growth_below(16 << 20):
        with trio.move_on_after(30):
            for _ in range(2000):  # up to 128 MiB, if nothing pushed back
                await stream.send_all(chunk)
                sent += len(chunk)
    # The app reads nothing, so neither does the server: the flood stopped at what the kernel
    # buffers hold, and the connection waits on the app.
    assert sent < 64 << 20
    assert server.statistics()["connections_open"] == 3
    await good.check()
    await stream.aclose()
    app.release.set()
    await settle(server, 2)
    await good.aclose()


async def test_http2_header_flood_many_fields(start_server):
    server, good = await start(start_server)
    client = await H2Client.open(server.port)
    sids = [await client.request("GET", f"/f{i}", headers=[(b"x-a", b"b")] * 150)
            for i in range(20)]
    with trio.fail_after(10):
        await client.wait_done(*sids)
    assert all(client.streams[s].status == 431 for s in sids)
    await good.check()
    await client.aclose()
    await good.aclose()


async def h2_open(server: RunningServer) -> H2Client:
    """An HTTP/2 client past the SETTINGS exchange (a frame of ours could otherwise land in
    the middle of a header block the test is building)."""
    client = await H2Client.open(server.port)
    with trio.fail_after(10):
        await client.wait(lambda: client.remote_settings_seen)
    return client


async def send_then_read(client: H2Client, payload: bytes, *, chunk: int = 1 << 16,
                         ) -> tuple[GoAwayFrame | None, int]:
    """Send ``payload`` raw in writes of ``chunk`` bytes (the server may close first), then read
    raw until it closes. Returns its GOAWAY and how many bytes it sent meanwhile. The client's
    h2 state machine is left out: it knows nothing of the streams sent raw."""
    with trio.fail_after(30):
        try:
            for i in range(0, len(payload), chunk):
                await client.send_raw(payload[i : i + chunk])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        raw = await read_until_eof(client.stream, limit=1 << 26)
    return goaway_of(parse_frames(raw)), len(raw)


async def h2_attack(server: RunningServer, payload: bytes, *, chunk: int = 1 << 16,
                    ) -> tuple[GoAwayFrame | None, int]:
    return await send_then_read(await h2_open(server), payload, chunk=chunk)


def frames(frame: Any, n: int) -> bytes:
    return frame.serialize() * n


def headers_frame(client_encoder: Any, sid: int, *, end_headers: bool = True,
                  end_stream: bool = True) -> HeadersFrame:
    f = HeadersFrame(sid)
    f.data = client_encoder.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                    (b":authority", b"a"), (b":path", b"/hold")])
    if end_headers:
        f.flags.add("END_HEADERS")
    if end_stream:
        f.flags.add("END_STREAM")
    return f


FLOODS = {
    "ping": lambda: frames(PingFrame(0), 3000),
    "settings": lambda: frames(SettingsFrame(0), 3000),
    "priority": lambda: frames(PriorityFrame(1), 3000),
    "unknown-frames": lambda: b"\x00\x00\x00\xfa\x00\x00\x00\x00\x00" * 3000,
}


@pytest.mark.parametrize("kind", FLOODS)
async def test_http2_control_frame_flood_gets_enhance_your_calm(start_server, kind):
    server, good = await start(start_server)
    with memory_growth_below(8 << 20):
        goaway, answered = await h2_attack(server, FLOODS[kind](), chunk=4096)
    assert goaway is not None and goaway.error_code == ERR.ENHANCE_YOUR_CALM
    # Far fewer answers than frames sent: the flood is refused before h2 answers it.
    assert answered < 1000 * 17 + 4096
    await settle(server, 2)
    await good.check()
    await good.aclose()


async def test_http2_polite_pings_are_fine(start_server):
    server, good = await start(start_server)
    client = await H2Client.open(server.port)
    with trio.fail_after(10):
        for i in range(100):
            await client.ping(i.to_bytes(8, "big"))
    assert client.goaway is None
    await client.aclose()
    await good.aclose()


async def test_http2_empty_data_flood(start_server):
    app = Recorder()
    server, good = await start(start_server, app)
    client = await h2_open(server)
    sid = await client.request("POST", "/hold", end_stream=False)
    empty = DataFrame(sid)
    empty.data = b""
    padded = DataFrame(sid)
    padded.data = b""
    padded.flags.add("PADDED")
    padded.pad_length = 3
    goaway, _ = await send_then_read(client, frames(empty, 600) + frames(padded, 600))
    assert goaway is not None and goaway.error_code == ERR.ENHANCE_YOUR_CALM
    await settle(server, 2)
    assert server.statistics()["streams_open"] == 0
    await good.check()
    await good.aclose()


@pytest.mark.parametrize("frame_size", [0, 16384])
async def test_http2_continuation_flood(start_server, frame_size):
    server, good = await start(start_server)
    client = await h2_open(server)
    first = headers_frame(client.conn.encoder, 1, end_headers=False)
    cont = ContinuationFrame(1)
    cont.data = b"\x00" * frame_size
    with memory_growth_below(8 << 20):
        goaway, _ = await send_then_read(
            client, first.serialize() + frames(cont, 200 if frame_size else 2000)
        )
    assert goaway is not None
    # Refused by our header-block bound or flood budget (ENHANCE_YOUR_CALM), or by h2's cap of
    # 64 CONTINUATION frames when the frames trickle in (PROTOCOL_ERROR).
    assert goaway.error_code in (ERR.ENHANCE_YOUR_CALM, ERR.PROTOCOL_ERROR)
    await settle(server, 2)
    await good.check()
    await good.aclose()


async def test_http2_rapid_reset(start_server):
    app = Recorder()
    server, good = await start(start_server, app, h2_max_concurrent_streams=50,
                               h2_reset_budget=100)
    client = await h2_open(server)
    payload = bytearray()
    for i in range(1000):
        sid = 2 * i + 1
        payload += headers_frame(client.conn.encoder, sid).serialize()
        rst = RstStreamFrame(sid)
        rst.error_code = ERR.CANCEL
        payload += rst.serialize()
    goaway, _ = await send_then_read(client, bytes(payload), chunk=4096)
    assert goaway is not None and goaway.error_code == ERR.ENHANCE_YOUR_CALM
    # Reset streams kept counting until their app task ended: never more than the limit ran.
    assert app.max_active <= 50 + 2
    await settle(server, 2)
    assert app.active == 0
    await good.check()
    await good.aclose()


async def test_http2_made_you_reset(start_server):
    """MadeYouReset (CVE-2025-8671): frames that make the *server* reset streams (DATA after
    END_STREAM), so that the stream no longer counts while the app goes on working."""
    app = Recorder()
    server, good = await start(start_server, app, h2_max_concurrent_streams=50,
                               h2_reset_budget=100)
    client = await h2_open(server)
    payload = bytearray()
    for i in range(1000):
        sid = 2 * i + 1
        payload += headers_frame(client.conn.encoder, sid).serialize()
        data = DataFrame(sid)
        data.data = b"x"
        payload += data.serialize()
    goaway, _ = await send_then_read(client, bytes(payload), chunk=4096)
    assert goaway is not None and goaway.error_code == ERR.ENHANCE_YOUR_CALM
    assert app.max_active <= 50 + 2
    await settle(server, 2)
    await good.check()
    await good.aclose()


async def test_http2_streams_past_the_limit_count_against_the_budget(start_server):
    app = Recorder()
    server, good = await start(start_server, app, h2_max_concurrent_streams=10,
                               h2_reset_budget=50)
    client = await h2_open(server)
    payload = b"".join(headers_frame(client.conn.encoder, 2 * i + 1).serialize()
                       for i in range(500))
    goaway, _ = await send_then_read(client, payload)
    assert goaway is not None and goaway.error_code == ERR.ENHANCE_YOUR_CALM
    assert app.max_active <= 10 + 2
    app.release.set()
    await settle(server, 2)
    await good.check()
    await good.aclose()


# --- garbage at every protocol state ---------------------------------------------------------

def garbage(seed: int, n: int = 3000) -> bytes:
    return random.Random(seed).randbytes(n)


H1_STATES = {  # the bytes before the garbage, and how many requests they complete
    "before-request": (b"", 0),
    "mid-request-line": (b"GET /ab", 0),
    "mid-headers": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: ", 0),
    "mid-chunked-body": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3\r\nab", 0),
    "after-request": (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1),
    "after-pipelined": (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", 2),
}


@pytest.mark.usefixtures("h1_parser")
@pytest.mark.parametrize("state", H1_STATES)
@pytest.mark.parametrize("seed", [1, 2])
async def test_http1_garbage_at_every_state(start_server, state, seed):
    app = Recorder()
    server, good = await start(start_server, app)
    stream = await connect(server.port)
    prefix, complete = H1_STATES[state]
    junk = garbage(seed)
    with trio.fail_after(10):
        try:
            await stream.send_all(prefix + junk)
        except trio.BrokenResourceError:
            pass
        raw = await read_until_eof(stream)
    # Whatever was complete before the garbage is answered; then one error (or just a close).
    statuses = [int(raw[i + 9 : i + 12]) for i in range(len(raw))
                if raw.startswith(b"HTTP/1.1 ", i)]
    assert statuses[:complete] == [200] * complete
    assert all(s in (400, 408, 413, 414, 431, 501, 505) for s in statuses[complete:])
    assert len(statuses) <= complete + 1
    await settle(server, 2)
    await good.check()
    await good.aclose()


H2_STATES = {
    "instead-of-preface": lambda c: b"",
    "after-preface": lambda c: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "after-settings": lambda c: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize(),
    "inside-header-block": lambda c: (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                      + SettingsFrame(0).serialize()
                                      + headers_frame(c, 1, end_headers=False).serialize()),
    "mid-stream": lambda c: (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()
                             + headers_frame(c, 1, end_stream=False).serialize()),
}


@pytest.mark.parametrize("state", H2_STATES)
@pytest.mark.parametrize("seed", [1, 2])
async def test_http2_garbage_at_every_state(start_server, state, seed):
    server, good = await start(start_server)
    stream = await connect(server.port)
    client = H2Client(stream)
    with trio.fail_after(10):
        try:
            await stream.send_all(H2_STATES[state](client.conn.encoder) + garbage(seed))
        except trio.BrokenResourceError:
            pass
        raw = await read_until_eof(stream)
    if state != "instead-of-preface":
        # The connection ends with GOAWAY (PROTOCOL_ERROR, FRAME_SIZE_ERROR, ...), not silently.
        await client.process(raw)
        assert client.goaway is not None and client.goaway.error_code != ERR.NO_ERROR
    await settle(server, 2)
    await good.check()
    await good.aclose()


async def test_tls_garbage_instead_of_client_hello(start_server, client_ssl_context):
    server = await start_server(Recorder(), tls=True, config=Config(lifespan="off"))
    for seed in range(3):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        with trio.fail_after(10):
            try:
                await stream.send_all(garbage(seed))
            except trio.BrokenResourceError:
                pass
            await read_until_eof(stream)
    await until(lambda: server.statistics()["tls_handshake_failures"] >= 3)
    good = await H1Client.open(server.port, ssl_context=http11_tls_context(client_ssl_context))
    assert (await good.request("GET", "/tls")).status == 200
    await good.aclose()


# --- fault isolation -------------------------------------------------------------------------

class Crash(BaseException):
    """Not an Exception: escapes the app error handling and reaches the connection task."""


@pytest.mark.parametrize("protocol", ["h1", "h2"])
async def test_internal_failure_ends_only_its_connection(start_server, caplog, protocol):
    inner = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/crash":
            raise Crash("boom")
        await inner(scope, receive, send)

    server, good = await start(start_server, app)
    caplog.set_level(logging.ERROR, logger="trio_http")
    if protocol == "h1":
        client = await H1Client.open(server.port)
        await client.send(h11.Request(method="GET", target="/crash", headers=[("host", "a")]),
                          h11.EndOfMessage())
        with trio.fail_after(10):
            assert await read_until_eof(client.stream) == b""
    else:
        h2c = await H2Client.open(server.port)
        await h2c.request("GET", "/crash")
        with trio.fail_after(10):
            await h2c.drain_until_closed()
    await settle(server, 2)
    assert server.statistics()["internal_errors"] == 1
    record = next(r for r in caplog.records if "Internal error" in r.getMessage())
    assert "127.0.0.1" in record.getMessage()
    await good.check()
    await good.aclose()


async def test_unread_socket_bytes_do_not_leak_between_connections(start_server):
    """A request cut off mid-body on one connection never bleeds into another."""
    app = Recorder()
    server, good = await start(start_server, app)
    stream = await connect(server.port)
    await stream.send_all(b"POST /cut HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\n\r\n"
                          b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    await stream.aclose()
    await settle(server, 2)
    await good.check()
    assert "/smuggled" not in app.paths
    await good.aclose()


# --- configuration -------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("max_request_line_size", 0), ("max_request_header_count", 0), ("max_request_body_size", 0),
    ("max_requests_per_connection", -1), ("request_head_timeout", 0), ("body_read_timeout", -1),
    ("h2_reset_budget", 0), ("h2_control_frame_budget", 0), ("h3_reset_budget", 0),
])
def test_limits_are_validated(field, value):
    with pytest.raises(ConfigError):
        Config(**{field: value})


def test_limit_flags_reach_the_config():
    args = build_parser().parse_args([
        "--max-request-body-size", "1000", "--request-head-timeout", "none",
        "--body-read-timeout", "7.5", "--write-timeout", "off", "--max-request-line-size", "200",
        "--max-request-header-count", "20", "--max-requests-per-connection", "3",
        "--h2-reset-budget", "10", "--h2-control-frame-budget", "50", "--h3-reset-budget", "12",
    ])
    cfg = config_from_args(args)
    assert (cfg.max_request_body_size, cfg.request_head_timeout, cfg.body_read_timeout,
            cfg.write_timeout, cfg.max_request_line_size, cfg.max_request_header_count,
            cfg.max_requests_per_connection, cfg.h2_reset_budget,
            cfg.h2_control_frame_budget, cfg.h3_reset_budget,
            ) == (1000, None, 7.5, None, 200, 20, 3, 10, 50, 12)
    defaults = config_from_args(build_parser().parse_args([]))
    assert defaults.max_request_body_size is None and defaults.request_head_timeout == 10
