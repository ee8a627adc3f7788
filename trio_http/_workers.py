"""Several worker processes behind one set of listening sockets, and ``--reload``.

The supervisor (this module, a trio program that never imports the app) opens the listening
sockets once and keeps them open for its whole life. Each worker is ``python -m trio_http``
started with those sockets inherited (``pass_fds``) and served as ``fd://N`` binds, so all
workers accept from the same kernel queues, and a connection waiting in a queue is taken by
whichever worker is alive: nothing is refused while workers come and go.

- A worker that crashes is started again (after 0.1 s, doubling per quick crash, at most 5 s).
  One that fails before it ever served (exit status 2: bad app; 3: lifespan failure) while no
  worker has yet served stops the supervisor with that status.
- SIGTERM / SIGINT: every worker gets SIGTERM (graceful shutdown, ``graceful_timeout``); any
  still running ``graceful_timeout + 5`` seconds later is killed.
- SIGHUP: rolling restart. For each slot a new worker is started and, once it is ready, the
  old one is told to stop gracefully. If a new worker fails, the old ones keep serving.
- ``--max-requests``: a worker that reaches it says ``retiring``; its replacement starts at once.
- ``--reload``: the app's source files are watched (watchfiles); on a change the worker is
  stopped and a new one started. One that dies (a syntax error) is reported and the
  supervisor waits for the next change.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import trio

from ._config import Bind, Config
from ._errors import ConfigError
from ._listeners import HTTPListener, open_http_listeners
from ._runner import WorkerLink, describe_url, exit_status, run_server, start_metrics

__all__ = ["SPEC_ENV", "Supervisor", "supervise", "worker_main"]

logger = logging.getLogger("trio_http.error")

#: Environment variable carrying a worker's instructions (JSON) from its supervisor.
SPEC_ENV = "TRIO_HTTP_WORKER_SPEC"
_FATAL_AT_START = (2, 3)
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 5.0
#: A worker that served this long (seconds) before crashing resets the backoff.
_STABLE_AFTER = 5.0


class _Worker:
    def __init__(self, slot: int, process: trio.Process, pipe: trio.lowlevel.FdStream) -> None:
        self.slot = slot
        self.process = process
        self.pipe = pipe
        self.ready = trio.Event()
        self.exited = trio.Event()
        self.retiring = False
        self.ready_at: float | None = None
        self.stats: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Runs ``workers`` worker processes on inherited ``fds`` (``(fd, tls)`` pairs)."""

    def __init__(
        self,
        settings: dict[str, Any],
        fds: Sequence[tuple[int, bool]],
        *,
        workers: int,
        graceful_timeout: float,
        startup_timeout: float,
        reload_dirs: Sequence[str] | None = None,
        max_requests: int | None = None,
        max_requests_jitter: int = 0,
        send_stats: bool = False,
    ) -> None:
        self.settings = settings
        self.fds = list(fds)
        self.workers = workers
        self.graceful_timeout = graceful_timeout
        self.startup_timeout = startup_timeout
        self.reload_dirs = list(reload_dirs) if reload_dirs is not None else None
        self.max_requests = max_requests
        self.max_requests_jitter = max_requests_jitter
        self.send_stats = send_stats
        self.current: dict[int, _Worker] = {}
        self.live: set[_Worker] = set()
        self.ever_ready = False
        self._crashes: dict[int, int] = {}
        # Unit: events (worker exits and retirements, SIGHUP, file changes). Senders wait
        # when it is full; only the supervisor's own tasks send.
        self._events_send, self._events = trio.open_memory_channel[tuple[Any, ...]](64)
        self._stop = trio.CancelScope()

    # --- statistics for --metrics-bind ----------------------------------------------------
    def statistics(self) -> dict[str, dict[str, Any]]:
        """The latest statistics of each current worker, by slot."""
        return {str(slot): w.stats for slot, w in sorted(self.current.items()) if w.stats}

    # --- processes ----------------------------------------------------------------------
    def _spec(self, slot: int, pipe_fd: int) -> dict[str, Any]:
        limit = None
        if self.max_requests:
            limit = self.max_requests + random.randint(0, max(0, self.max_requests_jitter))
        return {
            "settings": self.settings, "binds": self.fds, "pipe_fd": pipe_fd, "slot": slot,
            "ppid": os.getpid(), "max_requests": limit, "send_stats": self.send_stats,
        }

    async def _spawn(self, nursery: trio.Nursery, slot: int) -> _Worker:
        read_fd, write_fd = os.pipe()
        env = {k: v for k, v in os.environ.items()
               if k not in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")}
        env[SPEC_ENV] = json.dumps(self._spec(slot, write_fd))
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "trio_http"], env=env, stdin=subprocess.DEVNULL,
                pass_fds=[fd for fd, _ in self.fds] + [write_fd],
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        worker = _Worker(slot, process, trio.lowlevel.FdStream(read_fd))
        self.current[slot] = worker
        self.live.add(worker)
        logger.info("Started worker %d (slot %d)", worker.pid, slot)
        nursery.start_soon(self._watch, worker)
        return worker

    async def _watch(self, w: _Worker) -> None:
        buffer = b""
        try:
            async for chunk in w.pipe:
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    await self._on_line(w, line.decode(errors="replace"))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await w.pipe.aclose()
        await w.process.wait()
        self.live.discard(w)
        w.exited.set()
        await self._events_send.send(("exited", w))

    async def _on_line(self, w: _Worker, line: str) -> None:
        if line == "ready":
            w.ready_at = trio.current_time()
            self.ever_ready = True
            self._crashes.pop(w.slot, None)
            w.ready.set()
        elif line == "retiring":
            await self._events_send.send(("retiring", w))
        elif line.startswith("stats "):
            try:
                w.stats = json.loads(line[len("stats "):])
            except ValueError:
                pass

    async def _stop_worker(self, w: _Worker) -> None:
        w.retiring = True
        if w.exited.is_set():
            return
        try:
            w.process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        with trio.move_on_after(self.graceful_timeout + 5):
            await w.exited.wait()
            return
        logger.warning("Worker %d did not stop in time: killing it", w.pid)
        w.process.kill()
        await w.exited.wait()

    async def _wait_ready(self, w: _Worker) -> bool:
        with trio.move_on_after(self.startup_timeout):
            async with trio.open_nursery() as nursery:
                async def first(event: trio.Event) -> None:
                    await event.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(first, w.ready)
                nursery.start_soon(first, w.exited)
        return w.ready.is_set() and not w.exited.is_set()

    # --- policies ------------------------------------------------------------------------
    async def _rolling_restart(self, nursery: trio.Nursery) -> None:
        logger.info("Rolling restart of %d workers", len(self.current))
        for slot in sorted(self.current):
            old = self.current[slot]
            new = await self._spawn(nursery, slot)
            if not await self._wait_ready(new):
                logger.error("Rolling restart stopped: the new worker %d did not start; "
                             "the old workers keep serving", new.pid)
                self.current[slot] = old
                nursery.start_soon(self._stop_worker, new)
                return
            nursery.start_soon(self._stop_worker, old)
        logger.info("Rolling restart complete")

    async def _reload(self, nursery: trio.Nursery) -> None:
        # Stop first (unlike SIGHUP): in development the old code must not answer, and the
        # new worker may need ports (HTTP/3) that only one process can hold.
        async with trio.open_nursery() as stoppers:
            for w in list(self.current.values()):
                stoppers.start_soon(self._stop_worker, w)
        for slot in range(self.workers):
            await self._spawn(nursery, slot)

    async def _respawn_later(self, slot: int, delay: float) -> None:
        await trio.sleep(delay)
        await self._events_send.send(("respawn", slot))

    async def _on_exit(self, nursery: trio.Nursery, w: _Worker) -> int | None:
        code = w.process.returncode
        if w.retiring or self.current.get(w.slot) is not w:
            logger.info("Worker %d stopped (status %s)", w.pid, code)
            return None
        del self.current[w.slot]
        if self.reload_dirs is not None:
            logger.error("Worker %d exited with status %s: waiting for a file to change",
                         w.pid, code)
            return None
        if w.ready_at is None and not self.ever_ready and code in _FATAL_AT_START:
            logger.error("Worker %d failed to start (status %s): stopping", w.pid, code)
            return code
        lived = trio.current_time() - w.ready_at if w.ready_at is not None else 0.0
        crashes = 1 if lived > _STABLE_AFTER else self._crashes.get(w.slot, 0) + 1
        self._crashes[w.slot] = crashes
        delay = min(_BACKOFF_FIRST * 2 ** (crashes - 1), _BACKOFF_MAX)
        logger.error("Worker %d exited unexpectedly (status %s): restarting in %.1f s",
                     w.pid, code, delay)
        nursery.start_soon(self._respawn_later, w.slot, delay)
        return None

    async def _loop(self, nursery: trio.Nursery) -> int:
        async for event in self._events:
            kind = event[0]
            if kind == "exited":
                status = await self._on_exit(nursery, event[1])
                if status is not None:
                    return status
            elif kind == "retiring":
                retiring: _Worker = event[1]
                if self.current.get(retiring.slot) is retiring:
                    retiring.retiring = True
                    await self._spawn(nursery, retiring.slot)
            elif kind == "respawn":
                if event[1] not in self.current:
                    await self._spawn(nursery, event[1])
            elif kind == "hup":
                if self.reload_dirs is not None:
                    await self._reload(nursery)
                else:
                    await self._rolling_restart(nursery)
            elif kind == "changed":
                logger.info("Changes detected in %s: reloading", event[1])
                await self._reload(nursery)
        raise AssertionError("the event channel never closes")  # pragma: no cover

    async def _signals(self, signals: Any) -> None:
        async for signum in signals:
            if signum == signal.SIGHUP:
                await self._events_send.send(("hup",))
            else:
                logger.info("Received %s: stopping %d workers gracefully (at most %s s)",
                            signal.Signals(signum).name, len(self.live), self.graceful_timeout)
                self._stop.cancel()
                return

    async def _watch_files(self) -> None:
        from watchfiles import PythonFilter, awatch

        assert self.reload_dirs is not None
        logger.info("Watching %s for changes", ", ".join(self.reload_dirs))
        async for changes in awatch(*self.reload_dirs, watch_filter=PythonFilter(),
                                    debounce=300, step=50, rust_timeout=500):
            await self._events_send.send(("changed", _describe_changes(changes)))

    async def run(self, signals: Any, *, metrics_bind: str | None = None) -> int:
        """Start the workers and supervise them until a stop signal (status 0) or a fatal
        startup failure (its status). Every worker has exited when this returns."""
        status = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._signals, signals)
            if metrics_bind is not None:
                await start_metrics(nursery, metrics_bind, self.statistics)
            if self.reload_dirs is not None:
                nursery.start_soon(self._watch_files)
            with self._stop:
                for slot in range(self.workers):
                    await self._spawn(nursery, slot)
                status = await self._loop(nursery)
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + self.graceful_timeout + 10
                async with trio.open_nursery() as stoppers:
                    for w in list(self.live):
                        stoppers.start_soon(self._stop_worker, w)
            nursery.cancel_scope.cancel()
        return status


async def supervise(
    settings: dict[str, Any],
    binds: Sequence[str | Bind],
    config: Config,
    *,
    workers: int,
    reload_dirs: Sequence[str] | None,
    max_requests: int | None,
    max_requests_jitter: int,
    metrics_bind: str | None,
) -> int:
    """Open the listeners, then run a :class:`Supervisor` until stopped; return the status."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        listeners: list[HTTPListener] = await open_http_listeners(binds, config=config)
        try:
            for lst in listeners:
                logger.info("Serving on %s", describe_url(lst.url, config.h2c))
            logger.info("Supervisor %d running %d worker%s%s; press CTRL+C to stop",
                        os.getpid(), workers, "" if workers == 1 else "s",
                        " with reload" if reload_dirs is not None else "")
            sup = Supervisor(
                settings, [(lst.listener.socket.fileno(), lst.tls) for lst in listeners],
                workers=workers, graceful_timeout=config.graceful_timeout,
                startup_timeout=config.startup_timeout + 30, reload_dirs=reload_dirs,
                max_requests=max_requests, max_requests_jitter=max_requests_jitter,
                send_stats=metrics_bind is not None,
            )
            return await sup.run(signals, metrics_bind=metrics_bind)
        finally:
            for lst in listeners:
                lst.listener.socket.close()


def _describe_changes(changes: set[tuple[Any, str]]) -> str:
    names = sorted({os.path.basename(path) for _, path in changes})
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


# --- the worker's side ---------------------------------------------------------------------

def worker_main(spec_text: str) -> int:
    """Entry point of a worker process (``python -m trio_http`` with ``SPEC_ENV`` set)."""
    from ._cli import config_from_args, configure_from_args, load_app

    spec = json.loads(spec_text)
    args = argparse.Namespace(**spec["settings"])
    # A terminal's hangup is the supervisor's business (SIGHUP: rolling restart).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        configure_from_args(args)
        config = config_from_args(args)
        app = load_app(args, config)
    except ConfigError as exc:
        print(f"trio_http: error: {exc}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        return 2
    binds = [Bind("fd", fd=fd, tls=tls) for fd, tls in spec["binds"]]
    for fd, _ in spec["binds"]:
        os.set_inheritable(fd, False)
    link = WorkerLink(spec["pipe_fd"], parent_pid=spec["ppid"],
                      max_requests=spec["max_requests"], send_stats=spec["send_stats"])
    return exit_status(_worker, app, binds, config, link)


async def _worker(app: Any, binds: list[Bind], config: Config, link: WorkerLink) -> None:
    await run_server(app, binds, config, link=link)
