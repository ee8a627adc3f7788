"""The httptools HTTP/1.1 parser against the h11 one: same transcripts, same verdicts on arbitrary
input, same bytes on the wire, and the parts llhttp handles differently (upgrades with a body,
HTTP/1.0 framing, the pipelining bound)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from trio_http import Config
from trio_http._errors import ConfigError, ProtocolError
from trio_http._sansio._events import PAUSED, Data, EndOfMessage, Request
from trio_http._sansio._http1 import H1Connection

from . import test_sansio_http1 as sansio

httptools_mod = pytest.importorskip("trio_http._sansio._http1_httptools")
HT = httptools_mod.HttptoolsH1Connection
PARSERS = [H1Connection, HT]


def verdict(cls: Any, chunks: list[bytes]) -> Any:
    conn = cls()
    try:
        return ("ok", sansio.drive(conn, chunks))
    except ProtocolError as exc:
        return ("error", exc.status_code, str(exc))


def test_reference_transcripts_agree():
    assert sansio.drive(HT(), [sansio.VALID]) == sansio.drive(H1Connection(), [sansio.VALID])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sansio.fuzz_input)
def test_parsers_accept_and_refuse_alike(chunks):
    ours, ref = verdict(HT, chunks), verdict(H1Connection, chunks)
    if ref[0] == "ok" and ours[0] == "ok":
        assert ours == ref
    # llhttp is stricter than h11 (bare LF, unknown methods, obs-fold): it may refuse what h11
    # takes, never the reverse.
    if ref[0] == "error" and ours[0] == "ok":
        # Only stray CR/LF after the last message, before EOF: llhttp skips them (RFC 9112
        # §2.2), h11 calls them a cut-off request.
        data = b"".join(chunks)
        end = data.rfind(b"\r\n\r\n")
        assert not data[end + 4 if end >= 0 else 0:].strip(b"\r\n"), ref


def wire(cls: Any, request: bytes, status: int, headers: list[tuple[bytes, bytes]],
         body: list[bytes], trailers: Any = None) -> bytes:
    conn = cls()
    conn.receive_data(request)
    assert isinstance(conn.next_event(), Request)
    conn.send_response(status, headers)
    for part in body:
        conn.send_data(part)
    conn.send_end(trailers)
    return conn.data_to_send()


GET11 = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
RESPONSES = [
    (GET11, 200, [(b"content-length", b"2")], [b"ok"], None),
    (GET11, 200, [(b"content-type", b"text/plain")], [b"a", b"bc"], None),
    (GET11, 200, [(b"transfer-encoding", b"chunked"), (b"content-length", b"3")], [b"abc"],
     None),
    (GET11, 200, [], [b"abc"], [(b"x-trailer", b"1")]),
    (GET11, 204, [], [b"dropped"], None),
    (GET11, 304, [(b"content-length", b"10")], [], None),
    (b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", 200, [], [b"dropped"], None),
    (b"GET / HTTP/1.0\r\n\r\n", 200, [], [b"until close"], None),
    (b"GET / HTTP/1.0\r\n\r\n", 200, [(b"content-length", b"1")], [b"x"], None),
    (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 200, [], [b"x"], None),
    (GET11, 200, [(b"connection", b"close"), (b"content-length", b"1")], [b"x"], None),
    (GET11, 599, [(b"X-Mixed", b" v ")], [], None),
]


@pytest.mark.parametrize(("request_bytes", "status", "headers", "body", "trailers"), RESPONSES)
def test_same_bytes_on_the_wire(request_bytes, status, headers, body, trailers):
    assert wire(HT, request_bytes, status, headers, body, trailers) == wire(
        H1Connection, request_bytes, status, headers, body, trailers
    )


@pytest.mark.parametrize("cls", PARSERS)
def test_upgrade_with_body_keeps_new_protocol_bytes(cls):
    conn = cls()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                      b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
                      b"Content-Length: 5\r\n\r\nhel")
    req = conn.next_event()
    assert isinstance(req, Request) and req.upgrade == b"h2c"
    body = b""
    while True:
        ev = conn.next_event()
        if isinstance(ev, Data):
            body += ev.data
        elif isinstance(ev, EndOfMessage):
            break
        else:
            conn.receive_data(b"loPRI * HTTP/2.0")
    assert body == b"hello"
    assert conn.switch_protocol(101, [(b"upgrade", b"h2c")]).startswith(b"PRI * HTTP/2.0")


@pytest.mark.parametrize("cls", PARSERS)
def test_declined_upgrade_goes_on_with_the_next_request(cls):
    conn = cls()
    conn.receive_data(b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n"
                      b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    assert conn.next_event().upgrade == b"foo"
    assert isinstance(conn.next_event(), EndOfMessage)
    assert conn.next_event() is PAUSED
    sansio.respond(conn)
    assert conn.start_next_cycle()
    assert conn.next_event().target == b"/b"


def test_pipelined_requests_count_as_buffered():
    conn = HT(max_request_header_size=1000)
    conn.receive_data(GET11 * 50)
    assert isinstance(conn.next_event(), Request)
    assert isinstance(conn.next_event(), EndOfMessage)
    assert conn.next_event() is PAUSED
    # The I/O layer stops reading past max_request_header_size of these.
    assert conn.buffered > 1000


def test_config_selects_parser():
    assert Config(h1_parser="httptools").h1_parser == "httptools"
    with pytest.raises(ConfigError):
        Config(h1_parser="fast")  # type: ignore[arg-type]


DEFAULTS = [(b"server", b"trio_http"), (b"date", b"Sat, 21 Nov 2026 10:00:00 GMT")]


@pytest.mark.parametrize("cls", PARSERS)
@pytest.mark.parametrize(("request_bytes", "headers", "length", "expect"), [
    # The app's own fields first (lowercased), then the defaults it did not set, then the
    # length of a body in hand.
    (GET11, [(b"Content-Type", b"text/plain")], 2,
     [b"content-type: text/plain", b"server: trio_http",
      b"date: Sat, 21 Nov 2026 10:00:00 GMT", b"content-length: 2"]),
    (GET11, [(b"Server", b"mine"), (b"content-length", b"2")], 2,
     [b"server: mine", b"content-length: 2", b"date: Sat, 21 Nov 2026 10:00:00 GMT"]),
    (GET11, [(bytearray(b"x-a"), memoryview(b"1"))], None,
     [b"x-a: 1", b"server: trio_http", b"date: Sat, 21 Nov 2026 10:00:00 GMT",
      b"transfer-encoding: chunked"]),
    (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", [], 2,
     [b"server: trio_http", b"date: Sat, 21 Nov 2026 10:00:00 GMT", b"content-length: 2",
      b"connection: close"]),
])
def test_response_head_with_defaults_and_length(cls, request_bytes, headers, length, expect):
    conn = cls()
    conn.receive_data(request_bytes)
    assert isinstance(conn.next_event(), Request)
    conn.send_response(200, headers, content_length=length, defaults=DEFAULTS)
    conn.send_data(b"ok")
    conn.send_end()
    head = conn.data_to_send().split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 200 OK"
    assert [line.lower() for line in head[1:]] == [line.lower() for line in expect]


@pytest.mark.parametrize("cls", PARSERS)
@pytest.mark.parametrize(("status", "headers", "error"), [
    (None, [], ValueError), (99, [], ValueError), (600, [], ValueError),
    (200, [("x-str", b"v")], TypeError), (200, [(b"x", b"a\nb")], ValueError),
])
def test_invalid_response_heads_are_app_errors(cls, status, headers, error):
    conn = cls()
    conn.receive_data(GET11)
    conn.next_event()
    with pytest.raises(error):
        conn.send_response(status, headers, defaults=DEFAULTS)
