"""Serving: :func:`serve_asgi`, :func:`serve_asgi_listeners`, :func:`open_asgi_server`.

The nursery tree (DESIGN.md): the lifespan wraps everything; inside it a "handlers" nursery
holds an "accept" nursery (one loop per listener) and a task per connection. Cancellation is
the shutdown signal. When it arrives the accept loops stop, every connection is told to
finish (GOAWAY / ``Connection: close``; idle ones close at once), and each connection task's
shielded cancel scope gets the deadline ``now + graceful_timeout``, so shutdown never waits
longer than that. Lifespan shutdown runs last.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ._asgi import wrap_app
from ._config import Bind, Config
from ._connection import serve_connection
from ._context import ServerContext
from ._lifespan import open_lifespan
from ._listeners import HTTPListener, open_http_listeners
from ._proxy import ProxyHeadersMiddleware, trusted_peers
from ._tls import create_ssl_context

if TYPE_CHECKING:
    # aioquic (with cryptography) costs ~0.3 s to import: only servers with quic binds pay it,
    # and so do not test suites that merely load the pytest plugin.
    from ._quic import QuicEndpoint

__all__ = ["RunningServer", "open_asgi_server", "serve_asgi", "serve_asgi_listeners"]

logger = logging.getLogger("trio_http.error")

# accept() errors that mean "out of resources right now", not "this listener is broken"
# (trio.serve_listeners treats them the same way).
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}

#: The scope extension through which an app reaches :meth:`RunningServer.statistics`:
#: ``scope["extensions"]["trio_http.statistics"]["statistics"]()``.
STATISTICS_EXTENSION = "trio_http.statistics"


class RunningServer:
    """What :func:`serve_asgi` hands to ``task_status.started()``: the bound listeners with
    port 0 resolved, and live statistics.

    Apps reach :meth:`statistics` too, through the ``trio_http.statistics`` scope extension:
    ``scope["extensions"]["trio_http.statistics"]["statistics"]()`` (the demo's ``/api/stats``).
    """

    def __init__(
        self,
        listeners: Sequence[HTTPListener],
        ctx: ServerContext,
        quic_endpoints: Sequence[QuicEndpoint] = (),
    ) -> None:
        self.listeners = tuple(listeners)
        self.quic_endpoints = tuple(quic_endpoints)
        self._ctx = ctx

    @property
    def config(self) -> Config:
        return self._ctx.config

    @property
    def urls(self) -> tuple[str, ...]:
        """One URL per listener, e.g. ``("http://127.0.0.1:53211",)``."""
        return tuple(lst.url for lst in self.listeners)

    @property
    def addresses(self) -> tuple[tuple[str, int] | str, ...]:
        """``(host, port)`` per TCP listener (port 0 resolved), the path for unix sockets."""
        return tuple(lst.address for lst in self.listeners)

    @property
    def quic_addresses(self) -> tuple[tuple[str, int], ...]:
        """``(host, port)`` per quic bind (UDP, port 0 resolved)."""
        return tuple(ep.address for ep in self.quic_endpoints)

    @property
    def http3_urls(self) -> tuple[str, ...]:
        """One ``https://`` URL per quic bind, e.g. ``("https://127.0.0.1:4433",)``."""
        return tuple(
            f"https://[{h}]:{p}" if ":" in h else f"https://{h}:{p}"
            for h, p in self.quic_addresses
        )

    @property
    def port(self) -> int:
        """The port of the first TCP listener (convenient with port 0)."""
        for addr in self.addresses:
            if isinstance(addr, tuple):
                return addr[1]
        raise LookupError("no TCP listener")

    @property
    def state(self) -> dict[str, Any] | None:
        """The lifespan state (``None`` without lifespan)."""
        return self._ctx.state

    def statistics(self) -> dict[str, Any]:
        """Counters: connections open and total, requests total, streams open, app and
        protocol errors, TLS handshake failures, whether shutdown has begun."""
        c = self._ctx.counters
        return {
            "connections_open": c.connections_open,
            "connections_total": c.connections_total,
            "requests_total": c.requests_total,
            "streams_open": c.streams_open,
            "app_errors": c.app_errors,
            "protocol_errors": c.protocol_errors,
            "tls_handshake_failures": c.tls_handshake_failures,
            "internal_errors": c.internal_errors,
            "websockets_open": c.websockets_open,
            "websockets_total": c.websockets_total,
            "shutting_down": self._ctx.shutting_down,
            "quic": [ep.statistics() for ep in self.quic_endpoints],
        }


async def _accept_loop(
    listener: HTTPListener,
    ctx: ServerContext,
    handlers: trio.Nursery,
    limiter: trio.CapacityLimiter | None,
) -> None:
    ssl_context = create_ssl_context(ctx.config) if listener.tls else None
    while True:
        token = object()
        if limiter is not None:
            await limiter.acquire_on_behalf_of(token)
        try:
            stream = await listener.listener.accept()
        except OSError as exc:
            if limiter is not None:
                limiter.release_on_behalf_of(token)
            if exc.errno in _ACCEPT_CAPACITY_ERRNOS:
                logger.error("accept() on %s failed (%s); retrying in 0.1 s", listener.url, exc)
                await trio.sleep(0.1)
                continue
            raise
        except BaseException:
            if limiter is not None:
                limiter.release_on_behalf_of(token)
            raise
        handlers.start_soon(_connection_task, stream, ctx, ssl_context, limiter, token)


async def _connection_task(
    stream: trio.abc.Stream,
    ctx: ServerContext,
    ssl_context: Any,
    limiter: trio.CapacityLimiter | None,
    token: object,
) -> None:
    # Shielded so that the server's cancellation does not cut requests short: graceful
    # shutdown gives this scope a deadline instead (ServerContext.begin_shutdown).
    try:
        with trio.CancelScope(shield=True) as scope:
            await serve_connection(stream, ctx, ssl_context=ssl_context, cancel_scope=scope)
    finally:
        if limiter is not None:
            limiter.release_on_behalf_of(token)


async def serve_asgi_listeners(
    app: Any,
    listeners: Sequence[HTTPListener],
    *,
    config: Config | None = None,
    handler_nursery: trio.Nursery | None = None,
    quic_sockets: Sequence[trio.socket.SocketType] = (),
    task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``app`` on already-open ``listeners`` (see :func:`open_http_listeners`).

    Runs lifespan startup, then calls ``task_status.started(RunningServer)``. Never returns;
    cancel it to shut down gracefully (at most ``config.graceful_timeout`` seconds for
    in-flight requests, then lifespan shutdown). Connection tasks run in ``handler_nursery``
    when given. ``quic_sockets`` are bound UDP sockets (see ``config.quic_binds``) served
    with HTTP/3, each by an endpoint task in the handlers nursery; TCP responses then carry
    ``alt-svc`` naming the first one (unless ``config.alt_svc`` is off). Raises
    :class:`LifespanFailure` if startup fails. Closes the listeners and sockets on exit.
    """
    config = config or Config()
    app = wrap_app(app)
    if config.proxy_headers:
        app = ProxyHeadersMiddleware(app, trusted_peers(config.forwarded_allow_ips))
    try:
        async with open_lifespan(app, config) as state:
            ctx = ServerContext(app, config, state=state)
            endpoints: list[QuicEndpoint] = []
            if quic_sockets:
                from ._quic import QuicEndpoint, serve_quic_endpoint

                endpoints = [QuicEndpoint(sock, ctx) for sock in quic_sockets]
            running = RunningServer(listeners, ctx, endpoints)
            ctx.extensions[STATISTICS_EXTENSION] = {"statistics": running.statistics}
            if endpoints and config.alt_svc:
                ctx.alt_svc = f'h3=":{endpoints[0].address[1]}"; ma=3600'.encode()
            limiter = (
                trio.CapacityLimiter(config.max_connections) if config.max_connections else None
            )
            async with trio.open_nursery() as handlers:
                for endpoint in endpoints:
                    handlers.start_soon(serve_quic_endpoint, endpoint)
                try:
                    async with trio.open_nursery() as accept:
                        accept.start_soon(ctx.head_timeouts.run)
                        for lst in listeners:
                            accept.start_soon(
                                _accept_loop, lst, ctx, handler_nursery or handlers, limiter
                            )
                        task_status.started(running)
                finally:
                    # Refuse new connections now rather than after the drain: one left in
                    # the backlog would wait out the graceful period and then be reset.
                    for lst in listeners:
                        lst.listener.socket.close()
                    ctx.begin_shutdown()
            raise AssertionError("accept loops never return")  # pragma: no cover
    finally:
        for lst in listeners:
            lst.listener.socket.close()
        for sock in quic_sockets:
            sock.close()


async def serve_asgi(
    app: Any,
    *,
    binds: Sequence[str | Bind],
    config: Config | None = None,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the ASGI ``app`` (ASGI 3, or ASGI 2 detected and wrapped) on ``binds``.

    ``binds`` are strings as on the command line (``"127.0.0.1:0"``, ``"[::1]:8443"``,
    ``"unix:/run/app.sock"``, ``"fd://3"``) or :class:`Bind` objects; they serve TLS when
    ``config.certfile`` is set. Use as ``server = await nursery.start(serve_asgi, app,
    binds=[...])``: ``server`` is a :class:`RunningServer` with the bound addresses.

    Never returns; cancellation is a graceful shutdown (stop accepting, GOAWAY or
    ``Connection: close``, at most ``graceful_timeout`` seconds for requests in flight, then
    lifespan shutdown). ``config.quic_binds`` add HTTP/3 over UDP beside the TCP binds.
    Raises :class:`BindError` if a bind cannot be opened,
    :class:`ConfigError` for a bad bind or certificate, :class:`LifespanFailure` if startup fails.
    """
    config = config or Config()
    if config.tls_enabled:
        create_ssl_context(config)  # fail early, before binding, on unreadable certificates
    listeners = await open_http_listeners(binds, config=config)
    try:
        quic_sockets: list[trio.socket.SocketType] = []
        if config.quic_binds:
            from ._quic import open_quic_sockets

            quic_sockets = await open_quic_sockets(config)
    except BaseException:
        for lst in listeners:
            lst.listener.socket.close()
        raise
    await serve_asgi_listeners(
        app, listeners, config=config, handler_nursery=handler_nursery,
        quic_sockets=quic_sockets, task_status=task_status,
    )


@asynccontextmanager
async def open_asgi_server(
    app: Any, *, binds: Sequence[str | Bind] = ("127.0.0.1:0",), config: Config | None = None
) -> AsyncIterator[RunningServer]:
    """Run :func:`serve_asgi` for the duration of the ``async with`` block and yield its
    :class:`RunningServer`. Leaving the block shuts the server down gracefully."""
    async with trio.open_nursery() as nursery:
        server: RunningServer = await nursery.start(
            partial(serve_asgi, app, binds=binds, config=config)
        )
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
