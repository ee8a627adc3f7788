"""check_field (_sansio/_fields.py), the check of every field an application sends: the same
verdict on a first call and on a later one answered from its memo of checked names and values,
and a memo that stays bounded."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_http._sansio import _fields
from trio_http._sansio._fields import check_field

# RFC 9110 §5.6.2 (token) and §5.5 (field-value: VCHAR, obs-text, SP, HTAB), written out
# independently of the module's byte tables.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")


def valid(name: bytes, value: bytes) -> bool:
    return bool(_TOKEN.fullmatch(name)) and bool(_VALUE.fullmatch(value))


def verdict(name: bytes, value: bytes) -> bool:
    try:
        check_field(name, value)
    except ValueError:
        return False
    return True


_BYTES = st.binary(max_size=6) | st.sampled_from(
    [b"content-type", b"text/plain", b"a b", b"a\r\nb", b"x\x00", b"\t", b"", b"caf\xc3\xa9"]
)


@settings(max_examples=2000, deadline=None)
@given(_BYTES, _BYTES)
def test_verdict_matches_the_rfc_first_and_when_remembered(name: bytes, value: bytes) -> None:
    expected = valid(name, value)
    assert verdict(name, value) is expected
    assert verdict(name, value) is expected  # now from the memo if it passed


def test_a_valid_value_is_not_taken_for_a_valid_name() -> None:
    check_field(b"content-type", b"text/plain")
    with pytest.raises(ValueError, match="invalid header name"):
        check_field(b"text/plain", b"x")  # "/" is no token character
    check_field(b"x", b"ok")
    with pytest.raises(ValueError, match="invalid header value"):
        check_field(b"x", b"ok\r\nInjected: 1")


def test_the_memo_stays_bounded() -> None:
    for i in range(3 * _fields._CHECKED_MAX):
        check_field(b"x-%d" % i, b"%d" % i)
    assert len(_fields.checked_tokens) <= _fields._CHECKED_MAX
    assert len(_fields.checked_values) <= _fields._CHECKED_MAX
    check_field(b"x", b"v" * 1000)
    assert b"v" * 1000 not in _fields.checked_values  # long values are checked each time


def test_request_checks_remembered_only_where_they_hold_alone() -> None:
    from trio_http._errors import ProtocolError
    from trio_http._sansio._http1 import _check_request

    def check(method: bytes, target: bytes, host: bytes) -> None:
        _check_request(method, target, b"1.1", [(b"host", host)])

    for _ in range(2):  # the second time from the memos
        check(b"GET", b"/a", b"example.com")
        check(b"GET", b"http://example.com/a", b"example.com")
    # An absolute-form target is checked against Host every time, not remembered.
    with pytest.raises(ProtocolError, match="Host does not match"):
        check(b"GET", b"http://example.com/a", b"other.example")
    with pytest.raises(ProtocolError, match="invalid Host"):
        check(b"GET", b"/a", b"exa mple.com")
    with pytest.raises(ProtocolError, match="invalid method"):
        check(b"G(T", b"/a", b"example.com")
    with pytest.raises(ProtocolError, match="control character"):
        _check_request(b"GET", b"/a", b"1.1", [(b"host", b"example.com"), (b"x", b"a\x01")])
    # "*" is for OPTIONS alone, whatever passed before.
    check(b"OPTIONS", b"*", b"example.com")
    with pytest.raises(ProtocolError, match="asterisk"):
        check(b"GET", b"*", b"example.com")


def test_response_fields_one_pass() -> None:
    from trio_http._sansio._fields import response_fields

    block: list[tuple[bytes, bytes]] = [(b":status", b"200")]
    response_fields(
        block,
        [(b"Content-Type", b" text/plain\t"), (b"Connection", b"close"),
         [bytearray(b"X-A"), memoryview(b"1")], (b"server", b"app")],
        [(b"server", b"trio_http"), (b"date", b"D")],
        frozenset({b"connection"}),
    )
    # Lowercase names, trimmed values, the connection-specific field dropped whatever its
    # case, bytes-like accepted, and a default only where the app set none.
    assert block == [(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-a", b"1"),
                     (b"server", b"app"), (b"date", b"D")]
    with pytest.raises(ValueError, match="invalid header value"):
        response_fields([], [(b"x", b"a\nb")], [], frozenset())
    with pytest.raises(ValueError, match="invalid header name"):
        response_fields([], [(b"x y", b"1")], [], frozenset())
    with pytest.raises(TypeError):
        response_fields([], [("x", "1")], [], frozenset())  # type: ignore[list-item]
