"""The PROXY protocol header (HAProxy, versions 1 and 2), read first on a connection from a
trusted load balancer to learn the real client address.

Source: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt. Pure: bytes in, a result
out; the caller reads until :func:`parse_proxy_header` stops answering ``None``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyProtocolError",
    "build_v1",
    "build_v2",
    "looks_like_proxy_header",
    "parse_proxy_header",
]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: A v1 line is at most 107 bytes with its CRLF (spec §2.1).
V1_MAX_LENGTH = 107
_V1_PREFIX = b"PROXY "
_V2_HEAD = struct.Struct("!12sBBH")  # signature, version/command, family/transport, length


class ProxyProtocolError(ValueError):
    """The header is malformed; the connection must be closed (spec §2: no fallback)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header. ``length`` is how many bytes it took. ``client`` and ``server`` are
    ``(host, port)`` (the source and destination the proxy saw), or ``None`` for ``LOCAL``
    (v2, the proxy's own health checks) and ``UNKNOWN`` (v1), where the connection's own
    addresses stand."""

    length: int
    client: tuple[str, int] | None
    server: tuple[str, int] | None
    version: int


def looks_like_proxy_header(data: bytes) -> bool | None:
    """``True`` if ``data`` starts a PROXY header, ``False`` if it cannot, ``None`` if too few
    bytes have arrived to tell."""
    for prefix in (_V1_PREFIX, V2_SIGNATURE):
        n = min(len(data), len(prefix))
        if data[:n] == prefix[:n]:
            if n == len(prefix):
                return True
            return None
    return False


def parse_proxy_header(data: bytes) -> ProxyHeader | None:
    """Parse the header at the start of ``data``; ``None`` while more bytes are needed.

    Raises :class:`ProxyProtocolError` when ``data`` is not a valid v1 or v2 header.
    """
    if data.startswith(V2_SIGNATURE[: len(data)]) and len(data) < len(V2_SIGNATURE):
        return None
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if _V1_PREFIX.startswith(data[: len(_V1_PREFIX)]) and len(data) < len(_V1_PREFIX):
        return None
    if data.startswith(_V1_PREFIX):
        return _parse_v1(data)
    raise ProxyProtocolError("no PROXY protocol signature")


def _port(text: bytes) -> int:
    # Ports are decimal without leading zeros (spec §2.1).
    if not text.isdigit() or (len(text) > 1 and text.startswith(b"0")):
        raise ProxyProtocolError(f"bad port {text!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"port {port} out of range")
    return port


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(data) >= V1_MAX_LENGTH:
            raise ProxyProtocolError("v1 header longer than 107 bytes")
        return None
    parts = data[:end].split(b" ")
    length = end + 2
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        # The proxy could not tell (spec §2.1): the rest of the line is ignored.
        return ProxyHeader(length, None, None, 1)
    if len(parts) != 6:
        raise ProxyProtocolError("v1 header needs 6 fields")
    _, proto, src, dst, sport, dport = parts
    family = {b"TCP4": ipaddress.IPv4Address, b"TCP6": ipaddress.IPv6Address}.get(proto)
    if family is None:
        raise ProxyProtocolError(f"v1 protocol {proto!r}")
    try:
        client = str(family(src.decode("ascii")))
        server = str(family(dst.decode("ascii")))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProxyProtocolError(f"v1 address: {exc}") from None
    return ProxyHeader(length, (client, _port(sport)), (server, _port(dport)), 1)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < _V2_HEAD.size:
        return None
    _, ver_cmd, fam, addr_len = _V2_HEAD.unpack_from(data)
    length = _V2_HEAD.size + addr_len
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"v2 version {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command not in (0, 1):
        raise ProxyProtocolError(f"v2 command {command}")
    if len(data) < length:
        return None
    if command == 0:
        # LOCAL: the proxy speaking for itself; addresses (if any) are to be ignored.
        return ProxyHeader(length, None, None, 2)
    family, transport = fam >> 4, fam & 0x0F
    body = data[_V2_HEAD.size : length]
    if family == 0 or transport not in (1, 2):
        # UNSPEC family, or a transport we do not model (spec: accept, use real addresses).
        return ProxyHeader(length, None, None, 2)
    if family == 1:  # AF_INET: 4 + 4 + 2 + 2 bytes
        if len(body) < 12:
            raise ProxyProtocolError("v2 IPv4 address block too short")
        src4, dst4, sport, dport = struct.unpack_from("!4s4sHH", body)
        return ProxyHeader(
            length,
            (str(ipaddress.IPv4Address(src4)), sport),
            (str(ipaddress.IPv4Address(dst4)), dport),
            2,
        )
    if family == 2:  # AF_INET6: 16 + 16 + 2 + 2 bytes
        if len(body) < 36:
            raise ProxyProtocolError("v2 IPv6 address block too short")
        src6, dst6, sport, dport = struct.unpack_from("!16s16sHH", body)
        return ProxyHeader(
            length,
            (str(ipaddress.IPv6Address(src6)), sport),
            (str(ipaddress.IPv6Address(dst6)), dport),
            2,
        )
    if family == 3:  # AF_UNIX: no port to report; keep the connection's addresses.
        return ProxyHeader(length, None, None, 2)
    raise ProxyProtocolError(f"v2 address family {family}")


def build_v1(client: tuple[str, int], server: tuple[str, int]) -> bytes:
    """A v1 header for ``client`` -> ``server`` (used by tests and tools)."""
    proto = "TCP6" if ":" in client[0] else "TCP4"
    return f"PROXY {proto} {client[0]} {server[0]} {client[1]} {server[1]}\r\n".encode("ascii")


def build_v2(client: tuple[str, int] | None, server: tuple[str, int] | None,
             tlvs: bytes = b"") -> bytes:
    """A v2 header (``PROXY`` over TCP, or ``LOCAL`` when ``client`` is ``None``)."""
    if client is None or server is None:
        return V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, len(tlvs)) + tlvs
    src, dst = ipaddress.ip_address(client[0]), ipaddress.ip_address(server[0])
    fam = 0x11 if src.version == 4 else 0x21
    body = src.packed + dst.packed + struct.pack("!HH", client[1], server[1]) + tlvs
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, fam, len(body)) + body
