"""Running behind proxies: whom to trust, the ``Forwarded`` (RFC 7239) and ``X-Forwarded-*``
headers applied to the scope, and the PROXY protocol header read at the start of a connection.

Only peers in ``forwarded_allow_ips`` are believed: anyone else could forge these headers. A
peer on a unix socket is local, its access governed by the socket file's permissions, and is
trusted.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import trio

from ._sansio._proxy_protocol import (
    ProxyHeader,
    ProxyProtocolError,
    looks_like_proxy_header,
    parse_proxy_header,
)
from ._types import ASGIApp, Receive, Scope, Send

__all__ = [
    "PrefixedStream",
    "ProxyHeadersMiddleware",
    "ProxyProtocolError",
    "TrustedPeers",
    "parse_forwarded",
    "proxied_addresses",
    "read_proxy_protocol",
    "trusted_peers",
]

logger = logging.getLogger("trio_http.error")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedPeers:
    """A set of trusted addresses: IPs, CIDRs (``10.0.0.0/8``), or ``*`` for everyone.

    Raises :class:`ValueError` for an entry that is neither.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self.everyone = False
        self._networks: list[_Network] = []
        for entry in entries:
            entry = entry.strip()
            if entry == "*":
                self.everyone = True
            elif entry:
                self._networks.append(ipaddress.ip_network(entry, strict=False))

    def __contains__(self, host: object) -> bool:
        if host is None:
            return True  # a unix socket peer (no address): local and permission-checked
        if self.everyone:
            return True
        if not isinstance(host, str):
            return False
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self._networks)


@lru_cache(maxsize=16)
def trusted_peers(entries: tuple[str, ...]) -> TrustedPeers:
    """The :class:`TrustedPeers` for ``Config.forwarded_allow_ips`` (parsed once)."""
    return TrustedPeers(entries)


# --- Forwarded (RFC 7239 §4) -------------------------------------------------------------

def parse_forwarded(value: str) -> list[dict[str, str]]:
    """Split a ``Forwarded`` field value into its elements, leftmost (the original client)
    first; each a dict of lowercased parameter names to unquoted values. Malformed pairs are
    skipped, as the RFC lets recipients do."""
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch in " \t;":
            i += 1
            continue
        if ch == ",":
            elements.append(current)
            current = {}
            i += 1
            continue
        eq = value.find("=", i)
        stop = min((p for p in (value.find(";", i), value.find(",", i)) if p >= 0), default=n)
        if eq < 0 or eq > stop:
            i = stop  # a pair without '=': skip it
            continue
        name = value[i:eq].strip().lower()
        i = eq + 1
        if i < n and value[i] == '"':
            out = []
            i += 1
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(value[i])
                i += 1
            i += 1
            text = "".join(out)
        else:
            end = i
            while end < n and value[end] not in ";,":
                end += 1
            text = value[i:end].strip()
            i = end
        if name:
            current[name] = text
    elements.append(current)
    return [e for e in elements if e]


def _split_node(node: str) -> tuple[str, int] | None:
    """``for=`` node (RFC 7239 §6): ``1.2.3.4``, ``1.2.3.4:80``, ``[v6]``, ``[v6]:80``; ``None``
    for ``unknown`` and obfuscated identifiers, which name no address."""
    node = node.strip()
    port = 0
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif node.count(":") == 1:
        host, _, p = node.partition(":")
        port = int(p) if p.isdigit() else 0
    else:
        host = node
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host, port


def _csv(headers: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    values: list[str] = []
    for n, v in headers:
        if n == name:
            values += [p.strip() for p in v.decode("latin-1").split(",")]
    return values


def _pick(values: list[str], index: int, count: int) -> str | None:
    # Lists appended hop by hop line up with the addresses; otherwise take the one our
    # trusted peer set last.
    if not values:
        return None
    return values[index] if len(values) == count else values[-1]


def _client_hop(hops: list[str], trusted: TrustedPeers) -> int:
    """Index of the client in a hop list: walk from the right (our peer's view) past trusted
    proxies; the first untrusted one is the client. All trusted: the leftmost."""
    for i in range(len(hops) - 1, -1, -1):
        node = _split_node(hops[i])
        if node is None or node[0] not in trusted:
            return i
    return 0


class ProxyHeadersMiddleware:
    """Rewrites ``client``, ``scheme`` and the ``host`` header of ``http`` and ``websocket``
    scopes from ``Forwarded`` (preferred when present) or ``X-Forwarded-For``,
    ``X-Forwarded-Proto`` and ``X-Forwarded-Host``, when the connection's peer is trusted.
    Other scopes pass through untouched."""

    def __init__(self, app: ASGIApp, trusted: TrustedPeers) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if (client[0] if client else None) in self.trusted:
                scope = self._rewrite(scope)
        await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope) -> Scope:
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        forwarded = [v.decode("latin-1") for n, v in headers if n == b"forwarded"]
        client_node = proto = host = None
        if forwarded:
            elements = parse_forwarded(",".join(forwarded))
            hops = [e.get("for", "unknown") for e in elements]
            if elements:
                chosen = elements[_client_hop(hops, self.trusted)]
                client_node = chosen.get("for")
                proto, host = chosen.get("proto"), chosen.get("host")
        else:
            hops = _csv(headers, b"x-forwarded-for")
            index = _client_hop(hops, self.trusted) if hops else 0
            if hops:
                client_node = hops[index]
            count = len(hops)
            proto = _pick(_csv(headers, b"x-forwarded-proto"), index, count)
            host = _pick(_csv(headers, b"x-forwarded-host"), index, count)
        if client_node is None and proto is None and host is None:
            return scope
        scope = dict(scope)
        if client_node is not None:
            node = _split_node(client_node)
            if node is not None:
                scope["client"] = node
        if proto is not None:
            proto = proto.lower()
            if proto in ("http", "https", "ws", "wss"):
                secure = proto in ("https", "wss")
                if scope["type"] == "websocket":
                    scope["scheme"] = "wss" if secure else "ws"
                else:
                    scope["scheme"] = "https" if secure else "http"
        if host and host.isprintable():
            headers = [(n, v) for n, v in headers if n != b"host"]
            headers.append((b"host", host.encode("latin-1", "replace")))
            scope["headers"] = headers
        return scope


# --- the PROXY protocol, at the start of a connection ------------------------------------

async def read_proxy_protocol(
    stream: trio.abc.Stream, timeout: float, read_size: int = 4096  # noqa: ASYNC109
) -> tuple[ProxyHeader | None, bytes]:
    """Read a PROXY protocol header from the start of ``stream`` within ``timeout`` seconds.

    Returns the header (``None`` when the connection does not start with one: the trusted
    peer talks to us directly, e.g. a health check) and the bytes read past it, which belong
    to the connection's next layer. Raises :class:`ProxyProtocolError` for a malformed header,
    :class:`trio.TooSlowError` on timeout, and :class:`EOFError` if the peer closes first.
    """
    data = b""
    with trio.fail_after(timeout):
        while True:
            verdict = looks_like_proxy_header(data)
            if verdict is False:
                return None, data
            if verdict:
                header = parse_proxy_header(data)
                if header is not None:
                    return header, data[header.length :]
            chunk = await stream.receive_some(read_size)
            if not chunk:
                raise EOFError("connection closed inside the PROXY header")
            data += chunk


class PrefixedStream(trio.abc.Stream):
    """``stream`` with ``prefix`` put back in front of what it receives (bytes read past a
    PROXY header, handed to the TLS layer)."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self.transport_stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            n = len(self._prefix) if max_bytes is None else max_bytes
            out, self._prefix = self._prefix[:n], self._prefix[n:]
            return out
        return await self.transport_stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()


def proxied_addresses(header: ProxyHeader, client: Any, server: Any) -> tuple[Any, Any]:
    """The ``(client, server)`` a connection reports after ``header``."""
    if header.client is None:
        return client, server
    return header.client, header.server



async def accept_proxy_protocol(
    stream: trio.abc.Stream, config: Any, client: Any, server: Any, *, tls: bool
) -> tuple[trio.abc.Stream, Any, Any, bytes] | None:
    """Handle ``config.proxy_protocol`` at the start of a connection: from a trusted peer,
    read the header (within ``tls_handshake_timeout``) and return ``(stream, client, server,
    data)`` with the addresses it names and the bytes read past it (put back under the TLS
    layer when ``tls``, else returned as ``data``). An untrusted peer's bytes are left alone.
    ``None`` means drop the connection (malformed header, timeout, EOF)."""
    if (client[0] if client else None) not in trusted_peers(config.forwarded_allow_ips):
        return stream, client, server, b""
    try:
        header, rest = await read_proxy_protocol(stream, config.tls_handshake_timeout)
    except ProxyProtocolError as exc:
        logger.info("Dropping the connection from %s: bad PROXY header (%s)", client, exc)
        return None
    except (trio.TooSlowError, EOFError, trio.BrokenResourceError, trio.ClosedResourceError,
            OSError):
        return None
    if header is not None:
        client, server = proxied_addresses(header, client, server)
    if tls and rest:
        return PrefixedStream(stream, rest), client, server, b""
    return stream, client, server, rest
