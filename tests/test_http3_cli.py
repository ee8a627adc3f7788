"""The command line serving a Starlette app over HTTP/1.1, HTTP/2 and HTTP/3 in one run."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from .h3_client import open_h3_client

REPO = Path(__file__).resolve().parent.parent


async def _read_until(stream: trio.abc.ReceiveStream, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise AssertionError(f"server exited early:\n{seen.decode(errors='replace')}")
        seen += chunk
    return seen


async def test_starlette_over_h1_h2_h3_from_the_cli(cert_files, client_ssl_context):
    argv = [
        sys.executable, "-m", "trio_http", "tests.apps.starlette_app:app",
        "--bind", "127.0.0.1:0", "--quic-bind", "127.0.0.1:0",
        "--certfile", cert_files["certfile"], "--keyfile", cert_files["keyfile"],
    ]
    with trio.fail_after(60):
        proc = await trio.lowlevel.open_process(argv, cwd=str(REPO), stderr=subprocess.PIPE)
        try:
            assert proc.stderr is not None
            log = (await _read_until(proc.stderr, b"Press CTRL+C")).decode()
            tcp_port = int(re.search(r"https://127\.0\.0\.1:(\d+) \(HTTP/1\.1", log).group(1))
            quic_port = int(re.search(r"https://127\.0\.0\.1:(\d+) \(HTTP/3", log).group(1))
            url = f"https://127.0.0.1:{tcp_port}"
            async with httpx.AsyncClient(verify=client_ssl_context, http1=True,
                                         http2=False) as client:
                r1 = await client.get(url + "/")
            async with httpx.AsyncClient(verify=client_ssl_context, http1=False,
                                         http2=True) as client:
                r2 = await client.post(url + "/echo", content=b"z" * 100_000)
            async with open_h3_client(("127.0.0.1", quic_port), cert_files["cafile"]) as h3:
                r3 = await h3.get("/")
                r3_post = await h3.request("POST", "/echo", body=b"q" * 300_000)
            proc.send_signal(signal.SIGINT)
            assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    assert r1.http_version == "HTTP/1.1"
    assert r1.json() == {"message": "Hello world!", "http_version": "1.1"}
    assert r1.headers["alt-svc"] == f'h3=":{quic_port}"; ma=3600'
    assert r2.http_version == "HTTP/2"
    assert r2.json() == {"length": 100_000, "http_version": "2"}
    assert r2.headers["alt-svc"] == f'h3=":{quic_port}"; ma=3600'
    assert r3.status == 200
    assert json.loads(bytes(r3.body)) == {"message": "Hello world!", "http_version": "3"}
    assert json.loads(bytes(r3_post.body)) == {"length": 300_000, "http_version": "3"}
