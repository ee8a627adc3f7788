"""Validation of the field sections an HTTP/2 client sends (RFC 9113 §8.2, §8.3), in one pass
that also splits out the pseudo-header fields and joins split ``cookie`` fields (§8.2.3).

Why not h2's own checks: h2 validates inbound fields through a chain of seven generators with
a Python loop over every byte of every field name and value. That was 11% of the instructions
of a whole h2c request (callgrind), more than the rest of this layer. Here the per-byte work is
``bytes.translate`` and ``bytes.strip`` in C over whole lists. The rules are h2's, no looser;
``tests/test_h2_fields.py`` checks that both verdicts agree on generated field sections. Two
cases are stricter, as RFC 9113 has them, where h2 joins split ``cookie`` fields before it
looks: a ``cookie`` field before a pseudo-header field (§8.3), and a ``cookie`` field whose
own value starts or ends with whitespace (§8.2.1). A violation is what §8.1.1 asks for: a
stream error (RST_STREAM with PROTOCOL_ERROR) for that request alone, where h2's checks ended
the whole connection.
"""

from __future__ import annotations

from hpack.table import HeaderTable

from ._fields import CONNECTION_FIELDS
from ._limits import RequestHead

__all__ = ["MalformedFields", "check_trailer_fields", "parse_request_fields"]

Field = tuple[bytes, bytes]

#: The pseudo-header fields of a request (RFC 9113 §8.3.1, RFC 8441 §4).
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
#: Regular field names of HPACK's static table (RFC 7541 Appendix A), all valid.
_COMMON_NAMES = frozenset(
    name for name, _ in HeaderTable.STATIC_TABLE
    if name[:1] != b":" and name not in CONNECTION_FIELDS
)
#: Bytes a field name may hold (§8.2.1: not 0x00-0x20, A-Z, 0x7f-0xff; a colon only first).
_NAME_BYTES = bytes(c for c in range(0x21, 0x7F) if not 0x41 <= c <= 0x5A and c != 0x3A)
#: Bytes a field value may hold (§8.2.1: not NUL, LF or CR).
_VALUE_BYTES = bytes(c for c in range(256) if c not in (0x00, 0x0A, 0x0D))


class MalformedFields(Exception):
    """A field section RFC 9113 §8.1.1 calls malformed; ``str()`` says why."""


def _check_names(names: list[bytes]) -> None:
    if _COMMON_NAMES.issuperset(names):
        return  # one set operation: most requests only send names of HPACK's static table
    # The whole list at once, in C (a colon is not a name byte, so a pseudo-header field
    # among the regular ones fails here too).
    if b"".join(names).translate(None, _NAME_BYTES) or b"" in names:
        bad = next(n for n in names if not n or n.translate(None, _NAME_BYTES))
        if bad[:1] == b":":
            raise MalformedFields(f"pseudo-header field {bad!r} after a regular field")
        raise MalformedFields(f"invalid field name {bad!r}")
    if not CONNECTION_FIELDS.isdisjoint(names):
        bad = next(n for n in names if n in CONNECTION_FIELDS)
        raise MalformedFields(f"connection-specific field {bad!r}")


def _check_values(fields: list[Field]) -> None:
    # Every value, pseudo-header fields' too (§8.2.1), in C as above.
    values = [f[1] for f in fields]
    if b"".join(values).translate(None, _VALUE_BYTES):
        raise MalformedFields("NUL, CR or LF in a field value")
    if [v.strip(b" \t") for v in values] != values:
        raise MalformedFields("field value with leading or trailing whitespace")


def _check_te(headers: list[Field]) -> None:
    for name, value in headers:
        if name == b"te" and value.lower() != b"trailers":
            raise MalformedFields(f"te: {value!r} (only 'trailers' is allowed)")


def _join_cookies(headers: list[Field]) -> list[Field]:
    cookie = b"; ".join([v for n, v in headers if n == b"cookie"])
    if cookie != cookie.strip(b" \t"):  # an empty cookie field, joined, leaves "; " at an end
        raise MalformedFields("cookie value with leading or trailing whitespace")
    return [f for f in headers if f[0] != b"cookie"] + [(b"cookie", cookie)]


def parse_request_fields(fields: list[Field]) -> RequestHead:
    """Validate a request's field section as decoded by HPACK (``(name, value)`` byte pairs,
    pseudo-header fields first) and split it into a :class:`RequestHead`; split ``cookie``
    fields are joined with ``"; "`` and placed last. Raises :class:`MalformedFields`.

    Apart from the four or five pseudo-header fields, the work is done on whole lists in C:
    a loop over the fields in Python cost more than the rest of the request's handling here.
    """
    pseudo: dict[bytes, bytes] = {}
    for name, value in fields:
        if name[:1] != b":":
            break
        if name not in _REQUEST_PSEUDO:
            raise MalformedFields(f"pseudo-header field {name!r} not allowed in a request")
        if name in pseudo:
            raise MalformedFields(f"duplicate pseudo-header field {name!r}")
        pseudo[name] = value
    headers = fields[len(pseudo):]
    names = [f[0] for f in headers]
    _check_names(names)
    _check_values(fields)
    if b"te" in names:
        _check_te(headers)
    hosts = names.count(b"host")
    if hosts > 1:
        raise MalformedFields("more than one host field")
    host = headers[names.index(b"host")][1] if hosts else None
    if b"cookie" in names:
        headers = _join_cookies(headers)

    method = pseudo.get(b":method")
    if method is None:
        raise MalformedFields("no :method")
    protocol = pseudo.get(b":protocol")
    if method == b"CONNECT" and protocol is None:
        # Plain CONNECT (§8.5): no :scheme or :path.
        if b":scheme" in pseudo or b":path" in pseudo:
            raise MalformedFields("CONNECT with :scheme or :path")
    else:
        if protocol is not None and method != b"CONNECT":
            raise MalformedFields(":protocol without CONNECT (RFC 8441 §4)")
        if b":scheme" not in pseudo or b":path" not in pseudo:
            raise MalformedFields("no :scheme or no :path")
    target = pseudo.get(b":path")
    if target is not None and not target:
        raise MalformedFields("empty :path")
    authority = pseudo.get(b":authority")
    if authority is None:
        if host is None:
            raise MalformedFields("neither :authority nor host")
    elif host is None:
        if authority:
            # ASGI apps look for Host (RFC 9113 §8.3.1: :authority stands for it).
            headers.insert(0, (b"host", authority))
    elif host != authority:
        raise MalformedFields(":authority and host differ")
    scheme = pseudo.get(b":scheme")
    return RequestHead(
        method, target or b"", authority or b"",
        scheme.decode("ascii", "replace") if scheme is not None else None,
        protocol.decode("ascii", "replace") if protocol is not None else None,
        headers,
    )


def check_trailer_fields(fields: list[Field]) -> None:
    """Validate a trailer section (RFC 9113 §8.1: no pseudo-header fields; §8.2.1, §8.2.2 as
    for any field). Raises :class:`MalformedFields`."""
    names = [f[0] for f in fields]
    if names and names[0][:1] == b":":
        raise MalformedFields(f"pseudo-header field {names[0]!r} in trailers")
    _check_names(names)
    _check_values(fields)
    if b"te" in names:
        _check_te(fields)
    if b"cookie" in names:
        _join_cookies(fields)  # the check of the joined value
