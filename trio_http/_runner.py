"""Running one server process from the command line: signals, the metrics listener, the
``Serving on`` lines, the pid file, systemd socket activation, and, in a worker process, the
link to the supervisor (readiness, ``--max-requests``, statistics, the parent's death).

A worker speaks to its supervisor through a pipe of text lines: ``ready`` once it serves,
``retiring`` when it has reached ``--max-requests`` (the supervisor starts its replacement at
once), and ``stats <json>`` every second when the supervisor serves metrics.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import trio

from ._config import Bind, Config
from ._errors import BindError, ConfigError, LifespanFailure
from ._metrics import MetricsApp
from ._serve import RunningServer, serve_asgi

__all__ = [
    "WorkerLink",
    "describe_url",
    "exit_status",
    "remove_pid_file",
    "run_server",
    "systemd_binds",
    "write_pid_file",
]

logger = logging.getLogger("trio_http.error")

#: Seconds between two looks at the request count, the parent and the statistics.
_POLL_INTERVAL = 0.1
_STATS_INTERVAL = 1.0


_H2C = {
    "both": "HTTP/2 cleartext: prior knowledge and Upgrade: h2c",
    "prior-knowledge": "HTTP/2 cleartext: prior knowledge",
    "upgrade": "HTTP/2 cleartext: Upgrade: h2c",
}


def describe_url(url: str, h2c: str = "both") -> str:
    """``url`` with the protocols it serves, for the startup log."""
    if url.startswith("https"):
        return f"{url} (HTTP/1.1, HTTP/2 over TLS with ALPN)"
    if h2c not in _H2C:
        return f"{url} (HTTP/1.1)"
    return f"{url} (HTTP/1.1, {_H2C[h2c]})"


def systemd_binds(environ: dict[str, str] | None = None) -> list[str]:
    """``fd://N`` binds for sockets passed by systemd socket activation (``LISTEN_PID`` is this
    process, ``LISTEN_FDS`` sockets from fd 3; sd_listen_fds(3)). The variables are removed so
    that child processes do not take the sockets for theirs."""
    env = os.environ if environ is None else environ
    try:
        pid, count = int(env.get("LISTEN_PID", "")), int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if pid != os.getpid() or count < 1:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    return [f"fd://{fd}" for fd in range(3, 3 + count)]


def write_pid_file(path: str) -> None:
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")


def remove_pid_file(path: str) -> None:
    try:
        with open(path) as f:
            if f.read().strip() != str(os.getpid()):
                return  # another process has taken it over
        os.unlink(path)
    except OSError:
        pass


class WorkerLink:
    """The worker's end of the pipe to its supervisor (an inherited write-only fd)."""

    def __init__(
        self, fd: int, *, parent_pid: int, max_requests: int | None, send_stats: bool
    ) -> None:
        os.set_inheritable(fd, False)  # not into the app's own subprocesses
        self._stream = trio.lowlevel.FdStream(fd)
        self.parent_pid = parent_pid
        self.max_requests = max_requests
        self.send_stats = send_stats

    async def send(self, line: str) -> None:
        try:
            await self._stream.send_all(line.encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the supervisor is gone: noticed by the parent check

    async def run(self, server: RunningServer, stop: trio.CancelScope) -> None:
        """Report readiness, then watch the request count, the parent and the statistics;
        cancel ``stop`` (graceful shutdown) when the worker should go."""
        await self.send("ready")
        next_stats = trio.current_time()
        while True:
            stats = server.statistics()
            if self.max_requests is not None and stats["requests_total"] >= self.max_requests:
                logger.info("Worker %d served %d requests (max-requests): shutting down",
                            os.getpid(), stats["requests_total"])
                await self.send("retiring")
                stop.cancel()
                return
            if os.getppid() != self.parent_pid:
                logger.warning("Supervisor %d is gone: worker %d shutting down",
                               self.parent_pid, os.getpid())
                stop.cancel()
                return
            if self.send_stats and trio.current_time() >= next_stats:
                await self.send("stats " + json.dumps(stats, default=str))
                next_stats = trio.current_time() + _STATS_INTERVAL
            await trio.sleep(_POLL_INTERVAL)

    async def aclose(self) -> None:
        await self._stream.aclose()


async def run_server(
    app: Any,
    binds: Sequence[str | Bind],
    config: Config,
    *,
    metrics_bind: str | None = None,
    link: WorkerLink | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM (graceful shutdown), or until ``link`` says to stop.
    Raises as :func:`serve_asgi` does."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server: RunningServer = await nursery.start(
                partial(serve_asgi, app, binds=binds, config=config)
            )
            if link is None:
                for url in server.urls:
                    logger.info("Serving on %s", describe_url(url, config.h2c))
                for url in server.http3_urls:
                    logger.info("Serving on %s (HTTP/3 over QUIC, UDP)", url)
            if metrics_bind is not None:
                await start_metrics(nursery, metrics_bind, lambda: {"": server.statistics()})
            if link is not None:
                logger.info("Worker %d ready", os.getpid())
                nursery.start_soon(link.run, server, nursery.cancel_scope)
            else:
                logger.info("Press CTRL+C to stop")
            async for signum in signals:
                logger.info("Received %s: shutting down gracefully (at most %s s)",
                            signal.Signals(signum).name, config.graceful_timeout)
                nursery.cancel_scope.cancel()
                break
    if link is not None:
        await link.aclose()


async def start_metrics(
    nursery: trio.Nursery, bind: str, source: Callable[[], dict[str, dict[str, Any]]]
) -> RunningServer:
    """Serve ``source()`` in the Prometheus format on ``bind`` (plain HTTP) in ``nursery``."""
    metrics: RunningServer = await nursery.start(partial(
        serve_asgi, MetricsApp(source), binds=[bind],
        config=Config(lifespan="off", graceful_timeout=1.0),
    ))
    for url in metrics.urls:
        logger.info("Metrics on %s/metrics", url)
    return metrics


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def exit_status(fn: Callable[..., Any], *args: Any) -> int:
    """``trio.run(fn, *args)``, mapped to the CLI's exit statuses: 0 after a graceful stop,
    1 bind failure, 2 configuration error, 3 lifespan startup failure."""
    status = 0
    try:
        result = trio.run(fn, *args)
        if isinstance(result, int):
            status = result
    except* BindError as group:
        print(f"trio_http: error: {_first(group)}", file=sys.stderr)
        status = 1
    except* ConfigError as group:
        print(f"trio_http: error: {_first(group)}", file=sys.stderr)
        status = 2
    except* LifespanFailure as group:
        print(f"trio_http: error: {_first(group)}", file=sys.stderr)
        status = 3
    except* KeyboardInterrupt:
        pass
    return status
