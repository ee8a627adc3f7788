"""Helpers for the production tests: run ``python -m trio_http`` as a user would, read its log
from stderr, and wait (bounded) for lines to appear in it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from .conftest import TESTS_DIR

REPO = TESTS_DIR.parent
SERVING = re.compile(r"Serving on (\S+)")


@dataclass
class Server:
    process: trio.Process
    log: bytearray = field(default_factory=bytearray)
    changed: trio.Event = field(default_factory=trio.Event)

    @property
    def text(self) -> str:
        return self.log.decode(errors="replace")

    @property
    def urls(self) -> list[str]:
        return SERVING.findall(self.text)

    @property
    def port(self) -> int:
        return int(self.urls[0].rsplit(":", 1)[1])

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.text))

    async def wait_for(
        self, pattern: str, *, count: int = 1, timeout: float = 20  # noqa: ASYNC109
    ) -> None:
        """Wait until ``pattern`` (a regex) occurs ``count`` times in the log."""
        with trio.fail_after(timeout):
            while self.count(pattern) < count:
                if self.process.returncode is not None:
                    raise AssertionError(f"server exited ({self.process.returncode}):\n{self.text}")
                event = self.changed
                await event.wait()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def stop(self, timeout: float = 20) -> int:  # noqa: ASYNC109
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(timeout):
            return await self.process.wait()


async def _collect(stream: Any, server: Server) -> None:
    async for chunk in stream:
        server.log += chunk
        server.changed.set()
        server.changed = trio.Event()
    server.changed.set()


@asynccontextmanager
async def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    ready: str | None = r"Serving on",
    ready_count: int = 1,
    pass_fds: Sequence[int] = (),
    timeout: float = 30,  # noqa: ASYNC109
    argv: Sequence[str] | None = None,
) -> AsyncIterator[Server]:
    """Run the CLI in a subprocess; wait (bounded) for ``ready`` in its log; SIGTERM and
    wait for it on exit (killing it if needed)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p
    )
    process = await trio.lowlevel.open_process(
        [*(argv or [sys.executable, "-m", "trio_http"]), *args], cwd=cwd or str(REPO),
        env=full_env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        pass_fds=pass_fds,
    )
    server = Server(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_collect, process.stderr, server)
            if ready is not None:
                await server.wait_for(ready, count=ready_count, timeout=timeout)
            yield server
            await server.stop()
            nursery.cancel_scope.deadline = trio.current_time() + 5
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str = "/", *, host: str = "127.0.0.1",
             headers: dict[str, str] | None = None, timeout: float = 5) -> tuple[int, bytes]:
    """A blocking HTTP/1.1 GET on a fresh connection (run it in a thread)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        lines = [f"GET {path} HTTP/1.1", f"host: {host}:{port}", "connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, body


async def fetch(port: int = 0, path: str = "/", *, unix: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP/1.1 GET on a fresh connection (TCP to 127.0.0.1, or a unix socket); returns
    ``(status, body)``. Raises OSError (e.g. ConnectionRefusedError) from connect, and
    ``ConnectionError`` when the server closes without a complete response."""
    with trio.fail_after(10):
        if unix is not None:
            stream: trio.abc.Stream = await trio.open_unix_socket(unix)
        else:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            lines = [f"GET {path} HTTP/1.1", "host: test", "connection: close"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
            data = b""
            try:
                while chunk := await stream.receive_some():
                    data += chunk
            except trio.BrokenResourceError as exc:
                raise ConnectionResetError("reset") from exc
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError(f"no response: {data!r}")
    return int(head.split(b" ", 2)[1]), body
