"""Configuration: :class:`Config` and :class:`Bind`, frozen and validated on construction.

Units are in the field names' documentation: every ``*_timeout`` is in seconds, every ``*_size``
in bytes. ``None`` for a timeout means "no timeout"; for a size limit, "no limit".
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from ._errors import ConfigError
from ._sansio._fields import NOT_IN_RESPONSES, check_field
from ._sansio._limits import ServerNames

__all__ = ["Bind", "Config", "parse_bind"]

# RFC 9113 §6.5.2 bounds.
_MAX_WINDOW = 2**31 - 1
_MIN_FRAME, _MAX_FRAME = 2**14, 2**24 - 1


@dataclass(frozen=True, slots=True)
class Bind:
    """One place to listen on.

    ``kind`` is ``"tcp"`` (``host``/``port``; port 0 picks a free port), ``"unix"`` (``path``) or
    ``"fd"`` (``fd``, an inherited listening socket). ``tls`` says whether TLS is served here; it is
    decided by the server from the configured certificate and ``--insecure-bind``.
    """

    kind: Literal["tcp", "unix", "fd"]
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1
    tls: bool | None = None

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_IPV6 = re.compile(r"^\[([0-9A-Fa-f:.%a-zA-Z]+)\]:(\d+)$")


def parse_bind(text: str | Bind, *, tls: bool | None = None) -> Bind:
    """Parse a bind string as Hypercorn does: ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH``,
    ``fd://N``. A :class:`Bind` is returned unchanged (with ``tls`` applied when it has none).

    Raises :class:`ConfigError` on anything else.
    """
    if isinstance(text, Bind):
        return text if text.tls is not None or tls is None else dataclasses.replace(text, tls=tls)
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ConfigError(f"bind {text!r}: empty unix socket path")
        return Bind("unix", path=path, tls=tls)
    if text.startswith("fd://"):
        try:
            fd = int(text[len("fd://") :])
        except ValueError:
            raise ConfigError(f"bind {text!r}: fd:// needs a file descriptor number") from None
        if fd < 0:
            raise ConfigError(f"bind {text!r}: negative file descriptor")
        return Bind("fd", fd=fd, tls=tls)
    m = _IPV6.match(text)
    if m:
        host, port_s = m.group(1), m.group(2)
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep:
            # A bare host, as Hypercorn accepts: its default port.
            host, port_s = text, "8000"
        if ":" in host:
            raise ConfigError(f"bind {text!r}: write IPv6 addresses as [ADDR]:PORT")
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(f"bind {text!r}: port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"bind {text!r}: port {port} out of range 0..65535")
    return Bind("tcp", host=host or "0.0.0.0", port=port, tls=tls)


# Fields a server-wide default cannot carry: they frame the message or describe this one
# connection or moment (RFC 9110 §6.6.1, §7.6.1; RFC 9112 §6.1), so one value for every
# response would be wrong; ``date`` has its own switch.
_NOT_DEFAULTS = frozenset(n.decode() for n in NOT_IN_RESPONSES) | {
    "content-length", "date", "trailer",
}


def split_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` as ``("name", "value")``: the name lowercased, the value without
    surrounding whitespace. Raises :class:`ConfigError` when it is not a valid field that a
    server may add to every response."""
    name, colon, value = text.partition(":")
    if not colon:
        raise ConfigError(f"response header {text!r} is not NAME:VALUE")
    return _default_field(name.strip(), value)


def _default_field(name: str, value: str) -> tuple[str, str]:
    value = value.strip(" \t")
    try:
        check_field(name.encode("latin-1"), value.encode("latin-1"))
    except (UnicodeEncodeError, ValueError) as exc:
        raise ConfigError(f"response header {name!r}: {exc}") from None
    name = name.lower()
    if name in _NOT_DEFAULTS:
        raise ConfigError(f"response header {name!r} cannot be set for every response")
    return name, value


def _strings(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A tuple field given as one string or a list, as a tuple."""
    return (value,) if isinstance(value, str) else tuple(value)


def _positive(name: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None:
        if not allow_none:
            raise ConfigError(f"{name} may not be None")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, not {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Every setting of a trio_http server. Frozen; validated on construction
    (:class:`ConfigError` on a bad value). Build a variant with :func:`dataclasses.replace`.
    """

    # --- TLS (RFC 8446; ALPN RFC 7301) -----------------------------------------------------
    #: PEM certificate chain; when set, binds serve TLS with ALPN ``h2``, ``http/1.1``.
    certfile: str | None = None
    #: PEM private key (defaults to the key inside ``certfile``).
    keyfile: str | None = None
    #: Password for an encrypted ``keyfile``.
    keyfile_password: str | None = None
    #: PEM CA bundle used to verify client certificates (when they are requested).
    ca_certs: str | None = None
    #: ALPN protocols offered, in preference order.
    alpn_protocols: tuple[str, ...] = ("h2", "http/1.1")
    #: Seconds a TLS handshake may take before the connection is dropped.
    tls_handshake_timeout: float = 10.0

    # --- ASGI ----------------------------------------------------------------------------
    #: ASGI ``root_path``: the mount point of the app behind a proxy (no trailing ``/``).
    root_path: str = ""
    #: Lifespan protocol: ``"auto"`` (used if the app supports it), ``"on"`` (required), ``"off"``.
    lifespan: Literal["auto", "on", "off"] = "auto"
    #: Seconds the app may take to answer ``lifespan.startup``.
    startup_timeout: float = 60.0
    #: Seconds the app may take to answer ``lifespan.shutdown``.
    shutdown_timeout: float = 60.0

    # --- connections -------------------------------------------------------------------
    #: Seconds to wait for in-flight requests once shutdown begins; then they are cancelled.
    graceful_timeout: float = 5.0
    #: Seconds an idle keep-alive connection (no request in progress) is kept open.
    keep_alive_timeout: float = 5.0
    #: Seconds a write may stall (the peer not reading) before the connection is dropped.
    write_timeout: float | None = 60.0
    #: Most connections served at once; ``None`` for no limit. Past it, accept() waits.
    max_connections: int | None = None
    #: Requests (HTTP/1.1) or streams (HTTP/2) served per connection before it closes
    #: (``Connection: close``; GOAWAY); ``None`` for no limit.
    max_requests_per_connection: int | None = None
    #: Seconds from the first byte of a request head (HTTP/1.1) or header block (HTTP/2) to
    #: its end; past it: 408 and close (HTTP/1.1), GOAWAY (HTTP/2). ``None``: no limit.
    request_head_timeout: float | None = 10.0
    #: Seconds the server waits for more request body while the app waits for it; past it:
    #: 408 (or a reset stream, or a closed connection once the response has started).
    body_read_timeout: float | None = 60.0
    #: Bytes asked of the socket per read.
    read_size: int = 65536
    #: Bytes of written-but-unsent data the kernel may queue per TCP connection
    #: (``TCP_NOTSENT_LOWAT``, Linux and macOS) before a write waits. trio sets 16384 on every
    #: connection, which keeps buffers small but costs a wake-up per ~100 KiB of a large
    #: response (1 MiB responses: 2,500/s at 16 KiB, 4,400/s at 1 MiB on the benchmark
    #: machine). ``None`` keeps trio's setting. More here means more kernel memory per
    #: connection that does not read, up to the socket's send buffer (``tcp_wmem``).
    tcp_notsent_lowat: int | None = 1048576
    #: Listen backlog (connections), as for ``listen(2)``.
    backlog: int = 2048
    #: Add a ``server: trio_http`` header to responses when the app set none.
    server_header: bool = True
    #: Add a ``date`` header (RFC 9110 §6.6.1) to responses when the app set none.
    date_header: bool = True
    #: Fields every response gets unless the app set a field of that name, as ``(name,
    #: value)`` pairs of latin-1 strings (``--header "name: value"``). A ``server`` field
    #: here takes the place of ``server: trio_http``. Names are lowercased; a framing or
    #: connection field (``content-length``, ``connection``...) or ``date`` raises
    #: :class:`ConfigError`.
    response_headers: tuple[tuple[str, str], ...] = ()
    #: Hosts served (``--server-name``): ``host`` (any port), ``host:port`` or ``*.domain``
    #: (the names below it). A request whose Host (HTTP/2, HTTP/3: ``:authority``) is none of
    #: them gets 421 Misdirected Request (RFC 9110 §15.5.20) and its app never runs, which
    #: keeps DNS rebinding away from servers on private addresses. Empty: every host.
    server_names: tuple[str, ...] = ()

    # --- HTTP/1.1 (RFC 9112) -------------------------------------------------------------
    #: Bytes a request head (request line and header fields) may take before 431.
    max_request_header_size: int = 16384
    #: Bytes of request line (method, target and version; HTTP/2: method and ``:path``)
    #: before 414.
    max_request_line_size: int = 8192
    #: Header fields a request may carry before 431 (HTTP/1.1 and HTTP/2).
    max_request_header_count: int = 100
    #: Bytes of request body before 413 (a declared Content-Length) or, once streaming, 413 /
    #: a reset stream / a closed connection. ``None`` (the default): no limit, as in Hypercorn
    #: and Uvicorn; the server itself buffers at most a window per stream (see docs/security.md).
    max_request_body_size: int | None = None
    #: HTTP/1.1 parser: ``"h11"`` (pure Python), ``"httptools"`` (llhttp, the ``fast`` extra) or
    #: ``"auto"`` (httptools when installed). Both apply the same request checks.
    h1_parser: Literal["auto", "h11", "httptools"] = "auto"

    # --- HTTP/2 (RFC 9113 §6.5.2) --------------------------------------------------------
    #: HTTP/2 on cleartext binds (h2c): ``"both"`` (prior knowledge, RFC 9113 §3.3, and the
    #: ``Upgrade: h2c`` of RFC 7540 §3.2), ``"prior-knowledge"``, ``"upgrade"`` or ``"off"``
    #: (HTTP/1.1 only: ``Upgrade: h2c`` is ignored, a preface is refused as a malformed
    #: HTTP/1.1 request). TLS binds negotiate HTTP/2 with ALPN whatever this says.
    h2c: Literal["both", "prior-knowledge", "upgrade", "off"] = "both"
    #: Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); past it,
    #: new streams are refused with REFUSED_STREAM, the connection lives on.
    h2_max_concurrent_streams: int = 100
    #: Bytes of request body a stream may have buffered before the app reads it.
    h2_initial_window_size: int = 65535
    #: Bytes of the largest frame payload the server accepts (SETTINGS_MAX_FRAME_SIZE).
    h2_max_frame_size: int = 16384
    #: Bytes of decompressed header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE).
    h2_max_header_list_size: int = 65536
    #: Bytes of response data queued per connection before an app's ``send()`` waits.
    h2_write_buffer_size: int = 65536
    #: Stream resets (by the peer, or by us because of the peer: CVE-2023-44487,
    #: CVE-2025-8671) tolerated beyond the number of completed streams, then
    #: GOAWAY(ENHANCE_YOUR_CALM).
    h2_reset_budget: int = 200
    #: Frames that carry no request work (PING, SETTINGS, PRIORITY, RST_STREAM, GOAWAY, empty
    #: DATA, HEADERS or CONTINUATION, unknown types) a connection may send per 10 seconds, then
    #: GOAWAY(ENHANCE_YOUR_CALM) (CVE-2019-9512, -9515, -9518).
    h2_control_frame_budget: int = 1000
    #: Seconds between keepalive PINGs on an HTTP/2 connection (RFC 9113 §6.7), ``None`` for
    #: none. They find a peer that vanished without closing (a dropped NAT mapping, a host
    #: switched off) while its streams wait, as a long-poll, server-sent events or a
    #: WebSocket does, with nothing to write that would hit ``write_timeout``.
    h2_ping_interval: float | None = None
    #: Seconds the peer has to acknowledge a keepalive PING before the connection is dropped
    #: (its streams see a disconnect).
    h2_ping_timeout: float = 20.0

    # --- WebSockets (RFC 6455, RFC 7692) --------------------------------------------------
    #: Largest incoming message in bytes; a larger one closes with 1009.
    websocket_max_message_size: int = 16 * 1024 * 1024
    #: Incoming messages queued for the app before the reader stops reading (items).
    websocket_max_queue: int = 32
    #: Seconds between server PINGs; ``None`` disables them.
    websocket_ping_interval: float | None = None
    #: Seconds to wait for a PONG before closing with 1011.
    websocket_ping_timeout: float = 20.0
    #: Negotiate permessage-deflate when the client offers it.
    websocket_per_message_deflate: bool = True

    # --- HTTP/3 over QUIC (RFC 9114, RFC 9000) --------------------------------------------
    #: UDP binds served with HTTP/3 (``HOST:PORT``, ``[IPv6]:PORT``); they need ``certfile``.
    quic_binds: tuple[str, ...] = ()
    #: Advertise the first quic bind on TCP responses: ``alt-svc: h3=":PORT"; ma=3600``.
    alt_svc: bool = True
    #: QUIC connections per quic bind; at most half of them may be in their handshake.
    quic_max_connections: int = 1000
    #: Make clients prove their address with a Retry round trip (RFC 9000 §8.1.2) first.
    quic_retry: bool = False
    #: Seconds without a packet from the peer after which a QUIC connection is dropped.
    quic_idle_timeout: float = 30.0
    #: Request streams a client may have open at once on one connection.
    h3_max_concurrent_streams: int = 100
    #: Bytes of request body a stream may have buffered before the app reads it, and of
    #: response a stream may have sent but not yet seen acknowledged.
    h3_stream_window_size: int = 262144
    #: Request streams reset (by the peer, or by us because of the peer: a malformed or
    #: refused request) tolerated beyond the number of completed streams, then the connection
    #: is closed with H3_EXCESSIVE_LOAD (RFC 9114 §10.5; HTTP/3's Rapid Reset).
    h3_reset_budget: int = 200

    # --- proxies, client certificates, sockets, WSGI (issue 7) --------------------------------
    #: Trust ``Forwarded`` / ``X-Forwarded-*`` from ``forwarded_allow_ips`` (RFC 7239).
    proxy_headers: bool = False
    #: Peers trusted for proxy headers and the PROXY protocol: IPs, CIDRs, or ``"*"`` for all.
    #: Peers on unix sockets are always trusted.
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    #: Expect a PROXY protocol v1/v2 header (HAProxy) first on connections from trusted peers.
    proxy_protocol: bool = False
    #: Client certificates: ``"none"`` (not asked), ``"optional"``, ``"required"`` (mTLS).
    verify_mode: Literal["none", "optional", "required"] = "none"
    #: OpenSSL cipher list for TLS 1.2 (``SSLContext.set_ciphers``); ``None`` for the default.
    ciphers: str | None = None
    #: Permission bits given to unix socket files after binding (e.g. ``0o660``).
    unix_socket_mode: int | None = None
    #: Worker threads running WSGI apps at once (the CapacityLimiter's tokens).
    wsgi_max_threads: int = 40

    # --- logging ---------------------------------------------------------------------------
    #: Where access log lines go: a path, ``"-"`` for stdout, or ``None`` for nowhere.
    access_logfile: str | None = None
    #: Access log line format, with Gunicorn-style atoms (``%(h)s`` client, ``%(r)s`` request
    #: line, ``%(s)s`` status, ``%(b)s`` body bytes, ``%(D)s`` microseconds...).
    access_log_format: str = '%(h)s "%(r)s" %(s)s %(b)s %(D)s'

    def __post_init__(self) -> None:
        for name in ("tls_handshake_timeout", "startup_timeout", "shutdown_timeout",
                     "keep_alive_timeout", "websocket_ping_timeout", "h2_ping_timeout"):
            _positive(name, getattr(self, name), allow_none=False)
        _positive("graceful_timeout", self.graceful_timeout, allow_none=False)
        _positive("write_timeout", self.write_timeout)
        _positive("request_head_timeout", self.request_head_timeout)
        _positive("body_read_timeout", self.body_read_timeout)
        for name in ("max_requests_per_connection", "max_request_body_size",
                     "tcp_notsent_lowat"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{name} must be a positive integer or None, not {value!r}")
        _positive("websocket_ping_interval", self.websocket_ping_interval)
        _positive("h2_ping_interval", self.h2_ping_interval)
        for name in ("read_size", "backlog", "max_request_header_size",
                     "max_request_line_size", "max_request_header_count", "h2_reset_budget",
                     "h2_control_frame_budget", "h3_reset_budget",
                     "h2_max_concurrent_streams", "h2_max_header_list_size",
                     "h2_write_buffer_size", "websocket_max_message_size",
                     "websocket_max_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        if self.tcp_notsent_lowat is not None and self.tcp_notsent_lowat > 2**31 - 1:
            raise ConfigError("tcp_notsent_lowat must fit in a C int (at most 2**31 - 1)")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigError("max_connections must be a positive integer or None")
        if not 1 <= self.h2_initial_window_size <= _MAX_WINDOW:
            raise ConfigError(f"h2_initial_window_size must lie in 1..{_MAX_WINDOW}")
        if not _MIN_FRAME <= self.h2_max_frame_size <= _MAX_FRAME:
            raise ConfigError(f"h2_max_frame_size must lie in {_MIN_FRAME}..{_MAX_FRAME}")
        if self.h1_parser not in ("auto", "h11", "httptools"):
            raise ConfigError(f"h1_parser must be 'auto', 'h11' or 'httptools', "
                              f"not {self.h1_parser!r}")
        if self.h1_parser == "httptools":
            from ._sansio._h1_parser import HTTPTOOLS_AVAILABLE
            if not HTTPTOOLS_AVAILABLE:
                raise ConfigError("h1_parser 'httptools' needs httptools "
                                  "(pip install trio_http[fast])")
        if self.h2c not in ("both", "prior-knowledge", "upgrade", "off"):
            raise ConfigError("h2c must be 'both', 'prior-knowledge', 'upgrade' or 'off', "
                              f"not {self.h2c!r}")
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigError(f"lifespan must be 'auto', 'on' or 'off', not {self.lifespan!r}")
        pairs = self.response_headers
        if isinstance(pairs, str) or any(
            isinstance(p, str) or len(p) != 2 or not all(isinstance(x, str) for x in p)
            for p in pairs
        ):
            raise ConfigError("response_headers must be (name, value) pairs of strings, "
                              f"not {pairs!r}")
        object.__setattr__(self, "response_headers",
                           tuple(_default_field(name, value) for name, value in pairs))
        object.__setattr__(self, "server_names", _strings(self.server_names))
        try:
            ServerNames(self.server_names)
        except ValueError as exc:
            raise ConfigError(f"server_names: {exc}") from None
        if self.root_path.endswith("/"):
            object.__setattr__(self, "root_path", self.root_path.rstrip("/"))
        if self.keyfile and not self.certfile:
            raise ConfigError("keyfile given without certfile")
        object.__setattr__(self, "quic_binds", _strings(self.quic_binds))
        if self.quic_binds and not self.certfile:
            raise ConfigError("quic_binds need a TLS certificate (certfile)")
        _positive("quic_idle_timeout", self.quic_idle_timeout, allow_none=False)
        for name in ("quic_max_connections", "h3_max_concurrent_streams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        if not 1024 <= self.h3_stream_window_size <= 2**62 - 1:
            raise ConfigError("h3_stream_window_size must lie in 1024..2**62-1")

        if isinstance(self.forwarded_allow_ips, (str, list)):
            ips = self.forwarded_allow_ips
            object.__setattr__(self, "forwarded_allow_ips", tuple(
                p.strip() for p in (ips.split(",") if isinstance(ips, str) else ips) if p.strip()
            ))
        for entry in self.forwarded_allow_ips:
            try:
                if entry != "*":
                    ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(f"forwarded_allow_ips: {entry!r} is not an IP, a CIDR "
                                  f"or '*'") from None
        if self.verify_mode not in ("none", "optional", "required"):
            raise ConfigError(f"verify_mode must be none, optional or required, "
                              f"not {self.verify_mode!r}")
        if self.verify_mode != "none" and not self.ca_certs:
            raise ConfigError(f"verify_mode {self.verify_mode!r} needs ca_certs")
        if self.unix_socket_mode is not None and not 0 <= self.unix_socket_mode <= 0o7777:
            raise ConfigError(f"unix_socket_mode {self.unix_socket_mode!r} is not a mode")
        if isinstance(self.wsgi_max_threads, bool) or self.wsgi_max_threads < 1:
            raise ConfigError("wsgi_max_threads must be a positive integer")

    @property
    def tls_enabled(self) -> bool:
        """True when a certificate is configured."""
        return self.certfile is not None
