"""Validation of the fields an application sends (RFC 9110 §5.1, §5.5), shared by HTTP/1.1,
HTTP/2 and HTTP/3, done once, cheaply, before the protocol library serialises them.

Outbound validation matters because a CR or LF in a value splits the response on HTTP/1.1
(CVE-2020-7695) and on any HTTP/1.1 hop behind an HTTP/2 proxy. ``bytes.translate(None, allowed)``
leaves only the offending bytes and runs in C: several times cheaper than the per-field regular
expressions h11 and h2 would otherwise apply, on the hottest path of every response. The same
token and value checks serve the HTTP/1.1 request checks (``_http1._check_request``), and both
remember the strings that passed (see ``checked_values`` below).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "CONNECTION_FIELDS",
    "NOT_IN_RESPONSES",
    "TOKEN_BYTES",
    "VALUE_BYTES",
    "check_field",
    "checked_tokens",
    "checked_values",
    "remember_checked",
    "response_fields",
    "token_ok",
    "value_ok",
]

#: Connection-specific fields (RFC 9110 §7.6.1): malformed in HTTP/2 and HTTP/3 messages
#: (RFC 9113 §8.2.2, RFC 9114 §4.2), meaningless in a 1xx or a trailer. TE is one too, but a
#: request may carry ``te: trailers``, so request checks treat it apart.
CONNECTION_FIELDS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
#: What an HTTP/2 or HTTP/3 response, 1xx or trailer leaves out of the app's fields.
NOT_IN_RESPONSES = CONNECTION_FIELDS | {b"te"}

#: tchar (RFC 9110 §5.6.2)
TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: field-vchar, SP and HTAB (RFC 9110 §5.5), obs-text included
VALUE_BYTES = bytes([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])


#: Tokens and short field values that passed their check, so that what every request and
#: response repeats (GET, Host, content-type and its value, server, date...) costs a set
#: lookup, not a translate(): that builds its 256-byte table on every call, about 2,000
#: instructions (callgrind), many times per request. Callers test membership first
#: (``x in checked_values or value_ok(x)``: no call on the common path). Each set only ever
#: holds strings that passed, and is emptied when full, so it stays bounded.
checked_tokens: set[bytes] = set()
checked_values: set[bytes] = set()
_CHECKED_MAX = 1024  # entries per set
_CACHED_MAX = 128  # bytes: longer strings are checked every time


def remember_checked(checked: set[bytes], item: bytes) -> None:
    """Add ``item``, which passed its check, to the memo ``checked`` (within the bounds)."""
    if len(item) <= _CACHED_MAX:
        if len(checked) >= _CHECKED_MAX:
            checked.clear()
        checked.add(item)


def token_ok(name: bytes) -> bool:
    """Whether ``name`` (bytes) is a token (RFC 9110 §5.6.2), remembered if so."""
    if not name or name.translate(None, TOKEN_BYTES):
        return False
    remember_checked(checked_tokens, name)
    return True


def value_ok(value: bytes) -> bool:
    """Whether ``value`` (bytes) has no control characters other than HTAB (RFC 9110 §5.5),
    remembered if so."""
    if value.translate(None, VALUE_BYTES):
        return False
    remember_checked(checked_values, value)
    return True


def check_field(name: bytes, value: bytes) -> None:
    """Raise :class:`ValueError` unless ``name`` is a token and ``value`` has no control
    characters other than HTAB. ``name`` and ``value`` are ``bytes``."""
    if name not in checked_tokens and not token_ok(name):
        raise ValueError(f"invalid header name {name!r}")
    if value not in checked_values and not value_ok(value):
        raise ValueError(f"invalid header value for {name!r}")


def response_fields(
    block: list[tuple[bytes, bytes]],
    headers: Iterable[Sequence[bytes]],
    defaults: Sequence[tuple[bytes, bytes]],
    drop: frozenset[bytes],
) -> None:
    """Append to ``block`` a response's fields for HTTP/2 or HTTP/3, in one pass: ``headers``
    as an application gives them (bytes-like pairs, names in any case), checked
    (:func:`check_field`), names lowercased, values without surrounding whitespace, those
    named in ``drop`` (connection-specific fields) left out; then each of ``defaults``
    (already valid and lowercase: server, date...) whose name the application did not use.
    Raises :class:`ValueError` (or :class:`TypeError` for a field that is not bytes-like)."""
    names: list[bytes] = []
    for name, value in headers:
        if type(name) is not bytes or type(value) is not bytes:
            name, value = bytes(name), bytes(value)
        check_field(name, value)
        name = name.lower()
        names.append(name)
        if name not in drop:
            block.append((name, value.strip(b" \t")))
    for field in defaults:
        if field[0] not in names:
            block.append(field)
