"""What every connection of one server shares: the app, the config, lifespan state, the set of
live connections (for graceful shutdown) and the counters behind ``statistics()``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from ._asgi import DEFAULT_SERVER, http_date
from ._config import Config
from ._head_timeouts import HeadTimeouts
from ._sansio._limits import ServerNames
from ._types import ASGIApp, Headers


class Shutdownable(Protocol):
    """A live connection, as the server sees it during graceful shutdown."""

    def begin_shutdown(self) -> None:
        """Stop taking new requests: GOAWAY / ``Connection: close``; close at once if idle."""


@dataclass
class Counters:
    """Plain counters; read through ``RunningServer.statistics()``."""

    connections_total: int = 0
    connections_open: int = 0
    requests_total: int = 0
    requests_by_protocol: dict[str, int] = field(default_factory=dict)
    streams_open: int = 0
    app_errors: int = 0
    protocol_errors: int = 0
    tls_handshake_failures: int = 0
    #: Connections ended by an internal error (logged with the peer's address).
    internal_errors: int = 0
    websockets_open: int = 0
    websockets_total: int = 0


class ServerContext:
    """Shared by all connections of a server. ``state`` is the lifespan state (copied into
    each scope); ``shutting_down`` flips once when graceful shutdown begins, after which each
    connection task's cancel scope carries the shutdown deadline."""

    def __init__(
        self, app: ASGIApp, config: Config, *, state: dict[str, Any] | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.state = state
        self.counters = Counters()
        self.shutting_down = False
        self.shutdown_deadline = math.inf
        self._live: dict[Shutdownable, trio.CancelScope] = {}
        self.access_log = config.access_logfile is not None
        #: HTTP/1.1 request-head timeouts, armed just in time (its task runs in serve_asgi).
        self.head_timeouts = HeadTimeouts.for_timeouts(
            config.keep_alive_timeout, config.request_head_timeout
        )
        #: ``alt-svc`` value added to TCP responses (set when HTTP/3 is served, RFC 7838).
        self.alt_svc: bytes | None = None
        #: Scope extensions of every connection of this server (each adds its own, ``tls``...).
        self.extensions: dict[str, dict[str, Any]] = {}
        self._date: bytes | None = None
        self._defaults: Headers | None = None
        self._defaults_without_alt_svc: Headers = []
        #: The hosts served (None: every host), for each protocol's request checks.
        self.server_names = ServerNames(config.server_names) if config.server_names else None
        self._custom: Headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in config.response_headers
        ]
        custom_names = {name for name, _ in self._custom}
        self._server_default = config.server_header and b"server" not in custom_names
        self._alt_svc_default = b"alt-svc" not in custom_names

    def default_fields(self, *, alt_svc: bool = True) -> Headers:
        """The fields a response gets unless the app set them: ``server``, ``date`` (each if
        enabled), ``Config.response_headers`` and, with ``alt_svc``, ``alt-svc`` when HTTP/3
        is served (a configured field of the same name takes the place of either). The lists are
        rebuilt only when the date changes (once a second); callers must not modify them."""
        date = http_date() if self.config.date_header else None
        if date is not self._date or self._defaults is None:
            fields: Headers = []
            if self._server_default:
                fields.append((b"server", DEFAULT_SERVER))
            if date is not None:
                fields.append((b"date", date))
            fields += self._custom
            self._defaults_without_alt_svc = fields
            self._defaults = (
                [*fields, (b"alt-svc", self.alt_svc)]
                if self.alt_svc is not None and self._alt_svc_default else fields
            )
            self._date = date
        return self._defaults if alt_svc else self._defaults_without_alt_svc

    def register(self, conn: Shutdownable, scope: trio.CancelScope) -> None:
        """Track a connection; if shutdown has begun, tell it at once."""
        self._live[conn] = scope
        if self.shutting_down:
            scope.deadline = self.shutdown_deadline
            conn.begin_shutdown()

    def unregister(self, conn: Shutdownable) -> None:
        self._live.pop(conn, None)

    def begin_shutdown(self) -> None:
        """Graceful shutdown: every connection stops taking requests and has until
        ``graceful_timeout`` seconds from now to finish; then it is cancelled."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self.shutdown_deadline = trio.current_time() + self.config.graceful_timeout
        for conn, scope in list(self._live.items()):
            scope.deadline = self.shutdown_deadline
            conn.begin_shutdown()

    @property
    def live_connections(self) -> int:
        return len(self._live)
