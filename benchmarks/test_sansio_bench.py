"""Micro-benchmarks of the sans-io layer: what parsing a request and serialising its response
costs per request, without a network, so that a regression shows on its own.

Run: ``python -m pytest benchmarks/test_sansio_bench.py --benchmark-only`` (not part of the test
run: ``tests/`` is the testpath). Each benchmark handles one keep-alive request per round.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import pytest

from trio_http._sansio._events import NEED_DATA, Data, EndOfMessage, Request
from trio_http._sansio._h1_parser import HTTPTOOLS_AVAILABLE, make_h1_connection
from trio_http._sansio._http2 import H2Connection

H1_PARSERS = ["h11", pytest.param("httptools", marks=pytest.mark.skipif(
    not HTTPTOOLS_AVAILABLE, reason="httptools is not installed"))]

GET = (b"GET /hello?x=1 HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: bench/1.0\r\n"
       b"Accept: */*\r\nAccept-Encoding: gzip, deflate\r\n\r\n")
POST_BODY = b"b" * 65536
POST = (b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % len(POST_BODY)) + POST_BODY
RESPONSE_HEADERS = [
    (b"content-type", b"text/plain"),
    (b"content-length", b"13"),
    (b"server", b"trio_http"),
    (b"date", b"Sat, 21 Nov 2026 12:00:00 GMT"),
]


def _h1_cycle(conn: Any, data: bytes, respond: bool) -> int:
    conn.receive_data(data)
    n = 0
    while True:
        ev = conn.next_event()
        if type(ev) is EndOfMessage:
            break
        if ev is NEED_DATA:  # pragma: no cover - the whole request is fed at once
            raise AssertionError("incomplete request")
        if type(ev) is Data:
            n += len(ev.data)
    if respond:
        conn.send_response(200, RESPONSE_HEADERS)
        conn.send_data(b"Hello, world!")
        conn.send_end()
        conn.data_to_send()
    else:
        # The bare minimum to move on: the parse benchmark measures parsing.
        conn.send_response(204, [])
        conn.send_end()
        conn.data_to_send()
    assert conn.start_next_cycle()
    return n


@pytest.mark.parametrize("parser", H1_PARSERS)
def test_h1_get_parse_and_respond(benchmark: Any, parser: str) -> None:
    """HTTP/1.1 keep-alive GET: parse the head, serialise a 13-byte response."""
    conn = make_h1_connection(parser, max_request_header_size=16384)
    benchmark(_h1_cycle, conn, GET, True)


@pytest.mark.parametrize("parser", H1_PARSERS)
def test_h1_get_parse_only(benchmark: Any, parser: str) -> None:
    """HTTP/1.1 keep-alive GET: parse the head (and a minimal 204 to end the cycle)."""
    conn = make_h1_connection(parser, max_request_header_size=16384)
    benchmark(_h1_cycle, conn, GET, False)


@pytest.mark.parametrize("parser", H1_PARSERS)
def test_h1_post_64k_parse(benchmark: Any, parser: str) -> None:
    """HTTP/1.1 POST with a 64 KiB body fed in one piece."""
    conn = make_h1_connection(parser, max_request_header_size=16384)
    assert benchmark(_h1_cycle, conn, POST, False) == len(POST_BODY)


@pytest.mark.parametrize("parser", H1_PARSERS)
def test_h1_serialise_1mib(benchmark: Any, parser: str) -> None:
    """HTTP/1.1: serialise a 1 MiB response body (Content-Length) in one send_data."""
    conn = make_h1_connection(parser, max_request_header_size=16384)
    body = b"x" * (1024 * 1024)
    headers = [(b"content-type", b"application/octet-stream"),
               (b"content-length", str(len(body)).encode())]

    def cycle() -> None:
        conn.receive_data(GET)
        while type(conn.next_event()) is not EndOfMessage:
            pass
        conn.send_response(200, headers)
        conn.send_data(body)
        conn.send_end()
        conn.data_to_send()
        assert conn.start_next_cycle()

    benchmark(cycle)


# --- HTTP/2 --------------------------------------------------------------------------------


class _H2Pair:
    """An h2 client and our server connection, talking through memory."""

    def __init__(self) -> None:
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.client.initiate_connection()
        self.server = H2Connection(max_concurrent_streams=100, initial_window_size=65535,
                                   max_frame_size=16384, max_header_list_size=65536)
        self.server.initiate()
        self.server.receive_data(self.client.data_to_send())
        self.client.receive_data(self.server.data_to_send())
        self.server.receive_data(self.client.data_to_send())
        self.server.data_to_send()
        self.headers = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"),
                        (b":path", b"/hello?x=1"), (b"user-agent", b"bench/1.0"),
                        (b"accept", b"*/*")]

    def requests(self, n: int) -> bytes:
        for _ in range(n):
            sid = self.client.get_next_available_stream_id()
            self.client.send_headers(sid, self.headers, end_stream=True)
        return self.client.data_to_send()

    def serve(self, wire: bytes, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
        served = 0
        for ev in self.server.receive_data(wire):
            if type(ev) is Request:
                sid = ev.stream_id
                self.server.send_response(sid, 200, headers)
                self.server.send_data(sid, body, end_stream=True)
                self.server.stream_done(sid, completed=True)
                served += 1
        out = self.server.data_to_send()
        # The client reads the responses (and returns window credit), outside the measured
        # server cost only in the sense that it is the same every round.
        self.client.receive_data(out)
        back = self.client.data_to_send()
        if back:
            self.server.receive_data(back)
        return served


@pytest.mark.parametrize("streams", [1, 10])
def test_h2_get_parse_and_respond(benchmark: Any, streams: int) -> None:
    """HTTP/2: ``streams`` GETs in one read, each answered with a 13-byte body (server side
    plus the h2 client reading the responses)."""
    pair = _H2Pair()

    def cycle() -> None:
        wire = pair.requests(streams)
        assert pair.serve(wire, b"Hello, world!", RESPONSE_HEADERS) == streams

    benchmark(cycle)


def test_h2_parse_only(benchmark: Any) -> None:
    """HTTP/2: decode 10 request HEADERS frames (HPACK) into Request events; the streams are
    reset to keep the connection's stream count flat."""
    pair = _H2Pair()

    def cycle() -> None:
        wire = pair.requests(10)
        events = pair.server.receive_data(wire)
        for ev in events:
            if type(ev) is Request:
                pair.server.reset_stream(ev.stream_id)
                pair.server.stream_done(ev.stream_id, completed=False)
        pair.client.receive_data(pair.server.data_to_send())

    benchmark(cycle)
