"""QUIC endpoints: one UDP socket per quic bind, one task reading it and routing each datagram
by destination connection ID (RFC 9000 §5.2) to the task of its QUIC connection
(:class:`~._h3_server.H3Server`).

The reader never blocks on a connection: each connection has an inbox of
:data:`~._h3_server.INBOX_DATAGRAMS` datagrams filled with ``send_nowait``, and a datagram for
a full inbox is dropped (QUIC retransmits). Datagrams that parse as no QUIC packet, or name a
connection we do not know, are dropped and counted; only a client Initial of at least 1200
bytes (RFC 9000 §14.1) creates a connection, and only while there are fewer than
``quic_max_connections`` connections and fewer than half that many still in their handshake.
With ``quic_retry`` the client must first prove its address with a Retry token (RFC 9000
§8.1.2), so no per-connection state is kept for spoofed addresses.

Sending: a connection's sender task writes its datagrams to the socket directly when the
socket takes them at once and nothing is queued before them; otherwise they join the
endpoint's outbox (a channel of :data:`OUTBOX_BATCHES` batches, one connection flush each),
which the endpoint's single writer task drains, waiting for the socket to be writable.
"""

from __future__ import annotations

import errno
import logging
import os
import socket as stdlib_socket
from typing import TYPE_CHECKING, Any

import trio
from aioquic.buffer import Buffer  # type: ignore[attr-defined]  # re-exported from _buffer
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import (
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler

from ._config import Config, parse_bind
from ._errors import BindError, ConfigError
from ._extensions import H3_EXTENSIONS
from ._h3_server import H3Server
from ._sansio._http3 import H3Connection
from ._sansio._scope import ConnectionInfo
from ._tls_extension import quic_tls_extension

if TYPE_CHECKING:
    from ._context import ServerContext

__all__ = ["OUTBOX_BATCHES", "QuicEndpoint", "open_quic_sockets", "serve_quic_endpoint"]

logger = logging.getLogger("trio_http.error")

#: Connection flushes queued for the endpoint's writer before a connection's sender waits.
OUTBOX_BATCHES = 256
_CID_LENGTH = 8  # bytes; our connection IDs, and how short headers are parsed
_MIN_INITIAL = 1200  # bytes: smallest client Initial datagram (RFC 9000 §14.1)
_RECV_SIZE = 65536
_SOCKET_BUFFER = 1 << 21  # bytes asked of the kernel for each direction; it may give less

Datagrams = list[tuple[bytes, Any]]


async def open_quic_sockets(config: Config) -> list[trio.socket.SocketType]:
    """Bind one UDP socket per ``config.quic_binds`` entry (``HOST:PORT``, ``[IPv6]:PORT``;
    port 0 picks a free port). All or nothing: raises :class:`BindError` (and closes what
    was opened) if one fails, :class:`ConfigError` for a bind that is not host and port."""
    socks: list[trio.socket.SocketType] = []
    try:
        for text in config.quic_binds:
            bind = parse_bind(text)
            if bind.kind != "tcp":
                raise ConfigError(f"quic bind {text!r}: QUIC needs HOST:PORT")
            try:
                infos = await trio.socket.getaddrinfo(
                    bind.host, bind.port, type=stdlib_socket.SOCK_DGRAM
                )
                family, _, _, _, sockaddr = infos[0]
                sock = trio.socket.socket(family, stdlib_socket.SOCK_DGRAM)
                socks.append(sock)
                for opt in (stdlib_socket.SO_RCVBUF, stdlib_socket.SO_SNDBUF):
                    try:
                        sock.setsockopt(stdlib_socket.SOL_SOCKET, opt, _SOCKET_BUFFER)
                    except OSError:
                        pass
                await sock.bind(sockaddr)
            except OSError as exc:
                raise BindError(f"cannot bind quic {text}: {exc}") from exc
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _server_configuration(config: Config) -> QuicConfiguration:
    if config.certfile is None:
        raise ConfigError("quic_binds need a TLS certificate (certfile)")
    qc = QuicConfiguration(
        alpn_protocols=list(H3_ALPN),
        is_client=False,
        idle_timeout=config.quic_idle_timeout,
        connection_id_length=_CID_LENGTH,
    )
    try:
        qc.load_cert_chain(config.certfile, config.keyfile, password=config.keyfile_password)
    except Exception as exc:  # cryptography raises ValueError/TypeError for bad PEM
        raise ConfigError(f"cannot load the certificate for QUIC: {exc}") from exc
    return qc


class QuicEndpoint:
    """One UDP socket serving HTTP/3 over QUIC: the routing table from connection IDs to
    connections, the outbox, and the counters behind :meth:`statistics`."""

    def __init__(self, sock: trio.socket.SocketType, ctx: ServerContext) -> None:
        cfg = ctx.config
        self.sock = sock
        self.ctx = ctx
        self.configuration = _server_configuration(cfg)
        self._raw: stdlib_socket.socket | None = None  # see serve()
        self.routes: dict[bytes, H3Server] = {}
        self.connections: set[H3Server] = set()
        self.handshaking = 0
        self.max_connections = cfg.quic_max_connections
        self.max_handshakes = max(1, cfg.quic_max_connections // 2)
        self.retry = QuicRetryTokenHandler() if cfg.quic_retry else None
        self.closing = False
        self._outbox, self._outbox_recv = trio.open_memory_channel[Datagrams](OUTBOX_BATCHES)
        self._queued = 0  # batches in the outbox or being written
        self._reader_scope = trio.CancelScope()
        self.stats = dict.fromkeys((
            "datagrams_received", "datagrams_sent", "dropped_garbage", "dropped_unknown",
            "dropped_inbox_full", "dropped_outbox_full", "connections_refused",
            "retries_sent", "version_negotiations_sent", "invalid_tokens",
        ), 0)

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the socket is bound to (port 0 resolved)."""
        name = self.sock.getsockname()
        return name[0], name[1]

    def statistics(self) -> dict[str, int]:
        """Connections (total, in handshake), request streams running, request body bytes
        buffered for apps, routes, queued outbox batches, and counts of datagrams received,
        sent and dropped by reason."""
        streams = buffered = 0
        for conn in self.connections:
            stats = conn.conn.statistics()
            streams += stats["streams_active"]
            buffered += stats["buffered_bytes"]
        return {
            "connections": len(self.connections),
            "streams_active": streams,
            "buffered_bytes": buffered,
            "handshaking": self.handshaking,
            "routes": len(self.routes),
            "outbox_batches": self._queued,
            **self.stats,
        }

    # --- lifecycle -------------------------------------------------------------------------
    def begin_shutdown(self) -> None:
        """Refuse new connections; every connection sends GOAWAY and closes once its streams
        are done; the endpoint ends when the last one has."""
        self.closing = True
        for conn in list(self.connections):
            conn.begin_shutdown()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.closing and not self.connections:
            self._reader_scope.cancel()

    async def serve(self) -> None:
        """Read and route datagrams until shutdown completes (see :meth:`begin_shutdown`)."""
        # A non-blocking twin of the socket (same open file) for the direct send path: a
        # plain sendto() that either goes at once or raises BlockingIOError, no checkpoint.
        self._raw = stdlib_socket.socket(fileno=os.dup(self.sock.fileno()))
        self._raw.setblocking(False)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                with self._reader_scope:
                    self._maybe_finish()
                    await self._reader(nursery)
                await self._outbox.aclose()
        finally:
            self._raw.close()
            self._raw = None

    async def _reader(self, nursery: trio.Nursery) -> None:
        sock = self.sock
        while True:
            try:
                data, addr = await sock.recvfrom(_RECV_SIZE)
            except OSError as exc:
                # ICMP errors from earlier sends surface here (ECONNREFUSED); not fatal.
                if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                    raise
                continue
            self.stats["datagrams_received"] += 1
            self._route(data, addr, nursery)

    def _route(self, data: bytes, addr: Any, nursery: trio.Nursery) -> None:
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=_CID_LENGTH)
        except Exception:  # ValueError/BufferReadError for garbage; nothing may escape
            self.stats["dropped_garbage"] += 1
            return
        conn = self.routes.get(header.destination_cid)
        if conn is not None:
            try:
                conn.inbox.send_nowait((data, addr))
            except (trio.WouldBlock, trio.ClosedResourceError):
                self.stats["dropped_inbox_full"] += 1
            return
        stats = self.stats
        if header.version is None or header.packet_type == QuicPacketType.VERSION_NEGOTIATION:
            stats["dropped_unknown"] += 1  # a short header (or VN) for no known connection
            return
        supported = self.configuration.supported_versions
        if header.version not in supported:
            # Answering a VN packet with one would let spoofed pairs of servers loop.
            if len(data) >= _MIN_INITIAL:
                stats["version_negotiations_sent"] += 1
                self.send_nowait([(encode_quic_version_negotiation(
                    source_cid=header.destination_cid,
                    destination_cid=header.source_cid,
                    supported_versions=supported,
                ), addr)])
            return
        if header.packet_type != QuicPacketType.INITIAL or len(data) < _MIN_INITIAL:
            stats["dropped_unknown"] += 1
            return
        if (
            self.closing
            or len(self.connections) >= self.max_connections
            or self.handshaking >= self.max_handshakes
        ):
            stats["connections_refused"] += 1
            return
        odcid = header.destination_cid
        retry_scid = None
        if self.retry is not None:
            now = trio.current_time()
            if not header.token:
                scid = os.urandom(_CID_LENGTH)
                token = self.retry.create_token(
                    address=addr, original_destination_connection_id=header.destination_cid,
                    retry_source_connection_id=scid, now=now,
                )
                stats["retries_sent"] += 1
                self.send_nowait([(encode_quic_retry(
                    version=header.version, source_cid=scid,
                    destination_cid=header.source_cid,
                    original_destination_cid=header.destination_cid, retry_token=token,
                ), addr)])
                return
            try:
                odcid = self.retry.validate_token(
                    address=addr, destination_cid=header.destination_cid,
                    token=header.token, now=now,
                )
            except ValueError:
                # RFC 9000 §8.1.3 allows closing with INVALID_TOKEN; dropping costs less
                # and the client gives up the same way.
                stats["invalid_tokens"] += 1
                return
            retry_scid = header.destination_cid
        self._open_connection(data, addr, odcid, retry_scid, header.destination_cid, nursery)

    def _open_connection(
        self, data: bytes, addr: Any, odcid: bytes, retry_scid: bytes | None, dcid: bytes,
        nursery: trio.Nursery,
    ) -> None:
        cfg = self.ctx.config
        conn = H3Connection(
            self.configuration,
            original_destination_connection_id=odcid,
            retry_source_connection_id=retry_scid,
            max_concurrent_streams=cfg.h3_max_concurrent_streams,
            stream_window_size=cfg.h3_stream_window_size,
            send_buffer_size=cfg.h3_stream_window_size,
            max_request_header_count=cfg.max_request_header_count,
            max_request_line_size=cfg.max_request_line_size,
            max_request_body_size=cfg.max_request_body_size,
            reset_budget=cfg.h3_reset_budget,
            server_names=self.ctx.server_names,
        )
        host = self.address
        extensions = dict(self.ctx.extensions)
        for name in H3_EXTENSIONS:
            extensions[name] = {}
        # The cipher suite is filled in when the handshake completes (handshake_done), before
        # any request is served.
        extensions["tls"] = quic_tls_extension(cfg.certfile)
        info = ConnectionInfo(
            client=(addr[0], addr[1]), server=(host[0], host[1]), tls=True,
            root_path=cfg.root_path, state=self.ctx.state, extensions=extensions,
        )
        server = H3Server(self, conn, self.ctx, info)
        self.connections.add(server)
        self.handshaking += 1
        self.add_route(dcid, server)
        self.add_route(conn.host_cid, server)
        server.inbox.send_nowait((data, addr))
        nursery.start_soon(server.run)

    # --- called by connections ------------------------------------------------------------
    def add_route(self, cid: bytes, conn: H3Server) -> None:
        self.routes[cid] = conn
        conn.cids.add(cid)

    def remove_route(self, cid: bytes, conn: H3Server) -> None:
        if self.routes.get(cid) is conn:
            del self.routes[cid]
        conn.cids.discard(cid)

    def handshake_done(self, conn: H3Server) -> None:
        self.handshaking -= 1
        tls = conn.info.extensions.get("tls")
        if tls is not None:
            tls["cipher_suite"] = conn.conn.cipher_suite

    def forget(self, conn: H3Server) -> None:
        """``conn`` has ended: drop its routes; end the endpoint if it was the last one
        during shutdown."""
        for cid in list(conn.cids):
            self.remove_route(cid, conn)
        if conn in self.connections:
            self.connections.discard(conn)
            if conn.handshaking:
                self.handshaking -= 1
        self._maybe_finish()

    def _send_direct(self, datagrams: Datagrams) -> int:
        """Write datagrams while the socket takes them; return how many went."""
        raw = self._raw
        if raw is None:
            return 0
        n = 0
        for data, addr in datagrams:
            try:
                raw.sendto(data, addr)
            except BlockingIOError:
                break
            except OSError:
                pass  # unreachable peer, bad address: that datagram is lost, as UDP allows
            n += 1
        self.stats["datagrams_sent"] += n
        return n

    def send_nowait(self, datagrams: Datagrams) -> None:
        """Send without waiting: directly, else through the outbox, else drop."""
        if not datagrams:
            return
        if not self._queued:
            n = self._send_direct(datagrams)
            if n == len(datagrams):
                return
            datagrams = datagrams[n:]
        try:
            self._outbox.send_nowait(datagrams)
            self._queued += 1
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.stats["dropped_outbox_full"] += 1

    async def send(self, datagrams: Datagrams) -> None:
        """Send one connection's datagrams, in order; waits while the outbox is full."""
        if not self._queued:
            n = self._send_direct(datagrams)
            if n == len(datagrams):
                return
            datagrams = datagrams[n:]
        self._queued += 1
        try:
            await self._outbox.send(datagrams)
        except BaseException:
            self._queued -= 1
            raise

    async def _writer(self) -> None:
        sock = self.sock
        async for batch in self._outbox_recv:
            try:
                for data, addr in batch:
                    try:
                        await sock.sendto(data, addr)
                        self.stats["datagrams_sent"] += 1
                    except OSError:
                        pass
            finally:
                self._queued -= 1


async def serve_quic_endpoint(endpoint: QuicEndpoint) -> None:
    """Run ``endpoint`` until graceful shutdown has drained it. Registered with the server
    context like a connection: shutdown gives this shielded scope the shutdown deadline,
    past which the remaining connections are cancelled. Closes the socket on exit."""
    ctx = endpoint.ctx
    try:
        with trio.CancelScope(shield=True) as scope:
            ctx.register(endpoint, scope)
            await endpoint.serve()
    except Exception:
        logger.exception("QUIC endpoint on %s failed", endpoint.address)
    finally:
        ctx.unregister(endpoint)
        endpoint.sock.close()
