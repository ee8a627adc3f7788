"""Every example of the documentation (``docs/examples/``) run for real: programs run to their
end, apps served by ``python -m trio_http`` and talked to with real clients, config files
loaded by the server. Everything listens on 127.0.0.1 port 0 and is bounded in time.

``EXERCISED`` names the test of each file; a file in docs/examples/ that no test runs, or that
no page includes, fails :func:`test_every_example_is_run_and_shown`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from .conftest import TESTS_DIR

REPO = TESTS_DIR.parent
DOCS = REPO / "docs"
EXAMPLES = DOCS / "examples"
SERVING = re.compile(r"Serving on (https?://\S+) \(([^)]*)\)")

#: Which test runs each example file.
EXERCISED = {
    "embed.py": "test_embed",
    "embed_context.py": "test_embed_context",
    "embed_signals.py": "test_embed_signals",
    "tls_alpn.py": "test_tls_alpn",
    "fastapi_app.py": "test_fastapi_over_http2_and_http3",
    "h3_get.py": "test_fastapi_over_http2_and_http3",
    "test_fastapi_app.py": "test_fixture_tutorial_passes",
    "h2c_client.py": "test_h2c_client",
    "websocket_app.py": "test_websocket_example",
    "websocket_client.py": "test_websocket_example",
    "trio-http.socket": "test_systemd_units",
    "trio-http.service": "test_systemd_units",
    "logging.json": "test_logging_config",
    "trio_http.toml": "test_config_file",
}


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


async def run_example(*argv: str, cwd: Path = EXAMPLES, limit: float = 60,
                      environ: dict[str, str] | None = None) -> str:
    """Run a program to its end (bounded); return its stdout, failing on a non-zero exit."""
    with trio.fail_after(limit):
        proc = await trio.run_process(list(argv), cwd=str(cwd), env=environ or env(),
                                      capture_stdout=True, capture_stderr=True, check=False)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{out}\n{err}"
    return out


@dataclass
class Server:
    process: trio.Process
    output: bytearray = field(default_factory=bytearray)

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def urls(self, kind: str = "") -> list[str]:
        return [url for url, what in SERVING.findall(self.text) if kind in what]


async def _collect(stream: Any, into: bytearray) -> None:
    async for chunk in stream:
        into += chunk


@asynccontextmanager
async def serving(*args: str, cwd: Path = EXAMPLES, ready: str = r"Press CTRL\+C",
                  environ: dict[str, str] | None = None, argv: list[str] | None = None,
                  pass_fds: tuple[int, ...] = (), stop: signal.Signals = signal.SIGINT,
                  ) -> AsyncIterator[Server]:
    """Run ``python -m trio_http ARGS`` (or ``argv``) until its output matches the regex
    ``ready``; stop it with ``stop`` after the block and require a clean exit (all bounded)."""
    command = argv or [sys.executable, "-m", "trio_http", *args]
    process = await trio.lowlevel.open_process(
        command, cwd=str(cwd), env=environ or env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, pass_fds=pass_fds,
    )
    server = Server(process)
    try:
        async with trio.open_nursery() as nursery:
            stdout = process.stdout
            assert stdout is not None
            with trio.fail_after(30):
                while not re.search(ready, server.text):
                    chunk = await stdout.receive_some()
                    if not chunk:
                        raise AssertionError(f"exited before it was ready:\n{server.text}")
                    server.output += chunk
            nursery.start_soon(_collect, stdout, server.output)
            yield server
            process.send_signal(stop)
            with trio.fail_after(30):
                await process.wait()
        assert process.returncode == 0, server.text
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()


# --- tutorials -------------------------------------------------------------------------------


async def test_embed():
    out = await run_example(sys.executable, "embed.py")
    assert re.match(r"serving on http://127\.0\.0\.1:\d+\n", out)
    assert "200 Hello over HTTP/1.1!\nrequests served: 1\nstopped\n" in out


async def test_embed_context():
    assert await run_example(sys.executable, "embed_context.py") == "10 requests served\n"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_embed_signals(signum):
    async with serving(argv=[sys.executable, "embed_signals.py"], ready=r"serving on \S+\n",
                       stop=signum) as server:
        url = server.text.split()[2]
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).text == "still here\n"
    assert f"got {signum.name} - shutting down\nbye\n" in server.text


async def test_fastapi_over_http2_and_http3(tmp_path):
    pytest.importorskip("fastapi")
    state = tmp_path / "state"
    async with serving("fastapi_app:app", "--dev-tls", "--bind", "127.0.0.1:0",
                       "--quic-bind", "127.0.0.1:0",
                       environ=env(TRIO_HTTP_STATE_DIR=str(state))) as server:
        ca = state / "dev-tls" / "ca.pem"
        assert str(ca) in server.text  # the server says which CA to trust
        (tcp,), (udp,) = server.urls("ALPN"), server.urls("QUIC")
        tcp = tcp.replace("127.0.0.1", "localhost")
        udp_port = udp.rsplit(":", 1)[1]
        verify = ssl.create_default_context(cafile=str(ca))
        async with httpx.AsyncClient(verify=verify, http2=True) as client:
            r = await client.get(tcp + "/")
            assert r.http_version == "HTTP/2"
            assert r.json() == {"message": "Hello!", "http_version": "2"}
            assert r.headers["alt-svc"] == f'h3=":{udp_port}"; ma=3600'
            put = await client.put(tcp + "/items/1", content=b"one")
            assert put.json() == {"item_id": 1, "stored": "one"}
        out = await run_example(sys.executable, "h3_get.py",
                                f"https://localhost:{udp_port}/items/1", "--cacert", str(ca))
        assert ":status: 200" in out
        assert out.rstrip().endswith('{"item_id":1,"value":"one"}')


async def test_fixture_tutorial_passes():
    pytest.importorskip("fastapi")
    out = await run_example(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "test_fastapi_app.py", limit=120)
    assert "3 passed" in out


# --- how-to guides ---------------------------------------------------------------------------


async def test_tls_alpn():
    out = await run_example(sys.executable, "tls_alpn.py")
    assert "browser-like client: h2\n" in out
    assert "HTTP/1.1-only client: http/1.1\n" in out


async def test_h2c_client():
    async with serving("--bind", "127.0.0.1:0") as server:
        (url,) = server.urls()
        out = await run_example(sys.executable, "h2c_client.py", url + "/")
    assert out == ("prior knowledge: HTTP/2\n"
                   "upgrade: HTTP/1.1 101 Switching Protocols then HTTP/2 status 200\n")


async def test_websocket_example():
    async with serving("websocket_app:app", "--bind", "127.0.0.1:0",
                       "--ws-max-message-size", "65536") as server:
        (url,) = server.urls()
        out = await run_example(sys.executable, "websocket_client.py",
                                url.replace("http://", "ws://") + "/shout")
    lines = out.splitlines()
    assert lines[0] == "subprotocol: shout.v1"
    assert "PerMessageDeflate" in lines[1]
    assert lines[2:] == ["HELLO", "TRIO"]


def _unit(name: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in (EXAMPLES / name).read_text().splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


async def test_systemd_units():
    """Socket activation as systemd does it: the listening socket is fd 3, LISTEN_FDS=1 and
    LISTEN_PID is the service's pid; then ExecReload's SIGHUP and KillSignal's SIGTERM."""
    socket_unit, service = _unit("trio-http.socket"), _unit("trio-http.service")
    assert socket_unit["Socket"]["ListenStream"] == "127.0.0.1:8000"
    exec_start = service["Service"]["ExecStart"].split()
    assert exec_start[1:4] == ["-m", "trio_http", "myproject.asgi:app"]
    command = [sys.executable, "-m", "trio_http", "trio_http.demo:app", *exec_start[4:]]

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # the unit's ListenStream, on a free port
    listener.listen(int(socket_unit["Socket"]["Backlog"]))
    port = listener.getsockname()[1]
    # What systemd does between fork and exec: the socket to fd 3, LISTEN_PID = own pid.
    launcher = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                "os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[2], sys.argv[2:])")
    argv = [sys.executable, "-c", launcher, str(listener.fileno()), *command]
    try:
        stop = signal.Signals[service["Service"]["KillSignal"]]
        async with serving(argv=argv, cwd=REPO, environ=env(LISTEN_FDS="1"),
                           pass_fds=(listener.fileno(),), stop=stop, ready="Serving on"
                           ) as server:
            listener.close()  # the service holds it now
            async with httpx.AsyncClient() as client:
                url = f"http://127.0.0.1:{port}/api/info"
                # The socket was listening all along: this waits in its queue for a worker.
                assert (await client.get(url, timeout=30)).status_code == 200
                assert service["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"
                server.process.send_signal(signal.SIGHUP)  # a rolling restart
                for _ in range(20):
                    assert (await client.get(url)).status_code == 200
    finally:
        listener.close()


async def test_logging_config(tmp_path):
    config = tmp_path / "logging.json"
    config.write_text((EXAMPLES / "logging.json").read_text())
    async with serving("trio_http.demo:app", "--bind", "127.0.0.1:0", "--log-config",
                       str(config), cwd=tmp_path) as server:
        (url,) = server.urls()
        async with httpx.AsyncClient() as client:
            assert (await client.get(url + "/api/info")).status_code == 200
    access = (tmp_path / "access.log").read_text()
    assert re.search(r'127\.0\.0\.1 "GET /api/info HTTP/1\.1" 200 \d+ \d+\n$', access), access
    assert re.search(r"INFO trio_http\.error: Serving on", server.text), server.text


async def test_config_file(tmp_path):
    settings = tomllib.loads((EXAMPLES / "trio_http.toml").read_text())
    printed = await run_example(sys.executable, "-m", "trio_http", "--config",
                                str(EXAMPLES / "trio_http.toml"), "--print-config",
                                cwd=tmp_path)
    effective = tomllib.loads(printed)
    for key, value in settings.items():
        assert effective[key] == value, key
    # The command line wins over the file: serve the demo on a free port with it.
    async with serving("--config", str(EXAMPLES / "trio_http.toml"), "trio_http.demo:app",
                       "--bind", "127.0.0.1:0", cwd=tmp_path) as server:
        (url,) = server.urls()
        async with httpx.AsyncClient() as client:
            assert (await client.get(url + "/api/info")).status_code == 200
    assert re.search(r'"GET /api/info HTTP/1\.1" 200 \d+ \d+us', server.text), server.text


# --- bookkeeping -----------------------------------------------------------------------------


def test_every_example_is_run_and_shown():
    files = {p.name for p in EXAMPLES.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert files == set(EXERCISED), "docs/examples/ and EXERCISED disagree"
    tests = {name for name in globals() if name.startswith("test_")}
    assert set(EXERCISED.values()) <= tests
    pages = "\n".join(p.read_text() for p in DOCS.rglob("*.md") if "_build" not in p.parts)
    included = set(re.findall(r"literalinclude\}\s+(?:\.\./)*examples/(\S+)", pages))
    assert files - included == set(), "examples no page includes"

