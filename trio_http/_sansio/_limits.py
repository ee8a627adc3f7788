"""Request heads as HTTP/2 and HTTP/3 deliver them (a whole field list with pseudo-header
fields): splitting out the pseudo-header fields, and the status a stream is refused with
before its application runs."""

from __future__ import annotations

from ._events import Headers

__all__ = ["RequestHead", "refusal_status"]


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
) -> int:
    """431 for more than ``max_fields`` fields, 414 when method and path exceed ``max_line``
    bytes, 413 when ``content-length`` exceeds ``max_body`` bytes; 0 when the request may go
    on. The same limits HTTP/1.1 applies to its request line and head (RFC 9110 §15.5)."""
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
