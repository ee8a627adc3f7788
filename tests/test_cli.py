"""``python -m trio_http`` as a user runs it: a Starlette app served from a subprocess over
HTTP/1.1, HTTP/2 over TLS and h2c, a clean exit on SIGINT/SIGTERM, and the documented exit
statuses for a failing lifespan startup (3), a bad app spec (2) and a busy port (1)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio

from .conftest import TESTS_DIR, require_tool, run_tool

REPO = TESTS_DIR.parent
SERVING = re.compile(r"Serving on (\S+)")


@dataclass
class Proc:
    process: trio.Process
    urls: list[str]
    stderr: bytearray = field(default_factory=bytearray)


async def _collect(stream: Any, into: bytearray) -> None:
    async for chunk in stream:
        into += chunk


@asynccontextmanager
async def cli(*args: str, expect_urls: int) -> AsyncIterator[Proc]:
    """Run the CLI; wait (bounded) for it to print ``expect_urls`` "Serving on" lines."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_http", *args], cwd=str(REPO), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    proc = Proc(process, [])
    try:
        async with trio.open_nursery() as nursery:
            stderr = process.stderr
            assert stderr is not None
            with trio.fail_after(30):
                while len(proc.urls) < expect_urls:
                    chunk = await stderr.receive_some()
                    if not chunk:
                        break  # it exited: the test sees fewer URLs and the stderr
                    proc.stderr += chunk
                    proc.urls = SERVING.findall(proc.stderr.decode(errors="replace"))
            nursery.start_soon(_collect, stderr, proc.stderr)
            yield proc
            with trio.fail_after(15):
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()


async def run_cli(*args: str) -> tuple[int, str]:
    """Run the CLI to completion (bounded); return its status and stderr."""
    proc = await run_tool(sys.executable, "-m", "trio_http", *args, timeout=30)
    return proc.returncode, proc.stderr.decode()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_starlette_app_over_all_protocols(cert_files, client_ssl_context, signum):
    args = ["tests.apps.starlette_app:app", "--bind", "127.0.0.1:0",
            "--certfile", cert_files["certfile"], "--keyfile", cert_files["keyfile"],
            "--insecure-bind", "127.0.0.1:0", "--graceful-timeout", "5"]
    async with cli(*args, expect_urls=2) as proc:
        assert len(proc.urls) == 2, proc.stderr.decode()
        tls_url = next(u for u in proc.urls if u.startswith("https://"))
        plain_url = next(u for u in proc.urls if u.startswith("http://"))
        tls_url = tls_url.replace("127.0.0.1", "localhost")
        cases = [
            (tls_url, {"verify": client_ssl_context, "http1": True, "http2": False}, "1.1"),
            (tls_url, {"verify": client_ssl_context, "http2": True}, "2"),
            (plain_url, {"http1": False, "http2": True}, "2"),
            (plain_url, {}, "1.1"),
        ]
        for url, kw, version in cases:
            async with httpx.AsyncClient(**kw) as client:
                r = await client.get(url + "/")
                assert r.status_code == 200
                assert r.json() == {"message": "Hello world!", "http_version": version}
                r = await client.post(url + "/echo", content=b"x" * 100_000)
                assert r.json() == {"length": 100_000, "http_version": version}
        proc.process.send_signal(signum)
    assert proc.process.returncode == 0, proc.stderr.decode()
    err = proc.stderr.decode()
    assert "(HTTP/1.1, HTTP/2 over TLS with ALPN)" in err
    assert "h2c" in err
    assert signal.Signals(signum).name in err


async def test_curl_against_cli_starlette(cert_files):
    curl = require_tool("curl")
    args = ["tests.apps.starlette_app:app", "--bind", "127.0.0.1:0",
            "--certfile", cert_files["certfile"], "--keyfile", cert_files["keyfile"],
            "--insecure-bind", "127.0.0.1:0"]
    async with cli(*args, expect_urls=2) as proc:
        assert len(proc.urls) == 2, proc.stderr.decode()
        tls_url = next(u for u in proc.urls if u.startswith("https://"))
        tls_url = tls_url.replace("127.0.0.1", "localhost")
        plain_url = next(u for u in proc.urls if u.startswith("http://"))
        for flags, url, version in [
            (["--http1.1", "--cacert", cert_files["cafile"]], tls_url, "1.1"),
            (["--http2", "--cacert", cert_files["cafile"]], tls_url, "2"),
            (["--http2-prior-knowledge"], plain_url, "2"),
            (["--http2"], plain_url, "2"),  # Upgrade: h2c
            (["--http1.1"], plain_url, "1.1"),
        ]:
            out = await run_tool(curl, "-sS", "--max-time", "10", *flags, url + "/", timeout=20)
            assert out.returncode == 0, out.stderr
            assert out.stdout == (
                b'{"message":"Hello world!","http_version":"%s"}' % version.encode()
            )
        proc.process.send_signal(signal.SIGINT)
    assert proc.process.returncode == 0


async def test_demo_app_is_the_default():
    async with cli("--bind", "127.0.0.1:0", expect_urls=1) as proc:
        assert len(proc.urls) == 1, proc.stderr.decode()
        async with httpx.AsyncClient() as client:
            r = await client.get(proc.urls[0] + "/api/info")
            assert r.json()["protocol"] == "HTTP/1.1"
        proc.process.send_signal(signal.SIGINT)
    assert proc.process.returncode == 0


async def test_lifespan_startup_failure_exits_3():
    status, err = await run_cli("tests.apps.lifespan_fail:app", "--bind", "127.0.0.1:0")
    assert status == 3, err
    assert "database unreachable" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("spec", "message"), [
    ("no_colon_here", "module:attribute"),
    ("tests.apps.does_not_exist:app", "cannot import"),
    ("tests.apps.starlette_app:missing", "no attribute"),
])
async def test_bad_app_spec_exits_2(spec, message):
    status, err = await run_cli(spec, "--bind", "127.0.0.1:0")
    assert status == 2, err
    assert message in err
    assert "Traceback" not in err


async def test_bad_option_value_exits_2():
    status, err = await run_cli("--bind", "127.0.0.1:0", "--graceful-timeout", "-1")
    assert status == 2, err
    assert "graceful_timeout" in err


async def test_busy_port_exits_1():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        port = sock.getsockname()[1]
        status, err = await run_cli("--bind", f"127.0.0.1:{port}")
    finally:
        sock.close()
    assert status == 1, err
    assert "address already in use" in err
