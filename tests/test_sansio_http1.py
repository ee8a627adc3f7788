"""The pure HTTP/1.1 core, synchronously, with hypothesis: any chunking of valid input parses
the same, and no input makes it raise anything but ProtocolError."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_http._errors import ProtocolError
from trio_http._sansio._events import (
    NEED_DATA,
    PAUSED,
    ConnectionTerminated,
    Data,
    EndOfMessage,
    Request,
)
from trio_http._sansio._http1 import H1Connection

# Every test here runs over h11 and over httptools (conftest.h1_parser).
pytestmark = pytest.mark.usefixtures("h1_parser")

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

VALID = (
    b"GET /a%20b?x=1 HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\n\r\n"
    b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\nX-Y: z\r\n\r\nhello world"
    b"PUT /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer-A: 1\r\n\r\n"
    b"HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
)


def respond(conn: H1Connection) -> None:
    conn.send_response(200, [(b"content-length", b"2")])
    conn.send_data(b"ok")
    conn.send_end()
    conn.data_to_send()


def drive(conn: H1Connection, chunks: list[bytes], *, eof: bool = True) -> list[Any]:
    """Feed ``chunks``, answering each request as soon as it is complete, and return a
    normalised transcript of the events."""
    out: list[Any] = []
    pending = list(chunks)
    body = bytearray()
    eof_sent = False
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA:
            if pending:
                conn.receive_data(pending.pop(0))
            elif eof and not eof_sent:
                conn.receive_eof()
                eof_sent = True
            else:
                return out
        elif isinstance(ev, Request):
            out.append(("request", ev.method, ev.target, ev.headers, ev.http_version))
        elif isinstance(ev, Data):
            body += ev.data
        elif isinstance(ev, EndOfMessage):
            out.append(("body", bytes(body), ev.trailers))
            body.clear()
            respond(conn)
            if not conn.start_next_cycle():
                out.append("close")
                return out
        elif ev is PAUSED:
            raise AssertionError("paused although every response was sent")
        elif isinstance(ev, ConnectionTerminated):
            out.append("eof")
            return out
        else:
            raise AssertionError(ev)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for p in [*points, len(data)]:
        chunks.append(data[last:p])
        last = p
    return [c for c in chunks if c]


def test_reference_transcript():
    t = drive(H1Connection(), [VALID])
    assert [e[0] if isinstance(e, tuple) else e for e in t] == [
        "request", "body", "request", "body", "request", "body", "request", "body", "close",
    ]
    assert t[1] == ("body", b"", [])
    assert t[3] == ("body", b"hello world", [])
    assert t[5] == ("body", b"hello world", [(b"trailer-a", b"1")])
    assert t[6][1] == b"HEAD"


@SETTINGS
@given(st.lists(st.integers(min_value=0, max_value=len(VALID)), max_size=40))
def test_any_chunking_parses_the_same(cuts):
    expected = drive(H1Connection(), [VALID])
    assert drive(H1Connection(), split(VALID, cuts)) == expected


@SETTINGS
@given(st.lists(st.integers(min_value=0, max_value=len(VALID))))
def test_single_bytes_and_chunks_agree(cuts):
    one_by_one = [VALID[i : i + 1] for i in range(len(VALID))]
    assert drive(H1Connection(), one_by_one) == drive(H1Connection(), split(VALID, cuts))


FRAGMENTS = [
    b"GET ", b"POST ", b"/", b"/x?y", b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", b"Host: h\r\n",
    b"Content-Length: 3\r\n", b"Content-Length: x\r\n", b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n", b"Expect: 100-continue\r\n", b"Upgrade: h2c\r\n",
    b"Connection: upgrade\r\n", b"\r\n", b"abc", b"3\r\nabc\r\n", b"0\r\n\r\n", b"zz\r\n",
    b"\x00", b"\xff", b" ", b":", b"\n", b"PRI * HTTP/2.0\r\n", b"CONNECT a:1 HTTP/1.1\r\n",
]

fuzz_input = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=20)), max_size=30
)


def fuzz(chunks: list[bytes], max_head: int = 16384) -> None:
    conn = H1Connection(max_request_header_size=max_head)
    try:
        drive(conn, chunks)
    except ProtocolError as exc:
        assert exc.status_code in (400, 405, 413, 414, 431, 501, 505)
        conn.send_error(exc.status_code, str(exc))
        out = conn.data_to_send()
        # The error response is always well-formed, unless a response had started already.
        if out:
            assert out.startswith(f"HTTP/1.1 {exc.status_code} ".encode())
            assert b"connection: close" in out.lower()
    except ValueError as exc:  # pragma: no cover - would be a server bug
        pytest.fail(f"ValueError escaped: {exc!r}")


@SETTINGS
@given(fuzz_input)
def test_arbitrary_input_raises_only_protocol_error(chunks):
    fuzz(chunks)


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_protocol_error(data):
    fuzz([data])


@SETTINGS
@given(fuzz_input)
def test_small_header_limit_raises_only_protocol_error(chunks):
    fuzz(chunks, max_head=64)


def test_oversized_head_in_one_chunk_is_431():
    conn = H1Connection(max_request_header_size=100)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 200 + b"\r\n\r\n")
    with pytest.raises(ProtocolError) as info:
        conn.next_event()
    assert info.value.status_code == 431


def test_oversized_head_arriving_slowly_is_431():
    conn = H1Connection(max_request_header_size=100)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 200)
    with pytest.raises(ProtocolError) as info:
        conn.next_event()
    assert info.value.status_code == 431


def test_pipelined_request_waits_for_response():
    conn = H1Connection()
    conn.receive_data(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert isinstance(conn.next_event(), Request)
    assert isinstance(conn.next_event(), EndOfMessage)
    assert conn.next_event() is PAUSED
    respond(conn)
    assert conn.start_next_cycle()
    second = conn.next_event()
    assert isinstance(second, Request) and second.target == b"/2"


def test_head_response_drops_body_and_keeps_length():
    conn = H1Connection()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    conn.next_event()
    conn.next_event()
    conn.send_response(200, [(b"content-length", b"5")])
    conn.send_data(b"hello")
    conn.send_end()
    out = conn.data_to_send()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert out.endswith(b"\r\n\r\n")
    assert b"hello" not in out


def test_expect_continue_flags():
    conn = H1Connection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n"
                      b"Expect: 100-continue\r\n\r\n")
    req = conn.next_event()
    assert isinstance(req, Request) and req.expect_continue
    assert conn.waiting_for_100_continue
    assert conn.next_event() is NEED_DATA
    conn.send_informational(100, [])
    assert conn.data_to_send() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not conn.waiting_for_100_continue


def test_invalid_app_response_is_value_error():
    conn = H1Connection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    conn.next_event()
    with pytest.raises(ValueError):
        conn.send_response(200, [(b"bad name", b"v")])
    with pytest.raises(ValueError):
        conn.send_response(200, [(b"x", b"a\r\nb")])
