"""Strictness and robustness of the WebSocket layer, over HTTP/1.1 and HTTP/2 alike: each class
of RFC 6455 violation gets its close code, limits hold under floods, the reader applies
backpressure, keepalive PINGs detect a dead peer, graceful shutdown closes with 1001."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from wsproto.events import CloseConnection, Ping, Pong, TextMessage

from trio_http import ClientDisconnected, Config, serve_asgi

from .apps.ws_apps import Recorder, echo_app
from .apps.ws_peers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    WSPeer,
    frame,
    open_h1_websocket,
    open_h2_peer,
)

TRANSPORTS = ["h1", "h2"]


@asynccontextmanager
async def open_ws(transport: str, port: int, **kwargs: Any) -> AsyncIterator[WSPeer]:
    if transport == "h1":
        async with open_h1_websocket(port, **kwargs) as ws:
            assert ws.status == 101
            yield ws
    else:
        async with open_h2_peer(port) as peer:
            st, ws2 = await peer.websocket(**kwargs)
            assert ws2 is not None, st.status
            yield ws2


VIOLATIONS = {
    "unmasked-frame": (frame(OP_TEXT, b"hi", masked=False), 1002),
    "invalid-utf8": (frame(OP_TEXT, b"caf\xc3"), 1007),
    "invalid-utf8-across-fragments": (
        frame(OP_TEXT, b"\xe2\x82", fin=False) + frame(OP_CONT, b"\xff"), 1007),
    "rsv2-set": (frame(OP_TEXT, b"x", rsv=2), 1002),
    "rsv1-without-deflate": (frame(OP_BINARY, b"x", rsv=4), 1002),
    "close-code-1005": (frame(OP_CLOSE, struct.pack("!H", 1005)), 1002),
    "close-code-999": (frame(OP_CLOSE, struct.pack("!H", 999)), 1002),
    "close-code-1004": (frame(OP_CLOSE, struct.pack("!H", 1004)), 1002),
    "close-code-5000": (frame(OP_CLOSE, struct.pack("!H", 5000)), 1002),
    "close-one-byte": (frame(OP_CLOSE, b"\x03"), 1002),
    "close-reason-invalid-utf8": (frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
    "fragmented-ping": (frame(OP_PING, b"", fin=False), 1002),
    "ping-too-long": (frame(OP_PING, b"x" * 126), 1002),
    "stray-continuation": (frame(OP_CONT, b"x"), 1002),
    "text-inside-fragmented-message": (
        frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), 1002),
    "reserved-opcode": (frame(3, b"x"), 1002),
    "oversized-message": (frame(OP_BINARY, b"x" * 1025), 1009),
    "oversized-fragments": (
        b"".join(frame(OP_TEXT if i == 0 else OP_CONT, b"y" * 100, fin=i == 10)
                 for i in range(11)), 1009),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("violation", list(VIOLATIONS))
async def test_violation_closes_with_its_code(
    start_server: Any, transport: str, violation: str
) -> None:
    wire, code = VIOLATIONS[violation]
    recorder = Recorder(greeting=["welcome"])
    server = await start_server(recorder, config=Config(websocket_max_message_size=1024))
    async with open_ws(transport, server.port) as ws:
        assert await ws.receive_message() == "welcome"
        await ws.send_raw(wire)
        with trio.fail_after(10):
            got, _ = await ws.expect_close(reply=False)
            assert got == code
            # The server ends the transport: TCP FIN (HTTP/1.1) or END_STREAM (HTTP/2).
            await ws.read_until_eof()
            await recorder.done.wait()
    assert recorder.disconnect is not None and recorder.disconnect["code"] == code
    stats = server.statistics()
    assert stats["protocol_errors"] == 1 and stats["app_errors"] == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_failure_close_follows_what_the_app_already_sent(
    start_server: Any, transport: str
) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: the app is still sending when the error arrives
    recorder = Recorder(greeting=[big])
    server = await start_server(recorder)
    async with open_ws(transport, server.port) as ws:
        await ws.send_raw(frame(OP_TEXT, b"no mask", masked=False))
        with trio.fail_after(10):
            assert await ws.receive_message() == big
            assert await ws.expect_close() == (1002, "server received unexpected unmasked frame")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_compressed_bomb_is_stopped_at_the_limit(start_server: Any, transport: str) -> None:
    recorder = Recorder()
    server = await start_server(recorder, config=Config(websocket_max_message_size=1 << 20))
    async with open_ws(transport, server.port, deflate=True) as ws:
        try:
            await ws.send_bytes(b"\0" * (64 << 20))  # 64 MiB of zeros: about 64 kB compressed
        except (ConnectionResetError, trio.BrokenResourceError):
            pass  # the server stopped reading this stream before the end of the message
        with trio.fail_after(10):
            code, _ = await ws.expect_close(reply=False)
    assert code == 1009


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_close_handshake_code_1005_without_status(start_server: Any, transport: str) -> None:
    recorder = Recorder()
    server = await start_server(recorder)
    async with open_ws(transport, server.port) as ws:
        await ws.send_raw(frame(OP_CLOSE, b""))
        with trio.fail_after(10):
            # The echo of a status-less CLOSE carries no status either (RFC 6455 §7.1.5).
            assert (await ws.expect_close(reply=False))[0] == 1005
            await recorder.done.wait()
    assert recorder.disconnect == {"type": "websocket.disconnect", "code": 1005, "reason": ""}


# --- floods and limits ------------------------------------------------------------------
async def _normal_traffic(port: int) -> None:
    """Another client, on another connection, served normally meanwhile."""
    async with open_h1_websocket(port) as ws:
        for i in range(50):
            await ws.send_text(f"normal {i}")
            assert await ws.receive_message() == f"normal {i}"
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await stream.receive_some(1000)).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_flood_of_tiny_frames(start_server: Any, transport: str) -> None:
    server = await start_server(echo_app, config=Config(websocket_max_message_size=16384))
    n = 10_000
    fragments = b"".join(frame(OP_TEXT if i == 0 else OP_CONT, b"f", fin=i == n - 1)
                         for i in range(n))
    pings = frame(OP_PING, b"p") * 2000
    tiny = frame(OP_BINARY, b"m") * 2000
    async with open_ws(transport, server.port) as ws:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_normal_traffic, server.port)
                await ws.send_raw(fragments + pings + tiny)
                # PONGs (from the reader) and echoes (from the app) may interleave.
                seen: dict[Any, int] = {}
                while sum(seen.values()) < 1 + 2000 + 2000:
                    ev = await ws.next_event()
                    key = type(ev).__name__ if isinstance(ev, Pong) else ev.data  # type: ignore[union-attr]
                    assert getattr(ev, "message_finished", True)
                    seen[key] = seen.get(key, 0) + 1
                # One 10000-byte message, assembled from 10000 frames, comes back.
                assert seen == {"f" * n: 1, "Pong": 2000, b"m": 2000}
        # The limit holds for fragment floods too.
        over = b"".join(frame(OP_TEXT if i == 0 else OP_CONT, b"f", fin=False)
                        for i in range(17_000))
        await ws.send_raw(over)
        with trio.fail_after(10):
            assert (await ws.expect_close(reply=False))[0] == 1009


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reader_stops_when_the_app_is_behind(start_server: Any, transport: str) -> None:
    release = trio.Event()
    got: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            got.append(msg["bytes"])

    server = await start_server(app, config=Config(websocket_max_queue=4))
    count = 200
    sent = 0
    async with open_ws(transport, server.port) as ws:
        if transport == "h1":
            sock = ws.stream.socket  # type: ignore[attr-defined]
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)

        async def sender() -> None:
            nonlocal sent
            for i in range(count):
                await ws.send_bytes(i.to_bytes(4, "big") * 16384)
                sent += 1

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender)
                await trio.testing.wait_all_tasks_blocked(cushion=0.2)
                # 12.5 MiB could not all go: the server stopped reading.
                assert sent < count
                stalled_at = sent
                release.set()
            assert stalled_at < sent == count
            await ws.send(CloseConnection(code=1000))
            await ws.expect_close(reply=False)
    assert len(got) == count
    assert [g[:4] for g in got] == [i.to_bytes(4, "big") for i in range(count)]


# --- keepalive --------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_keepalive_ping_timeout_closes_with_1011(
    autojump_clock: Any, start_server: Any, transport: str
) -> None:
    recorder = Recorder()
    config = Config(websocket_ping_interval=10, websocket_ping_timeout=5)
    server = await start_server(recorder, config=config)
    async with open_ws(transport, server.port) as ws:
        # A live peer answers: PINGs keep coming, the socket stays open.
        for _ in range(3):
            start = trio.current_time()
            ev = await ws.next_event()
            assert isinstance(ev, Ping)
            assert 9.9 < trio.current_time() - start < 10.5
            await ws.send(ev.response())
        await ws.send_text("still here")
        assert await ws.receive_message() == "still here"
        # Then it stops answering.
        ev = await ws.next_event()
        assert isinstance(ev, Ping)
        start = trio.current_time()
        ev = await ws.next_event()
        assert isinstance(ev, CloseConnection) and ev.code == 1011
        assert 4.9 < trio.current_time() - start < 5.5
        await ws.read_until_eof()
    await recorder.done.wait()
    assert recorder.disconnect is not None and recorder.disconnect["code"] == 1011


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_pings_by_default(autojump_clock: Any, start_server: Any, transport: str) -> None:
    server = await start_server(echo_app)
    async with open_ws(transport, server.port) as ws:
        with trio.move_on_after(3600):
            ev = await ws.next_event()
            raise AssertionError(f"unexpected {ev!r}")
        await ws.send(TextMessage(data="after an hour"))
        assert await ws.receive_message() == "after an hour"


# --- graceful shutdown ------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("peer_replies", [True, False], ids=["replies", "silent"])
async def test_graceful_shutdown_closes_with_1001(
    autojump_clock: Any, nursery: trio.Nursery, transport: str, peer_replies: bool
) -> None:
    recorder = Recorder()
    scope = trio.CancelScope()
    stopped = trio.Event()

    async def run_server(task_status: trio.TaskStatus[Any]) -> None:
        with scope:
            await serve_asgi(recorder, binds=["127.0.0.1:0"],
                             config=Config(graceful_timeout=30), task_status=task_status)
        stopped.set()

    server = await nursery.start(run_server)
    async with open_ws(transport, server.port) as ws:
        await ws.send_text("before")
        assert await ws.receive_message() == "before"
        start = trio.current_time()
        scope.cancel()
        code, reason = await ws.expect_close(reply=peer_replies)
        assert (code, reason) == (1001, "server shutting down")
        await ws.read_until_eof()
        await stopped.wait()
        elapsed = trio.current_time() - start
        if peer_replies:
            assert elapsed < 1
        else:
            # A silent peer is dropped after the close timeout, within graceful_timeout.
            assert elapsed <= 30
    assert recorder.disconnect is not None and recorder.disconnect["code"] == 1001


async def test_upgrade_during_shutdown_is_refused(
    autojump_clock: Any, nursery: trio.Nursery
) -> None:
    scope = trio.CancelScope()
    gate = trio.Event()

    async def slow_http(scope_: Any, receive: Any, send: Any) -> None:
        if scope_["type"] == "http":
            await gate.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"done"})

    async def run_server(task_status: trio.TaskStatus[Any]) -> None:
        with scope:
            await serve_asgi(slow_http, binds=["127.0.0.1:0"], task_status=task_status)

    server = await nursery.start(partial(run_server))
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        # A pipelined upgrade behind a slow request that is still running at shutdown.
        await stream.send_all(
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
        gate.set()
        out = b""
        while chunk := await stream.receive_some(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 200") and b"101 Switching" not in out


async def test_write_stalled_past_write_timeout_drops_the_peer(
    autojump_clock: Any, start_server: Any
) -> None:
    outcome: dict[str, Any] = {}
    done = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        start = trio.current_time()
        try:
            while True:  # the peer never reads: the socket buffers fill, then send() stalls
                await send({"type": "websocket.send", "bytes": b"\0" * 262144})
        except BaseException as exc:
            outcome["error"] = exc
            outcome["elapsed"] = trio.current_time() - start
            raise
        finally:
            done.set()

    server = await start_server(app, config=Config(write_timeout=10))
    async with open_ws("h1", server.port) as ws:
        ws.stream.socket.setsockopt(  # type: ignore[attr-defined]
            socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        await done.wait()
    assert isinstance(outcome["error"], ClientDisconnected)
    # The write that stalled was dropped write_timeout seconds after it began.
    assert 10 <= outcome["elapsed"] < 11


# --- an app that is away from receive() -------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_app_that_only_sends_still_answers_pings_and_sees_close(
    autojump_clock: Any, start_server: Any, transport: str
) -> None:
    outcome: dict[str, Any] = {}
    done = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:  # never calls receive() again
                await send({"type": "websocket.send", "text": "tick"})
                await trio.sleep(0.25)
        except ClientDisconnected as exc:
            outcome["error"] = exc
            outcome["at"] = trio.current_time()
        finally:
            done.set()

    server = await start_server(app)
    async with open_ws(transport, server.port) as ws:
        assert await ws.receive_message() == "tick"
        await ws.send(Ping(payload=b"alive?"))
        start = trio.current_time()
        while not isinstance(ev := await ws.next_event(), Pong):
            assert getattr(ev, "data", None) == "tick", ev
        # Answered by the background reader within AWAY_DELAY (1 s) plus a tick.
        assert ev.payload == b"alive?" and trio.current_time() - start < 1.5
        await ws.send(CloseConnection(code=4000, reason="bye"))
        closed_at = trio.current_time()
        assert (await ws.expect_close(reply=False))[0] == 4000
    with trio.fail_after(5):
        await done.wait()
    assert isinstance(outcome["error"], ClientDisconnected)
    assert outcome["at"] - closed_at < 1.5


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_messages_read_while_the_app_was_away_come_in_order(
    autojump_clock: Any, start_server: Any, transport: str
) -> None:
    got: list[str] = []
    busy = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            got.append(msg["text"])
            if msg["text"] == "work":
                busy.set()
                await trio.sleep(5)  # away from receive(): the background reader takes over
            await send({"type": "websocket.send", "text": msg["text"]})

    server = await start_server(app, config=Config(websocket_max_queue=3))
    async with open_ws(transport, server.port) as ws:
        await ws.send_text("work")
        await busy.wait()
        for i in range(10):
            await ws.send_text(f"m{i}")
        expected = ["work", *(f"m{i}" for i in range(10))]
        for text in expected:
            assert await ws.receive_message() == text
        await ws.send(CloseConnection(code=1000))
        await ws.expect_close(reply=False)
    assert got == expected


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_app_timeouts_around_receive_lose_nothing(
    autojump_clock: Any, start_server: Any, transport: str
) -> None:
    timeouts = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal timeouts
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            msg = None
            with trio.move_on_after(0.3):  # cancels receive() while it reads the socket
                msg = await receive()
            if msg is None:
                timeouts += 1
                continue
            if msg["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": msg["text"]})

    server = await start_server(app)
    async with open_ws(transport, server.port) as ws:
        for i in range(20):
            await ws.send(Ping(payload=b"%d" % i))
            await trio.sleep(0.5)  # the app's receive() times out meanwhile
            await ws.send_text(f"message {i}")
            ev = await ws.next_event()
            assert isinstance(ev, Pong) and ev.payload == b"%d" % i
            assert await ws.receive_message() == f"message {i}"
        await ws.send(CloseConnection(code=1000))
        assert (await ws.expect_close(reply=False))[0] == 1000
    assert timeouts >= 20
