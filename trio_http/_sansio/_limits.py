"""Request limits shared by HTTP/2 and HTTP/3, where a request head arrives whole: the
status a stream is refused with before its application runs."""

from __future__ import annotations

from ._events import Headers

__all__ = ["refusal_status"]


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
