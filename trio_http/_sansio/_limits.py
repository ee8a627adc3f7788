"""Request heads as HTTP/2 and HTTP/3 deliver them (a whole field list with pseudo-header
fields): splitting out the pseudo-header fields, and the status a stream is refused with
before its application runs; and the hosts a server answers for (all protocols)."""

from __future__ import annotations

from collections.abc import Iterable

from ._events import Headers

__all__ = ["RequestHead", "ServerNames", "refusal_status"]

#: What a host may hold: reg-name, IP literal and port characters (RFC 3986 §3.2.2).
HOST_BYTES = (
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]%"
)


def _split_port(host: bytes) -> tuple[bytes, bytes]:
    """``host[:port]`` (RFC 9110 §7.2, lowercase) as (host, port); port ``b""`` when absent.
    An IP literal keeps its brackets; an unclosed one gives no host (``b""``)."""
    if host[:1] == b"[":
        end = host.find(b"]") + 1  # 0 when unclosed: no name at all
        rest = host[end:] if end else b""
        return host[:end], rest[1:] if rest[:1] == b":" else b""
    name, _, port = host.partition(b":")
    return name, port


class ServerNames:
    """The hosts a server answers for: a request whose Host (or ``:authority``) is not one of
    them is refused with 421 Misdirected Request (RFC 9110 §15.5.20) before its application
    runs, which keeps DNS-rebinding and stray virtual-host traffic away from the app.

    ``names`` are ``host`` (any port), ``host:port`` (that port only) or ``*.domain`` (every
    name below ``domain``, any port); IP literals in brackets (``[::1]``). Matching ignores
    case. Raises :class:`ValueError` for a name that cannot be a host."""

    __slots__ = ("_any_port", "_exact", "_suffixes")

    def __init__(self, names: Iterable[str]) -> None:
        self._exact: set[bytes] = set()  # "host:port" entries
        self._any_port: set[bytes] = set()  # "host" entries
        suffixes: list[bytes] = []
        for text in names:
            raw = text.strip().lower().encode("ascii", "replace")
            wildcard = raw.startswith(b"*.")
            body = raw[2:] if wildcard else raw
            name, port = _split_port(body)
            if (not name or body.translate(None, HOST_BYTES) or b"*" in body
                    or (port and not port.isdigit()) or (wildcard and port)):
                raise ValueError(f"{text!r} is not a host, host:port or *.domain")
            if wildcard:
                suffixes.append(b"." + name)
            elif port:
                self._exact.add(body)
            else:
                self._any_port.add(name)
        self._suffixes = tuple(suffixes)

    def allows(self, host: bytes) -> bool:
        """Whether a request for ``host`` (a Host or ``:authority`` value, ``host[:port]``;
        ``b""`` when the request named none) is served."""
        host = host.lower()
        if host in self._any_port or host in self._exact:
            return True
        name, _ = _split_port(host)
        return bool(name) and (name in self._any_port or name.endswith(self._suffixes))


class RequestHead:
    """A request's pseudo-header fields (RFC 9113 §8.3.1, RFC 9114 §4.3.1, RFC 8441 §4) and
    its other fields. ``headers`` gains ``host`` from ``:authority`` when it has none, since
    ASGI apps look for Host."""

    __slots__ = ("authority", "headers", "method", "protocol", "scheme", "target")

    def __init__(
        self, method: bytes, target: bytes, authority: bytes, scheme: str | None,
        protocol: str | None, headers: Headers,
    ) -> None:
        self.method = method
        self.target = target
        self.authority = authority
        self.scheme = scheme
        self.protocol = protocol
        self.headers = headers

    @classmethod
    def from_fields(cls, fields: Headers) -> RequestHead:
        """Split a field section already validated by the protocol library (HTTP/3: aioquic;
        HTTP/2 validates and splits in one pass, :func:`._h2_fields.parse_request_fields`)."""
        method = target = authority = b""
        scheme = protocol = None
        headers: Headers = []
        for name, value in fields:
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    target = value
                elif name == b":authority":
                    authority = value
                elif name == b":scheme":
                    scheme = value.decode("ascii", "replace")
                elif name == b":protocol":
                    protocol = value.decode("ascii", "replace")
            else:
                headers.append((name, value))
        if authority and not any(n == b"host" for n, _ in headers):
            headers.insert(0, (b"host", authority))
        return cls(method, target, authority, scheme, protocol, headers)


def refusal_status(
    method: bytes,
    target: bytes,
    headers: Headers,
    *,
    max_fields: int,
    max_line: int,
    max_body: int | None,
    server_names: ServerNames | None = None,
    authority: bytes = b"",
) -> int:
    """431 for more than ``max_fields`` fields, 414 when method and path exceed ``max_line``
    bytes, 413 when ``content-length`` exceeds ``max_body`` bytes, 421 when ``authority``
    (or else the Host field) is not one of ``server_names``; 0 when the request may go on.
    The same limits HTTP/1.1 applies to its request line and head (RFC 9110 §15.5)."""
    if server_names is not None:
        host = authority or next((v for n, v in headers if n == b"host"), b"")
        if not server_names.allows(host):
            return 421
    if len(headers) > max_fields:
        return 431
    if len(method) + len(target) > max_line:
        return 414
    if max_body is not None:
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and (
                len(value) > 20 or int(value) > max_body
            ):
                return 413
    return 0
