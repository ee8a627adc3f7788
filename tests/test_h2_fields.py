"""The one-pass HTTP/2 field validation (_sansio/_h2_fields.py) against h2's own pipeline as
the oracle: on generated field sections both give the same verdict, and an accepted section
yields the fields h2 would have handed on (pseudo-header fields split out, cookies joined)."""

from __future__ import annotations

import h2.utilities
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trio_http._sansio._h2_fields import (
    MalformedFields,
    check_trailer_fields,
    parse_request_fields,
)

Fields = list[tuple[bytes, bytes]]

_REQUEST = h2.utilities.HeaderValidationFlags(
    is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False
)
_TRAILER = _REQUEST._replace(is_trailer=True)


def h2_verdict(fields: Fields, flags: h2.utilities.HeaderValidationFlags) -> Fields | None:
    """What h2 (validate_inbound_headers and normalize_inbound_headers on) makes of
    ``fields``: the list it hands on, or None when it refuses them."""
    try:
        normalized = h2.utilities.normalize_inbound_headers(fields, flags)
        return [tuple(f) for f in h2.utilities.validate_headers(normalized, flags)]
    except h2.exceptions.ProtocolError:
        return None


def stricter_than_h2(fields: Fields) -> bool:
    """The two cases we refuse and h2 lets through, since it joins split cookie fields before
    it looks: a cookie field before a pseudo-header field (RFC 9113 §8.3), and a cookie
    field whose own value starts or ends with whitespace (§8.2.1)."""
    seen_cookie = False
    for name, value in fields:
        if name == b"cookie":
            seen_cookie = True
            if value != value.strip(b" \t"):
                return True
        elif name[:1] == b":" and seen_cookie:
            return True
    return False


_NAMES = st.sampled_from([
    b":method", b":scheme", b":authority", b":path", b":protocol", b":status", b":x", b":",
    b"host", b"cookie", b"te", b"connection", b"upgrade", b"keep-alive", b"accept",
    b"x-a", b"X-Up", b"", b"x:y", b"x y", b"x\x7f", b"\xc3\xa9", b"content-type", b"a\"b",
])
_VALUES = st.sampled_from([
    b"GET", b"CONNECT", b"POST", b"http", b"https", b"/", b"/p?q", b"", b"a", b"b", b"a",
    b"trailers", b"Trailers", b"gzip", b" a", b"a ", b"\ta", b"a\t", b"a b", b"a\x00",
    b"a\r\nb", b"\n", b"websocket", b"x=1", b"\xff\xfe", b"a\x7fb",
])
_FIELD = st.tuples(_NAMES, _VALUES)
#: Fields that are fine alone, so that one odd field in their midst decides the verdict.
_PLAIN_FIELD = st.tuples(
    st.sampled_from([b"accept", b"host", b"cookie", b"te", b"x-a", b"content-type"]),
    st.sampled_from([b"a", b"b", b"trailers", b"x=1", b"", b"a b", b"/"]),
)
_VALID_GET: Fields = [
    (b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/"),
]


_PSEUDO_VALUES = {
    b":method": st.sampled_from([b"GET", b"CONNECT", b"POST", b"", b"G T"]),
    b":scheme": st.sampled_from([b"https", b"", b" http"]),
    b":authority": st.sampled_from([b"a", b"b", b"", b"a\x00"]),
    b":path": st.sampled_from([b"/", b"", b"/p?q", b"/ "]),
    b":protocol": st.sampled_from([b"websocket", b""]),
}


@st.composite
def _pseudo_fields(draw: st.DrawFn) -> Fields:
    """Each request pseudo-header field present or not, with an odd value now and then, in
    any order (mostly the usual one)."""
    fields = [
        (name, draw(values)) for name, values in _PSEUDO_VALUES.items()
        if draw(st.integers(0, 9)) < (9 if name != b":protocol" else 2)
    ]
    return draw(st.permutations(fields)) if draw(st.integers(0, 3)) == 0 else fields


@settings(max_examples=3000, deadline=None)
@given(
    prefix=st.one_of(st.lists(_FIELD, max_size=2), _pseudo_fields()),
    use_valid=st.booleans(),
    plain=st.lists(_PLAIN_FIELD, max_size=4),
    odd=st.lists(_FIELD, max_size=1),
    at=st.integers(min_value=0, max_value=4),
)
@example(prefix=[], use_valid=True, plain=[(b"cookie", b"a ")], odd=[(b"cookie", b"b")], at=1)
@example(prefix=[], use_valid=False, plain=[], odd=[(b":method", b"CONNECT")], at=0)
def test_request_verdict_matches_h2(
    prefix: Fields, use_valid: bool, plain: Fields, odd: Fields, at: int
) -> None:
    # Mostly-valid sections (a valid request, plain fields and at most one odd one) reach
    # the deeper checks; the prefix tries pseudo-header fields in any order.
    rest = [*plain[:at], *odd, *plain[at:]]
    fields = [*prefix, *(_VALID_GET if use_valid else []), *rest]
    expected = h2_verdict(fields, _REQUEST)
    try:
        head = parse_request_fields(fields)
    except MalformedFields:
        assert expected is None or stricter_than_h2(fields), fields
        return
    assert expected is not None, fields
    regular = [f for f in expected if f[0][:1] != b":"]
    authority = dict(expected).get(b":authority")
    if authority and not any(n == b"host" for n, _ in regular):
        regular.insert(0, (b"host", authority))
    assert head.headers == regular
    pseudo = {n: v for n, v in expected if n[:1] == b":"}
    assert head.method == pseudo[b":method"]
    assert head.target == pseudo.get(b":path", b"")


@settings(max_examples=1500, deadline=None)
@given(st.lists(_FIELD, max_size=6))
def test_trailer_verdict_matches_h2(fields: Fields) -> None:
    try:
        check_trailer_fields(fields)
    except MalformedFields:
        assert h2_verdict(fields, _TRAILER) is None or stricter_than_h2(fields), fields
    else:
        assert h2_verdict(fields, _TRAILER) is not None, fields


@pytest.mark.parametrize(("fields", "reason"), [
    ([*_VALID_GET, (b"x", b"a\x00")], "NUL, CR or LF"),
    ([*_VALID_GET, (b"X", b"1")], "invalid field name"),
    ([*_VALID_GET, (b"x", b"1 ")], "whitespace"),
    ([(b"cookie", b"a"), *_VALID_GET], "after a regular field"),
    ([*_VALID_GET, (b"te", b"gzip")], "te"),
])
def test_malformed_fields_say_why(fields: Fields, reason: str) -> None:
    with pytest.raises(MalformedFields, match=reason):
        parse_request_fields(fields)


def test_an_ordinary_request_is_split() -> None:
    head = parse_request_fields([
        *_VALID_GET, (b"accept", b"*/*"), (b"cookie", b"a=1"), (b"cookie", b"b=2"),
    ])
    assert (head.method, head.target, head.authority, head.scheme, head.protocol) == (
        b"GET", b"/", b"a", "https", None
    )
    assert head.headers == [(b"host", b"a"), (b"accept", b"*/*"), (b"cookie", b"a=1; b=2")]
