"""HTTP/1.1 edge cases with raw sockets and an h11 client: keep-alive, pipelining, chunked
bodies, 100-continue, HEAD, default headers, reason phrases, idle timeout, and bad input that
each gets the right error on its own connection while a well-behaved client carries on."""

from __future__ import annotations

import contextvars
import socket
from typing import Any

import h11
import pytest
import trio

from trio_http import Config

from .apps.peers import H1Client, H2Client, connect, raw_exchange, read_until, read_until_eof
from .conftest import echo_app

# Every test here runs over h11 and over httptools (conftest.h1_parser).
pytestmark = pytest.mark.usefixtures("h1_parser")


async def path_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the method and path; ``/stream`` answers in three chunks (no length)."""
    if scope["type"] != "http":
        return
    body = f"{scope['method']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    if scope["path"] == "/stream":
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.body", "body": body})


async def test_keep_alive_reuses_one_connection(start_server):
    server = await start_server(path_app)
    client = await H1Client.open(server.port)
    for i in range(5):
        r = await client.request("GET", f"/n{i}")
        assert r.status == 200
        assert r.body == f"GET /n{i}".encode()
    assert server.statistics()["connections_total"] == 1
    await client.aclose()


async def test_status_line_date_and_server_headers(start_server):
    server = await start_server(path_app)
    stream = await connect(server.port)
    await stream.send_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    raw = await read_until_eof(stream)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    names = {line.split(b":")[0].lower() for line in lines[1:]}
    assert {b"date", b"server", b"content-length"} <= names
    assert b"server: trio_http" in head.lower()
    assert body == b"GET /x"


async def test_reason_phrases(start_server):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        status = int(scope["path"][1:])
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    server = await start_server(app)
    client = await H1Client.open(server.port)
    for status, reason in [(200, b"OK"), (404, b"Not Found"), (418, b"I'm a Teapot"),
                           (503, b"Service Unavailable"), (204, b"No Content")]:
        r = await client.request("GET", f"/{status}")
        assert (r.status, r.reason) == (status, reason)
    await client.aclose()


USER: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="nobody")


async def context_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the value of USER it found, and what a task it starts sees, then sets
    USER to the request's path, as middleware setting the request's user would."""
    if scope["type"] != "http":
        return
    found = USER.get()
    USER.set(scope["path"])
    child: list[str] = []

    async def task() -> None:
        child.append(USER.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(task)
    body = f"{found} {child[0]}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("pipelined", [False, True])
async def test_each_request_has_a_context_of_its_own(start_server, pipelined):
    # As in a task per request: the app sees what the embedding program set, and what one
    # request sets is gone in the next on the same connection.
    USER.set("embedder")
    server = await start_server(context_app)  # each parser in turn (module's h1_parser)
    heads = [f"GET /r{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode() for i in range(3)]
    heads[-1] = heads[-1].replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    with trio.fail_after(10):
        stream = await connect(server.port)
        if pipelined:
            await stream.send_all(b"".join(heads))
            raw = await read_until_eof(stream)
        else:
            buf, raw = bytearray(), b""
            for head in heads:
                await stream.send_all(head)
                raw += await read_until(stream, buf, b"\r\n\r\n")
                raw += await read_until(stream, buf, b"embedder")  # body: "embedder /rN"
                raw += await read_until(stream, buf, b"/r%d" % heads.index(head))
    assert raw.count(b"embedder /r") == 3, raw
    assert b"/r0 " not in raw and b"/r1 " not in raw  # no request saw the one before


async def test_each_http2_stream_has_a_context_of_its_own(start_server):
    USER.set("embedder")
    server = await start_server(context_app)
    with trio.fail_after(10):
        client = await H2Client.open(server.port)
        bodies = []
        for i in range(3):
            sid = await client.request(path=f"/s{i}")
            await client.wait_done(sid)
            bodies.append(bytes(client.streams[sid].data))
        await client.aclose()
    assert bodies == [b"embedder /s0", b"embedder /s1", b"embedder /s2"]


async def test_pipelined_requests_are_answered_in_order(start_server):
    server = await start_server(path_app)
    stream = await connect(server.port)
    reqs = b"".join(f"GET /p{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode() for i in range(10))
    await stream.send_all(reqs + b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    raw = await read_until_eof(stream)
    client = h11.Connection(h11.CLIENT)
    # Replay our side so h11 can parse the responses in sequence.
    bodies = []
    client.receive_data(raw)
    client.receive_data(b"")
    for i in range(11):
        client.send(h11.Request(method="GET", target=f"/{i}", headers=[("host", "a")]))
        client.send(h11.EndOfMessage())
        body = b""
        while True:
            ev = client.next_event()
            if isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
        bodies.append(body)
        if i < 10:
            client.start_next_cycle()
    assert bodies == [f"GET /p{i}".encode() for i in range(10)] + [b"GET /last"]


async def test_chunked_request_and_response_bodies(start_server):
    server = await start_server(echo_app)
    stream = await connect(server.port)
    chunks = [b"hello ", b"chunked ", b"world" * 1000]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    await stream.send_all(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    )
    client = H1Client(stream)
    client.conn.send(h11.Request(method="POST", target="/echo",
                                 headers=[("host", "a"), ("transfer-encoding", "chunked")]))
    client.conn.send(h11.EndOfMessage())
    r = await client.read_response()
    assert r.status == 200
    assert r.header(b"transfer-encoding") == b"chunked"
    assert r.body == b"".join(chunks)
    await stream.aclose()


async def test_chunked_response_framing_on_the_wire(start_server):
    server = await start_server(path_app)
    raw = await raw_exchange(
        server.port, b"GET /stream HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"


async def test_expect_100_continue_sent_only_when_app_receives(start_server):
    in_app = trio.Event()
    go = trio.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        in_app.set()
        await go.wait()
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"got " + body})

    server = await start_server(app)
    raw = socket.create_connection(("127.0.0.1", server.port))
    raw.setblocking(False)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
    await stream.send_all(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    with trio.fail_after(5):
        await in_app.wait()
    # The app has not called receive() yet: nothing may have been sent.
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(BlockingIOError):
        raw.recv(100, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    go.set()
    buf = bytearray()
    head = await read_until(stream, buf, b"\r\n\r\n")
    assert head == b"HTTP/1.1 100 Continue\r\n\r\n"
    await stream.send_all(b"body")
    rest = await read_until(stream, buf, b"got body")
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    await stream.aclose()


async def test_expect_100_continue_not_sent_when_app_does_not_read(start_server):
    server = await start_server(path_app)
    stream = await connect(server.port)
    await stream.send_all(
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    buf = bytearray()
    head = await read_until(stream, buf, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    await stream.aclose()


async def test_head_has_no_body_and_connection_stays_usable(start_server):
    server = await start_server(path_app)
    client = await H1Client.open(server.port)
    r = await client.request("HEAD", "/thing")
    assert r.status == 200
    assert r.body == b""
    assert r.header(b"content-length") == b"11"  # len("HEAD /thing")
    # A body leaked after the HEAD response would corrupt this one.
    r = await client.request("GET", "/after")
    assert r.body == b"GET /after"
    await client.aclose()


async def test_http10_request_closes_after_response(start_server):
    server = await start_server(path_app)
    raw = await raw_exchange(server.port, b"GET /old HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(b"GET /old")


async def test_keep_alive_idle_timeout_closes_connection(start_server, autojump_clock):
    server = await start_server(path_app, config=Config(keep_alive_timeout=3))
    client = await H1Client.open(server.port)
    r = await client.request("GET", "/")
    assert r.status == 200
    start = trio.current_time()
    with trio.fail_after(30):
        data = await read_until_eof(client.stream)
    assert data == b""
    assert 3 <= trio.current_time() - start < 3.5


async def test_idle_connection_without_request_times_out(start_server, autojump_clock):
    server = await start_server(path_app, config=Config(keep_alive_timeout=2))
    stream = await connect(server.port)
    start = trio.current_time()
    with trio.fail_after(30):
        assert await read_until_eof(stream) == b""
    assert 2 <= trio.current_time() - start < 2.5


async def test_timeouts_never_cancel_a_slow_app(start_server, autojump_clock):
    # The connection's timeouts share one cancel scope that the app runs inside: the
    # keep-alive, head and write deadlines must all be disarmed while the app works.
    async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await trio.sleep(10)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await trio.sleep(10)
        await send({"type": "http.response.body", "body": b"two"})
        await trio.sleep(10)  # still running after its response, past every timeout

    server = await start_server(slow_app, config=Config(
        keep_alive_timeout=2, request_head_timeout=3, write_timeout=4))
    client = await H1Client.open(server.port)
    for _ in range(2):
        with trio.fail_after(60):
            r = await client.request("GET", "/")
        assert (r.status, r.body) == (200, b"one,two")
    start = trio.current_time()
    with trio.fail_after(60):
        assert await read_until_eof(client.stream) == b""
    assert 12 <= trio.current_time() - start < 12.5  # the app's last 10 s, then keep-alive


async def test_client_disconnect_is_reported_to_app(start_server):
    got: list[dict[str, Any]] = []
    done = trio.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            while True:
                msg = await receive()
                got.append(msg)
                if msg["type"] == "http.disconnect":
                    return
        finally:
            done.set()

    server = await start_server(app)
    stream = await connect(server.port)
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await trio.testing.wait_all_tasks_blocked()
    await stream.aclose()
    with trio.fail_after(5):
        await done.wait()
    assert [m["type"] for m in got] == ["http.request", "http.disconnect"]


async def test_app_exception_after_response_start_closes_connection(start_server):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after start")

    server = await start_server(app)
    stream = await connect(server.port)
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    with trio.fail_after(5):
        raw = await read_until_eof(stream)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    # The chunked body is cut short: no last-chunk, so the client sees a truncated response.
    assert body == b"7\r\npartial\r\n"
    assert server.statistics()["app_errors"] == 1


async def test_app_exception_before_start_is_500_and_keep_serving(start_server):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"fine"})

    server = await start_server(app)
    client = await H1Client.open(server.port)
    r = await client.request("GET", "/boom")
    assert r.status == 500
    assert r.header(b"connection") == b"close"
    await client.aclose()
    client = await H1Client.open(server.port)
    assert (await client.request("GET", "/")).body == b"fine"
    await client.aclose()


async def test_app_returning_without_response_is_500(start_server):
    async def app(scope, receive, send):
        return

    server = await start_server(app, config=Config(lifespan="off"))
    raw = await raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


# --- bad input: each on its own connection, beside a well-behaved client -----------------

BAD_REQUESTS = [
    pytest.param(b"GARBAGE\r\n\r\n", 400, id="malformed-request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400, id="space-in-name"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400, id="no-colon"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, id="nul-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, id="missing-host"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="two-hosts"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431,
                 id="oversized-headers"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400, id="te-and-cl"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                 b"Content-Length: 2\r\n\r\nab", 400, id="two-content-lengths"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400,
                 id="negative-content-length"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
                 id="unknown-transfer-coding"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"ZZ\r\nhello\r\n0\r\n\r\n", 400, id="bad-chunk-size"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhelloXX0\r\n\r\n", 400, id="bad-chunk-terminator"),
    pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414,
                 id="long-target"),
    pytest.param(b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, id="bad-method"),
]


@pytest.mark.parametrize(("request_bytes", "status"), BAD_REQUESTS)
async def test_bad_input_gets_error_while_others_are_served(start_server, request_bytes,
                                                            status):
    server = await start_server(echo_app)
    good = await H1Client.open(server.port)
    r = await good.request("POST", "/", body=b"before")
    assert r.body == b"before"
    raw = await raw_exchange(server.port, request_bytes)
    status_line = raw.split(b"\r\n", 1)[0]
    assert status_line.startswith(f"HTTP/1.1 {status} ".encode()), raw[:200]
    assert b"connection: close" in raw.lower()
    # The good client's keep-alive connection is unaffected.
    r = await good.request("POST", "/", body=b"after")
    assert r.body == b"after"
    await good.aclose()
    assert server.statistics()["connections_total"] == 2


async def test_bad_input_split_into_single_bytes(start_server):
    server = await start_server(echo_app)
    stream = await connect(server.port)
    for b in b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n":
        try:
            await stream.send_all(bytes([b]))
        except trio.BrokenResourceError:
            break
    raw = await read_until_eof(stream)
    assert raw.startswith(b"HTTP/1.1 400 ")


async def test_bad_inputs_all_at_once_while_requests_are_in_flight(start_server):
    entered = 0
    both_in = trio.Event()
    release = trio.Event()

    async def app(scope, receive, send):
        nonlocal entered
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            entered += 1
            if entered == 2:
                both_in.set()
            await release.wait()
        await echo_app(scope, receive, send)

    server = await start_server(app)
    h1 = await H1Client.open(server.port)
    h2 = await H2Client.open(server.port)
    await h1.send(h11.Request(method="POST", target="/slow",
                              headers=[("host", "a"), ("content-length", "2")]),
                  h11.Data(data=b"h1"), h11.EndOfMessage())
    sid = await h2.request("POST", "/slow", body=b"h2")
    with trio.fail_after(5):
        await both_in.wait()
    results: dict[int, bytes] = {}

    async def bad(i: int, data: bytes) -> None:
        results[i] = await raw_exchange(server.port, data)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i, param in enumerate(BAD_REQUESTS):
                nursery.start_soon(bad, i, param.values[0])
            nursery.start_soon(bad, -1, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    garbage_reply = results[-1]
    for i, param in enumerate(BAD_REQUESTS):
        assert results[i].startswith(f"HTTP/1.1 {param.values[1]} ".encode()), param.id
    assert garbage_reply and b"HTTP/1.1" not in garbage_reply
    # The requests in flight all along are answered normally.
    release.set()
    with trio.fail_after(5):
        r = await h1.read_response()
        await h2.wait_done(sid)
    assert r.body == b"h1"
    assert bytes(h2.streams[sid].data) == b"h2"
    assert server.statistics()["protocol_errors"] >= len(BAD_REQUESTS) + 1
