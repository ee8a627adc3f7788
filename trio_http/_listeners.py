"""Opening listeners for binds: TCP (IPv4/IPv6), unix sockets and inherited file descriptors.
All-or-nothing: if one bind fails, the ones already opened are closed and :class:`BindError`
is raised."""

from __future__ import annotations

import contextlib
import errno
import os
import socket as stdlib_socket
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from ._config import Bind, Config, parse_bind
from ._errors import BindError

__all__ = ["HTTPListener", "open_http_listeners"]


@dataclass(eq=False)
class HTTPListener:
    """A listening socket and how to serve it. ``tls`` says whether connections start with a
    TLS handshake; ``bind`` is the bind it came from."""

    listener: trio.SocketListener
    bind: Bind
    tls: bool
    _address: tuple[str, int] | str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Resolved while the socket is open: it is closed as soon as shutdown begins, and
        # RunningServer still reports where it served.
        name = self.listener.socket.getsockname()
        self._address = os.fsdecode(name) if isinstance(name, (bytes, str)) else (name[0], name[1])

    @property
    def address(self) -> tuple[str, int] | str:
        """The bound address: ``(host, port)`` with port 0 resolved, or a unix socket path."""
        return self._address

    @property
    def url(self) -> str:
        """``http(s)://host:port`` or ``http+unix://path``."""
        addr = self.address
        scheme = "https" if self.tls else "http"
        if isinstance(addr, str):
            return f"{scheme}+unix://{addr}"
        host = addr[0]
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{addr[1]}"


async def _open_unix(bind: Bind, backlog: int, mode: int | None = None) -> trio.SocketListener:
    path = bind.path
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a stale socket from an earlier run
    sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        if mode is not None:
            os.chmod(path, mode)  # before listen(): no connection gets in under the umask's bits
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


def _open_fd(bind: Bind, backlog: int) -> trio.SocketListener:
    raw = stdlib_socket.socket(fileno=bind.fd)
    if raw.type != stdlib_socket.SOCK_STREAM:
        raw.detach()
        raise BindError(f"fd://{bind.fd} is not a stream socket")
    raw.listen(backlog)
    return trio.SocketListener(trio.socket.from_stdlib_socket(raw))


async def open_http_listeners(
    binds: Sequence[str | Bind], *, config: Config | None = None
) -> list[HTTPListener]:
    """Open a listener for each bind (a ``HOST:PORT`` host may give several, one per address).

    A bind's ``tls`` defaults to whether ``config`` has a certificate. Raises
    :class:`BindError` (an :class:`OSError`) if any bind cannot be opened, after closing the
    others; :class:`~trio_http.ConfigError` for a malformed bind string.
    """
    config = config or Config()
    parsed = [parse_bind(b, tls=config.tls_enabled) for b in binds]
    opened: list[HTTPListener] = []
    try:
        for bind in parsed:
            tls = bool(bind.tls)
            try:
                if bind.kind == "tcp":
                    host = None if bind.host in ("", "*") else bind.host
                    for lst in await trio.open_tcp_listeners(
                        bind.port, host=host, backlog=config.backlog
                    ):
                        opened.append(HTTPListener(lst, bind, tls))
                elif bind.kind == "unix":
                    opened.append(HTTPListener(
                        await _open_unix(bind, config.backlog, config.unix_socket_mode), bind, tls
                    ))
                else:
                    opened.append(HTTPListener(_open_fd(bind, config.backlog), bind, tls))
            except OSError as exc:
                if isinstance(exc, BindError):
                    raise
                reason = "address already in use" if exc.errno == errno.EADDRINUSE else str(exc)
                raise BindError(f"cannot listen on {bind}: {reason}") from exc
    except BaseException:
        for h in opened:
            h.listener.socket.close()
        raise
    return opened
