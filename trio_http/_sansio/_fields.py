"""Validation of the fields an application sends (RFC 9110 §5.1, §5.5), shared by HTTP/1.1,
HTTP/2 and HTTP/3, done once, cheaply, before the protocol library serialises them.

Outbound validation matters because a CR or LF in a value splits the response on HTTP/1.1
(CVE-2020-7695) and on any HTTP/1.1 hop behind an HTTP/2 proxy. ``bytes.translate(None, allowed)``
leaves only the offending bytes and runs in C: several times cheaper than the per-field regular
expressions h11 and h2 would otherwise apply, on the hottest path of every response.
"""

from __future__ import annotations

__all__ = ["TOKEN_BYTES", "VALUE_BYTES", "check_field"]

#: tchar (RFC 9110 §5.6.2)
TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: field-vchar, SP and HTAB (RFC 9110 §5.5), obs-text included
VALUE_BYTES = bytes([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])


#: Names and short values that passed the check, so that the fields an application sends on
#: every response (content-type, its value, server, date...) cost a set lookup, not a
#: translate(): that builds its 256-byte table on every call, about 2,000 instructions each
#: (callgrind), several times per response. Each set is emptied when full, so stays bounded.
_checked_names: set[bytes] = set()
_checked_values: set[bytes] = set()
_CHECKED_MAX = 1024  # entries per set
_CACHED_VALUE_MAX = 128  # bytes: longer values are checked every time


def check_field(name: bytes, value: bytes) -> None:
    """Raise :class:`ValueError` unless ``name`` is a token and ``value`` has no control
    characters other than HTAB. ``name`` and ``value`` are ``bytes``."""
    if name not in _checked_names:
        if not name or name.translate(None, TOKEN_BYTES):
            raise ValueError(f"invalid header name {name!r}")
        _remember(_checked_names, name)
    if value not in _checked_values:
        if value.translate(None, VALUE_BYTES):
            raise ValueError(f"invalid header value for {name!r}")
        if len(value) <= _CACHED_VALUE_MAX:
            _remember(_checked_values, value)


def _remember(checked: set[bytes], item: bytes) -> None:
    if len(checked) >= _CHECKED_MAX:
        checked.clear()
    checked.add(item)
