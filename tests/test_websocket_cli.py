"""A Starlette WebSocket endpoint (and the demo's echo) served by ``python -m trio_http`` in a
subprocess, exercised by real clients over HTTP/1.1 (the ``websockets`` package) and HTTP/2
(RFC 8441, the raw h2 peer)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from wsproto.events import CloseConnection

from .apps.ws_peers import open_h2_peer
from .conftest import TESTS_DIR

REPO = TESTS_DIR.parent
_SERVING = re.compile(rb"Serving on http://127\.0\.0\.1:(\d+)")


@asynccontextmanager
async def run_cli(*args: str) -> AsyncIterator[int]:
    """``python -m trio_http ARGS --bind 127.0.0.1:0``; yields the port, then stops the server
    with SIGINT and checks that it exits cleanly (status 0) within its graceful timeout."""
    argv = [sys.executable, "-m", "trio_http", *args, "--bind", "127.0.0.1:0",
            "--graceful-timeout", "5"]
    proc = await trio.lowlevel.open_process(argv, cwd=str(REPO), stderr=subprocess.PIPE)
    assert proc.stderr is not None
    log = bytearray()
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(30):
                while not (m := _SERVING.search(log)):
                    chunk = await proc.stderr.receive_some(65536)
                    assert chunk, f"the server exited: {log.decode(errors='replace')}"
                    log += chunk

            async def drain() -> None:
                while chunk := await proc.stderr.receive_some(65536):  # type: ignore[union-attr]
                    log.extend(chunk)

            nursery.start_soon(drain)
            yield int(m.group(1))
            proc.send_signal(signal.SIGINT)
            with trio.fail_after(20):
                status = await proc.wait()
            assert status == 0, log.decode(errors="replace")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert b"Traceback" not in log, log.decode(errors="replace")


async def in_thread(fn: Any) -> Any:
    with trio.fail_after(30):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


async def test_starlette_websocket_over_http1_and_http2() -> None:
    async with run_cli("tests.apps.ws_starlette:app") as port:

        def h1_client() -> list[Any]:
            out: list[Any] = []
            with connect(f"ws://127.0.0.1:{port}/ws?q=42", subprotocols=["echo"],
                         open_timeout=10, max_size=None) as ws:
                out.append(ws.subprotocol)
                out.append(json.loads(ws.recv(timeout=10)))
                ws.send("hello starlette")
                out.append(ws.recv(timeout=10))
                ws.send(b"\x00\x01" * 500_000)
                out.append(len(ws.recv(timeout=10)))
            with connect(f"ws://127.0.0.1:{port}/bye", open_timeout=10) as ws, \
                    pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=10)
            assert info.value.rcvd is not None
            out.append((info.value.rcvd.code, info.value.rcvd.reason))
            with pytest.raises(InvalidStatus) as refused:
                connect(f"ws://127.0.0.1:{port}/forbidden", open_timeout=10)
            out.append(refused.value.response.status_code)
            return out

        assert await in_thread(h1_client) == [
            "echo", {"http_version": "1.1", "path": "/ws", "query": "42"},
            "hello starlette", 1_000_000, (4400, "goodbye from starlette"), 403,
        ]

        async with open_h2_peer(port) as peer:
            assert peer.enable_connect_protocol == 1
            st, ws = await peer.websocket("/ws?q=h2", subprotocols=["echo"], deflate=True)
            assert ws is not None and st.header(b"sec-websocket-protocol") == b"echo"
            with trio.fail_after(10):
                greeting = json.loads(await ws.receive_message())
                assert greeting == {"http_version": "2", "path": "/ws", "query": "h2"}
                await ws.send_text("over h2")
                assert await ws.receive_message() == "over h2"
                await ws.send_bytes(b"\xff" * 300_000)
                assert await ws.receive_message() == b"\xff" * 300_000
                await ws.send(CloseConnection(code=1000))
                assert (await ws.expect_close(reply=False))[0] == 1000
            _, ws2 = await peer.websocket("/bye")
            assert ws2 is not None
            with trio.fail_after(10):
                assert await ws2.expect_close() == (4400, "goodbye from starlette")
            st3, ws3 = await peer.websocket("/forbidden")
            assert ws3 is None and st3.status == 403


async def test_demo_websocket_echo() -> None:
    async with run_cli("--ws-max-message-size", "1000") as port:

        def client() -> list[Any]:
            with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
                out: list[Any] = [ws.recv(timeout=10)]
                ws.send("echo me")
                out.append(ws.recv(timeout=10))
                ws.send("x" * 1001)  # over --ws-max-message-size
                with pytest.raises(ConnectionClosed) as info:
                    ws.recv(timeout=10)
                out.append(info.value.rcvd.code if info.value.rcvd else None)
                return out

        assert await in_thread(client) == [
            "welcome: a WebSocket over HTTP/1.1", "echo me", 1009,
        ]
        async with open_h2_peer(port) as peer:
            _, ws = await peer.websocket("/ws")
            assert ws is not None
            with trio.fail_after(10):
                assert await ws.receive_message() == "welcome: a WebSocket over HTTP/2"


def test_websocket_flags_reach_the_config() -> None:
    from trio_http._cli import build_parser, config_from_args

    args = build_parser().parse_args([
        "--ws-max-message-size", "4096", "--ws-max-queue", "3", "--ws-ping-interval", "15",
        "--ws-ping-timeout", "7.5", "--no-ws-per-message-deflate",
    ])
    config = config_from_args(args)
    assert (config.websocket_max_message_size, config.websocket_max_queue,
            config.websocket_ping_interval, config.websocket_ping_timeout,
            config.websocket_per_message_deflate) == (4096, 3, 15.0, 7.5, False)
    defaults = config_from_args(build_parser().parse_args([]))
    assert defaults.websocket_ping_interval is None and defaults.websocket_per_message_deflate
