"""One connection, from accept to close: TLS handshake (in this task, under a timeout),
protocol selection (ALPN or the first bytes), then HTTP/1.1 or HTTP/2, including the switch
from HTTP/1.1 to HTTP/2 after ``Upgrade: h2c``. Any failure ends this connection only."""

from __future__ import annotations

import logging
import socket as stdlib_socket
import ssl
import sys
from typing import Any

import trio

from ._asgi import error_logger, wrap_app
from ._config import Config
from ._context import ServerContext
from ._extensions import H1_EXTENSIONS, H2_EXTENSIONS, with_extensions
from ._h1_server import H1Server
from ._h2_server import H2Server
from ._proxy import accept_proxy_protocol
from ._sansio._scope import ConnectionInfo
from ._sansio._select import select_protocol
from ._sockio import set_notsent_lowat
from ._tls import tls_handshake
from ._tls_extension import tls_extension
from ._websocket import H1WebSocket

__all__ = ["handle_asgi_stream", "serve_connection"]

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)
#: Seconds, and bytes read and dropped, that a closing connection waits for the peer to close
#: its side (see _close).
LINGER_TIMEOUT = 2.0
LINGER_BYTES = 1 << 20
#: Seconds a connection that has not yet sent its first request still gets once graceful
#: shutdown begins (one accepted an instant before: rolling restarts refuse nothing).
FIRST_REQUEST_GRACE = 1.0
#: Exceptions that must leave a connection task: cancellation and interpreter exits.
_FATAL = (trio.Cancelled, KeyboardInterrupt, SystemExit, GeneratorExit)


def _addresses(stream: trio.abc.Stream) -> tuple[Any, Any]:
    inner: Any = stream
    while isinstance(inner, trio.SSLStream):
        inner = inner.transport_stream
    sock = getattr(inner, "socket", None)
    if sock is None:
        return None, None
    try:
        peer, local = sock.getpeername(), sock.getsockname()
    except OSError:
        return None, None
    if sock.family == stdlib_socket.AF_UNIX:
        return None, (local if isinstance(local, str) else local.decode(), None)
    return (peer[0], peer[1]), (local[0], local[1])


class _Connection:
    """What the server sees of a live connection; forwards shutdown to the current handler."""

    __slots__ = ("handler", "idle_scope", "shutdown")

    def __init__(self) -> None:
        self.handler: H1Server | H2Server | H1WebSocket | None = None
        self.idle_scope: trio.CancelScope | None = None
        self.shutdown = False

    def begin_shutdown(self) -> None:
        self.shutdown = True
        if self.handler is not None:
            self.handler.begin_shutdown()
        elif self.idle_scope is not None:
            self.idle_scope.deadline = min(self.idle_scope.deadline,
                                           trio.current_time() + FIRST_REQUEST_GRACE)


async def serve_connection(
    stream: trio.abc.Stream,
    ctx: ServerContext,
    *,
    ssl_context: ssl.SSLContext | None = None,
    cancel_scope: trio.CancelScope | None = None,
) -> None:
    """Serve ``stream`` until it closes. Never raises for anything the peer or the app does;
    internal errors are logged with the peer's address and end this connection only."""
    config = ctx.config
    conn = _Connection()
    ctx.register(conn, cancel_scope if cancel_scope is not None else trio.CancelScope())
    ctx.counters.connections_total += 1
    ctx.counters.connections_open += 1
    client, server = _addresses(stream)
    if config.tcp_notsent_lowat is not None:
        set_notsent_lowat(stream, config.tcp_notsent_lowat)
    try:
        alpn = None
        early = b""
        if config.proxy_protocol:
            accepted = await accept_proxy_protocol(
                stream, config, client, server, tls=ssl_context is not None
            )
            if accepted is None:
                return
            stream, client, server, early = accepted
        if ssl_context is not None:
            stream = trio.SSLStream(stream, ssl_context, server_side=True)
        extensions: dict[str, Any] = dict(ctx.extensions)
        if isinstance(stream, trio.SSLStream):
            try:
                alpn = await tls_handshake(stream, config.tls_handshake_timeout) or "http/1.1"
            except (trio.TooSlowError, *_STREAM_ERRORS, ssl.SSLError, OSError):
                ctx.counters.tls_handshake_failures += 1
                return
            extensions["tls"] = tls_extension(stream, config.certfile)
        info = ConnectionInfo(
            client=client, server=server, tls=alpn is not None,
            root_path=config.root_path, state=ctx.state, extensions=extensions,
        )
        data = early
        prior_knowledge = config.h2c in ("both", "prior-knowledge")
        proto = (select_protocol(alpn, data, prior_knowledge=prior_knowledge)
                 if alpn or data else None)
        # One deadline for the first bytes, however they trickle in.
        first_bytes_deadline = trio.current_time() + config.keep_alive_timeout
        while proto is None:
            if conn.shutdown:
                # Accepted just before shutdown began: its first request is most likely on
                # its way, and a client cannot safely retry a request it has sent.
                first_bytes_deadline = min(first_bytes_deadline,
                                           trio.current_time() + FIRST_REQUEST_GRACE)
            chunk: bytes | bytearray = b""
            with trio.CancelScope(deadline=first_bytes_deadline) as conn.idle_scope:
                try:
                    chunk = await stream.receive_some(config.read_size)
                except _STREAM_ERRORS:
                    chunk = b""
            conn.idle_scope = None
            if not chunk:
                return
            data += chunk
            proto = select_protocol(alpn, data, prior_knowledge=prior_knowledge)
        if proto == "h2":
            h2_server = H2Server(stream, ctx, with_extensions(info, H2_EXTENSIONS))
            conn.handler = h2_server
            if conn.shutdown:
                h2_server.begin_shutdown()
            await h2_server.run(data)
            return
        h1 = H1Server(stream, ctx, with_extensions(info, H1_EXTENSIONS), data)
        conn.handler = h1
        if conn.shutdown:
            h1.begin_shutdown()
        takeover = await h1.run()
        if takeover is not None and takeover.request.upgrade == b"websocket":
            ws = H1WebSocket(stream, ctx, info, takeover.request, takeover.data)
            conn.handler = ws
            if conn.shutdown:
                ws.begin_shutdown()
            await ws.run()
        elif takeover is not None and takeover.request.upgrade == b"h2c":
            settings = next(v for n, v in takeover.request.headers if n == b"http2-settings")
            h2_server = H2Server(stream, ctx, with_extensions(info, H2_EXTENSIONS))
            conn.handler = h2_server
            if conn.shutdown:
                h2_server.begin_shutdown()
            await h2_server.run(takeover.data, upgrade=(takeover.request, settings, takeover.body))
    except BaseException as exc:
        # A bug in our code or a BaseException from the app, possibly grouped by the HTTP/2
        # nursery (with the Cancelled of its siblings): log it with the peer's address and
        # end this connection only. Cancellation and interpreter exits go on up.
        bugs: BaseException | None
        if isinstance(exc, BaseExceptionGroup):
            fatal, bugs = exc.split(_FATAL)
        elif isinstance(exc, _FATAL):
            raise
        else:
            fatal, bugs = None, exc
        if bugs is not None:
            ctx.counters.internal_errors += 1
            error_logger.error(
                "Internal error on the connection from %s", client, exc_info=bugs
            )
        if fatal is not None:
            raise fatal from None
    finally:
        ctx.counters.connections_open -= 1
        ctx.unregister(conn)
        await _close(stream)


if sys.platform != "win32":
    import fcntl
    import termios

    def _unread_bytes(stream: trio.SocketStream) -> int:
        """Bytes received by the kernel and not read yet (FIONREAD); 0 if it cannot tell."""
        try:
            buf = fcntl.ioctl(stream.socket.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except (OSError, ValueError):
            return 0
        return int.from_bytes(buf, sys.byteorder)

else:  # pragma: no cover - no FIONREAD through fcntl on Windows

    def _unread_bytes(stream: trio.SocketStream) -> int:
        return 0


async def _close(stream: trio.abc.Stream) -> None:
    """Close a connection so that what we sent last (a 400, a GOAWAY) reaches the peer:
    closing a socket with unread input makes the kernel send RST, and the peer then discards
    what it had not read yet. So when input is waiting, send FIN first and read until the peer
    closes too ("lingering close", RFC 9112 §9.6), for at most LINGER_TIMEOUT seconds and
    LINGER_BYTES bytes. A connection with nothing unread closes at once."""
    try:
        if isinstance(stream, trio.SocketStream) and _unread_bytes(stream):
            with trio.move_on_after(LINGER_TIMEOUT):
                await stream.send_eof()
                drained = 0
                while drained < LINGER_BYTES:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    drained += len(data)
    except (*_STREAM_ERRORS, trio.BusyResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def handle_asgi_stream(
    app: Any,
    stream: trio.abc.Stream,
    *,
    config: Config | None = None,
    state: dict[str, Any] | None = None,
) -> None:
    """Serve one connection over any :class:`trio.abc.Stream` (a socket, a TLS stream, an
    in-memory stream pair in tests) with the ASGI ``app``, until the peer closes it.

    A :class:`trio.SSLStream` gets its handshake here, and its ALPN result picks HTTP/2 or
    HTTP/1.1; a plain stream speaks HTTP/1.1 or HTTP/2 with prior knowledge. No lifespan is
    run: pass ``state`` to give scopes a lifespan state. Returns once the connection is closed
    (the stream is closed on return); cancelling it drops the connection at once.
    """
    ctx = ServerContext(wrap_app(app), config or Config(), state=state)
    await serve_connection(stream, ctx)


logging.getLogger("trio_http").addHandler(logging.NullHandler())
