"""Worker processes under the supervisor, with real processes and sockets: a crash under load
is repaired, a SIGHUP rolling restart refuses nothing, --max-requests replaces workers, --pid,
--reload follows file changes and waits out a syntax error; and the socket kinds: unix
sockets with permissions, fd://N, and systemd socket activation (LISTEN_FDS)."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import sys
from collections.abc import Callable

import trio

from .prod_helpers import fetch, run_cli

PID = re.compile(rb'"pid": (\d+)')
APP = "tests.apps.prod_apps:info_app"


class Load:
    """Client loops, each sending requests one after another on fresh connections, recording
    ``(pid, error)`` per request; bounded in count."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.results: list[tuple[int | None, str | None]] = []
        self.changed = trio.Event()
        self.stop = False

    @property
    def errors(self) -> list[str]:
        return [e for _, e in self.results if e is not None]

    def pids(self, since: int = 0) -> set[int]:
        return {p for p, _ in self.results[since:] if p is not None}

    async def loop(self, limit: int = 5000) -> None:
        for _ in range(limit):
            if self.stop:
                return
            try:
                status, body = await fetch(self.port)
                m = PID.search(body)
                if status != 200 or m is None:
                    self.results.append((None, f"status {status}"))
                else:
                    self.results.append((int(m.group(1)), None))
            except OSError as exc:
                self.results.append((None, type(exc).__name__))
            self.changed.set()
            self.changed = trio.Event()

    async def until(
        self, predicate: Callable[[], bool], timeout: float = 20  # noqa: ASYNC109
    ) -> None:
        with trio.fail_after(timeout):
            while not predicate():
                await self.changed.wait()


async def test_worker_crash_is_restarted_under_load():
    async with run_cli(APP, "--workers", "2", "--bind", "127.0.0.1:0",
                       ready=r"Worker \d+ ready", ready_count=2) as server:
        load = Load(server.port)
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(load.loop)
            await load.until(lambda: len(load.pids()) == 2 and len(load.results) >= 40)
            before = load.pids()
            victim = next(iter(before))
            os.kill(victim, signal.SIGKILL)
            await server.wait_for(r"exited unexpectedly", timeout=10)
            await server.wait_for(r"Worker \d+ ready", count=3)
            mark = len(load.results)
            await load.until(lambda: len(load.pids(mark) - before) == 1
                             and len(load.results) >= mark + 40)
            load.stop = True
        after = load.pids(mark)
        assert victim not in after and len(after) == 2
    # Only requests in flight on the killed worker may fail; nothing is refused.
    assert "ConnectionRefusedError" not in load.errors
    assert len(load.errors) <= 2, load.errors


async def test_sighup_rolling_restart_refuses_nothing():
    async with run_cli(APP, "--workers", "2", "--bind", "127.0.0.1:0",
                       "--graceful-timeout", "2",
                       ready=r"Worker \d+ ready", ready_count=2) as server:
        load = Load(server.port)
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(load.loop)
            await load.until(lambda: len(load.pids()) == 2 and len(load.results) >= 40)
            old = load.pids()
            server.signal(signal.SIGHUP)
            await server.wait_for(r"Rolling restart complete")
            for pid in old:
                await server.wait_for(rf"Worker {pid} stopped")
            mark = len(load.results)
            await load.until(lambda: len(load.results) >= mark + 40)
            load.stop = True
        assert server.count(r"Started worker") == 4
        new = load.pids(mark)
        assert new and not (new & old)
    assert load.errors == [], load.errors[:5]
    assert len(load.results) >= 80


async def test_max_requests_replaces_workers_and_pid_file(tmp_path):
    pid_file = tmp_path / "server.pid"
    async with run_cli(APP, "--workers", "1", "--bind", "127.0.0.1:0", "--max-requests", "5",
                       "--max-requests-jitter", "3", "--pid", str(pid_file),
                       ready=r"Worker \d+ ready") as server:
        assert int(pid_file.read_text()) == server.process.pid
        load = Load(server.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load.loop, 3000)
            await load.until(lambda: len(load.pids()) >= 3)
            load.stop = True
        assert server.count(r"max-requests") >= 2
    assert load.errors == [], load.errors[:5]
    assert not pid_file.exists()


async def test_reload_on_change_waits_out_syntax_error(tmp_path):
    module = tmp_path / "reloaded_app.py"

    def write(version: str, broken: bool = False) -> None:
        module.write_text(
            "async def app(scope, receive, send):\n"
            "    if scope['type'] != 'http':\n        return\n"
            "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
            f"    await send({{'type': 'http.response.body', 'body': b'{version}'}})\n"
            + ("def broken(:\n" if broken else "")
        )

    write("v1")
    async with run_cli("reloaded_app:app", "--reload", "--app-dir", str(tmp_path),
                       "--reload-dir", str(tmp_path), "--bind", "127.0.0.1:0",
                       "--graceful-timeout", "1", cwd=str(tmp_path),
                       env={"PYTHONDONTWRITEBYTECODE": "1"},
                       ready=r"Worker \d+ ready") as server:
        await server.wait_for(r"Watching")
        assert await fetch(server.port) == (200, b"v1")
        write("v2")
        await server.wait_for(r"Worker \d+ ready", count=2)
        assert await fetch(server.port) == (200, b"v2")
        write("v3", broken=True)
        await server.wait_for(r"waiting for a file to change")
        assert "SyntaxError" in server.text
        assert server.process.returncode is None
        write("v4")
        await server.wait_for(r"Worker \d+ ready", count=3)
        assert await fetch(server.port) == (200, b"v4")


async def test_unix_socket_with_mode_and_umask(tmp_path):
    path = str(tmp_path / "app.sock")
    async with run_cli(APP, "--bind", f"unix:{path}", "--uds-mode", "0o660",
                       "--umask", "0o077") as server:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        status, body = await fetch(unix=path)
        assert status == 200 and b'"client": null' in body
        assert server.urls == [f"http+unix://{path}"]


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def test_fd_bind():
    with _listening_socket() as sock:
        fd = sock.fileno()
        async with run_cli(APP, "--bind", f"fd://{fd}", pass_fds=[fd]) as server:
            assert server.port == sock.getsockname()[1]
            status, _ = await fetch(server.port)
            assert status == 200


async def test_systemd_socket_activation_with_workers():
    with _listening_socket() as sock:
        fd, port = sock.fileno(), sock.getsockname()[1]
        # As systemd does: the socket on fd 3, LISTEN_PID naming the server process (the
        # launcher execs it, keeping its pid).
        launcher = (
            f"import os, sys; os.dup2({fd}, 3); os.close({fd}); "
            "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
            "os.execv(sys.executable, [sys.executable, '-m', 'trio_http', *sys.argv[1:]])"
        )
        argv = [sys.executable, "-c", launcher]
        async with run_cli(APP, "--workers", "2", argv=argv, pass_fds=[fd],
                           ready=r"Worker \d+ ready", ready_count=2) as server:
            assert server.port == port
            assert server.urls == [f"http://127.0.0.1:{port}"]
            pids = set()
            for _ in range(20):
                status, body = await fetch(port)
                assert status == 200
                pids.add(int(PID.search(body).group(1)))  # type: ignore[union-attr]
            assert server.process.pid not in pids
            environ = await trio.Path(f"/proc/{next(iter(pids))}/environ").read_text()
            assert "LISTEN_PID" not in environ


async def test_bad_app_stops_supervisor_with_status_2():
    async with run_cli("tests.apps.no_such_module:app", "--workers", "2",
                       "--bind", "127.0.0.1:0") as server:
        with trio.fail_after(20):
            status = await server.process.wait()
    assert status == 2 and "failed to start" in server.text
