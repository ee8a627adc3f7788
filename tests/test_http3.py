"""HTTP/3 over QUIC: aioquic's client, driven sans-io from trio UDP sockets (tests/h3_client.py),
against quic binds on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.lowlevel
from aioquic.buffer import Buffer
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from trio_http import Config, RunningServer, serve_asgi

from .conftest import echo_app, hello_app
from .h3_client import open_h3_client

H3_NO_ERROR = 0x100
H3_INTERNAL_ERROR = 0x102
H3_REQUEST_REJECTED = 0x10B
H3_REQUEST_CANCELLED = 0x10C


@pytest.fixture
def h3_config(cert_files: dict[str, str]) -> Any:
    def make(**kw: Any) -> Config:
        return Config(certfile=cert_files["certfile"], keyfile=cert_files["keyfile"],
                      quic_binds=("127.0.0.1:0",), **kw)
    return make


@pytest.fixture
def h3_client(cert_files: dict[str, str]) -> Any:
    def connect(server: RunningServer, **kw: Any) -> Any:
        return open_h3_client(server.quic_addresses[0], cert_files["cafile"], **kw)
    return connect


async def wait_for(predicate: Any) -> None:
    """Poll server statistics, which have no change notification (bounded by the caller's
    deadline; virtual time in the tests that use the autojump clock)."""
    while not predicate():  # noqa: ASYNC110
        await trio.sleep(0.01)


async def test_get(start_server, h3_config, h3_client):
    server = await start_server(hello_app, tls=True, config=h3_config())
    assert server.http3_urls == (f"https://127.0.0.1:{server.quic_addresses[0][1]}",)
    with trio.fail_after(10):
        async with h3_client(server) as client:
            resp = await client.get("/")
            again = await client.get("/again")
    assert resp.status == 200
    assert bytes(resp.body) == b"hello over 3"
    assert resp.header(b"content-type") == b"text/plain"
    assert resp.header(b"server") == b"trio_http"
    assert resp.header(b"alt-svc") is None  # advertised on TCP only
    assert again.status == 200
    assert server.statistics()["requests_total"] == 2


async def test_scope(start_server, h3_config, h3_client):
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scopes.append(scope)
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    server = await start_server(app, tls=True, config=h3_config(root_path="/root"))
    with trio.fail_after(10):
        async with h3_client(server) as client:
            resp = await client.request("PUT", "/root/a%20b?x=1",
                                        headers=[(b"x-test", b"yes")])
    assert resp.status == 204
    (scope,) = scopes
    assert scope["http_version"] == "3"
    assert scope["scheme"] == "https"
    assert scope["method"] == "PUT"
    assert scope["path"] == "/root/a b"
    assert scope["raw_path"] == b"/root/a%20b"
    assert scope["query_string"] == b"x=1"
    assert scope["root_path"] == "/root"
    assert (b"host", b"localhost") in scope["headers"]
    assert (b"x-test", b"yes") in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == server.quic_addresses[0]


async def test_post_several_mib_echoed(start_server, h3_config, h3_client):
    body = os.urandom(5 * 1024 * 1024 + 17)
    server = await start_server(echo_app, tls=True, config=h3_config())
    with trio.fail_after(30):
        async with h3_client(server) as client:
            resp = await client.request("POST", "/echo", body=body)
    assert resp.status == 200
    assert len(resp.body) == len(body)
    assert hashlib.sha256(resp.body).digest() == hashlib.sha256(body).digest()


async def test_many_concurrent_streams(start_server, h3_config, h3_client):
    running = peak = 0
    release = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal running, peak
        if scope["type"] != "http":
            return
        running += 1
        peak = max(peak, running)
        if running >= 50:
            release.set()
        await release.wait()
        running -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    server = await start_server(app, tls=True, config=h3_config(h3_max_concurrent_streams=50))
    with trio.fail_after(30):
        async with h3_client(server) as client:
            started = [client.start_request("GET", f"/{i}") for i in range(200)]
            for _, resp in started:
                await resp.done.wait()
    assert [r.status for _, r in started] == [200] * 200
    assert [bytes(r.body) for _, r in started] == [f"/{i}".encode() for i in range(200)]
    # 50 ran at once (they waited for each other), and never more: the limit holds.
    assert peak == 50
    stats = server.statistics()
    assert stats["requests_total"] == 200
    assert stats["streams_open"] == 0


async def test_stream_reset_mid_body(start_server, h3_config, h3_client):
    got_first = trio.Event()
    outcome: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await hello_app(scope, receive, send)
            return
        try:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    outcome.append("disconnect")
                    return
                got_first.set()
        except trio.Cancelled:
            outcome.append("cancelled")
            raise

    server = await start_server(app, tls=True, config=h3_config())
    with trio.fail_after(10):
        async with h3_client(server) as client:
            sid, resp = client.start_request("POST", "/upload", body=b"x" * 100_000,
                                             end_stream=False)
            await got_first.wait()
            client.reset(sid, H3_REQUEST_CANCELLED)
            await resp.done.wait()
            # The server gives up on its side too, with H3_REQUEST_CANCELLED.
            assert resp.reset == H3_REQUEST_CANCELLED
            ok = await client.get("/ok")  # the connection carries on
            await wait_for(lambda: server.statistics()["streams_open"] == 0)
    assert outcome in (["cancelled"], ["disconnect"])
    assert ok.status == 200 and bytes(ok.body) == b"hello over 3"


async def test_request_body_bounded_by_stream_credit(start_server, h3_config, h3_client):
    window = 65536
    may_read = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await may_read.wait()
        await echo_app(scope, receive, send)

    body = os.urandom(2 * 1024 * 1024)
    server = await start_server(app, tls=True, config=h3_config(h3_stream_window_size=window))
    with trio.fail_after(20):
        async with h3_client(server) as client:
            sid, resp = client.start_request("POST", "/", body=body)
            stream = client.quic._streams[sid]
            # The app reads nothing: the client runs out of credit and stays there.
            await client.wait_until(
                lambda: stream.sender.highest_offset >= stream.max_stream_data_remote
                and stream.max_stream_data_remote > 0
            )
            for _ in range(20):
                await trio.lowlevel.checkpoint()
            assert stream.max_stream_data_remote <= window + 1024  # headers + frame headers
            (quic,) = server.statistics()["quic"]
            assert 0 < quic["buffered_bytes"] <= window
            may_read.set()  # credit returns as the app consumes
            await resp.done.wait()
    assert resp.status == 200
    assert bytes(resp.body) == body


async def test_app_errors(start_server, h3_config, h3_client):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/late":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom")

    server = await start_server(app, tls=True, config=h3_config())
    with trio.fail_after(10):
        async with h3_client(server) as client:
            early = await client.get("/early")
            late = await client.get("/late")
            ok_after = await client.get("/early")
    assert early.status == 500
    assert bytes(early.body) == b"500 Internal Server Error\n"
    assert late.reset == H3_INTERNAL_ERROR
    assert ok_after.status == 500  # the connection survived both
    assert server.statistics()["app_errors"] == 3


async def test_response_streaming_and_connection_fields(start_server, h3_config, h3_client):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        # Connection-specific fields are malformed in HTTP/3 (RFC 9114 §4.2): dropped.
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"Connection", b"keep-alive"), (b"transfer-encoding", b"chunked"),
            (b"X-Big", b"1")]})
        for i in range(50):
            await send({"type": "http.response.body", "body": bytes([65 + i % 26]) * 65536,
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    server = await start_server(app, tls=True, config=h3_config(h3_stream_window_size=65536))
    with trio.fail_after(20):
        async with h3_client(server) as client:
            resp = await client.get("/")
    assert resp.status == 200
    assert len(resp.body) == 50 * 65536
    assert resp.header(b"connection") is None and resp.header(b"transfer-encoding") is None
    assert resp.header(b"x-big") == b"1"


@pytest.mark.parametrize("http2", [False, True])
async def test_alt_svc_on_tcp(start_server, h3_config, client_ssl_context, http2):
    server = await start_server(hello_app, tls=True, config=h3_config())
    port = server.quic_addresses[0][1]
    with trio.fail_after(10):
        async with httpx.AsyncClient(verify=client_ssl_context, http2=http2,
                                     http1=not http2) as client:
            resp = await client.get(server.urls[0] + "/")
    assert resp.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert resp.headers["alt-svc"] == f'h3=":{port}"; ma=3600'


async def test_alt_svc_off_and_app_value_kept(start_server, h3_config, client_ssl_context):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"alt-svc", b"clear")]})
            await send({"type": "http.response.body", "body": b""})

    off = await start_server(hello_app, tls=True, config=h3_config(alt_svc=False))
    own = await start_server(app, tls=True, config=h3_config())
    plain = await start_server(hello_app, tls=True)
    with trio.fail_after(10):
        async with httpx.AsyncClient(verify=client_ssl_context) as client:
            r_off = await client.get(off.urls[0] + "/")
            r_own = await client.get(own.urls[0] + "/")
            r_plain = await client.get(plain.urls[0] + "/")
    assert "alt-svc" not in r_off.headers
    assert r_own.headers.get_list("alt-svc") == ["clear"]
    assert "alt-svc" not in r_plain.headers


async def test_garbage_and_unknown_connections_ignored(start_server, h3_config, h3_client):
    server = await start_server(hello_app, tls=True, config=h3_config())
    addr = server.quic_addresses[0]
    spam = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await spam.bind(("127.0.0.1", 0))

    async def spammer(n: int) -> None:
        for i in range(n):
            await spam.sendto(os.urandom(1 + i % 1400), addr)  # garbage of every size
            # A short header packet for a connection ID nobody issued.
            await spam.sendto(bytes([0x40]) + os.urandom(8) + os.urandom(40), addr)
            # A long header Initial too small to open a connection (RFC 9000 §14.1).
            await spam.sendto(bytes([0xC0, 0, 0, 0, 1, 8]) + os.urandom(8) + b"\x00" + b"\x00"
                              + os.urandom(60), addr)
            if i % 10 == 0:
                await trio.lowlevel.checkpoint()

    with trio.fail_after(20):
        async with h3_client(server) as client:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(spammer, 300)
                responses = [await client.get(f"/{i}") for i in range(20)]
            # An unknown QUIC version in a full-size Initial gets Version Negotiation back.
            await spam.sendto(bytes([0xC0, 0x1A, 0x2A, 0x3A, 0x4A, 8]) + b"D" * 8 + b"\x08"
                              + b"S" * 8 + b"\x00" * 1200, addr)
            data, _ = await spam.recvfrom(2048)
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
            assert header.packet_type == QuicPacketType.VERSION_NEGOTIATION
            assert header.destination_cid == b"S" * 8
    spam.close()
    assert [r.status for r in responses] == [200] * 20
    (quic,) = server.statistics()["quic"]
    assert quic["dropped_garbage"] + quic["dropped_unknown"] >= 600
    assert quic["connections_refused"] == 0
    assert server.statistics()["connections_total"] == 1


async def test_retry_address_validation(start_server, h3_config, h3_client):
    server = await start_server(hello_app, tls=True, config=h3_config(quic_retry=True))
    with trio.fail_after(10):
        async with h3_client(server) as client:
            resp = await client.get("/")
    assert resp.status == 200
    (quic,) = server.statistics()["quic"]
    assert quic["retries_sent"] == 1


async def test_client_silent_mid_handshake_is_dropped(
    start_server, h3_config, h3_client, cert_files, autojump_clock
):
    server = await start_server(hello_app, tls=True, config=h3_config(
        quic_idle_timeout=5.0, tls_handshake_timeout=2.0))
    from aioquic.h3.connection import H3_ALPN
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    quic = QuicConnection(configuration=QuicConfiguration(alpn_protocols=H3_ALPN,
                                                          is_client=True))
    quic.connect(server.quic_addresses[0], now=trio.current_time())
    for data, addr in quic.datagrams_to_send(now=trio.current_time()):
        await sock.sendto(data, addr)  # the first flight, then silence
    start = trio.current_time()
    with trio.fail_after(10):
        await wait_for(lambda: server.statistics()["quic"][0]["handshaking"] == 1)
        await wait_for(lambda: server.statistics()["quic"][0]["connections"] == 0)
    assert trio.current_time() - start <= 2.5
    stats = server.statistics()
    assert stats["tls_handshake_failures"] == 1
    assert stats["quic"][0]["handshaking"] == 0 and stats["quic"][0]["routes"] == 0
    sock.close()
    with trio.fail_after(10):  # and others are served
        async with h3_client(server) as client:
            assert (await client.get("/")).status == 200


async def test_client_silent_mid_stream_is_dropped(
    start_server, h3_config, h3_client, autojump_clock
):
    outcome: list[str] = []
    got_first = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await hello_app(scope, receive, send)
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            while True:
                msg = await receive()
                got_first.set()
                if msg["type"] == "http.disconnect":
                    outcome.append("disconnect")
                    return
                await send({"type": "http.response.body", "body": b"y" * 100_000,
                            "more_body": True})
        except trio.Cancelled:
            outcome.append("cancelled")
            raise

    server = await start_server(app, tls=True, config=h3_config(quic_idle_timeout=3.0))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            frozen = trio.Event()

            async def silent_client() -> None:
                async with h3_client(server) as client:
                    client.start_request("POST", "/upload", body=b"x" * 1000, end_stream=False)
                    await got_first.wait()
                    # Stop reading and writing, without closing: the peer just vanishes.
                    frozen.set()
                    await trio.sleep_forever()

            nursery.start_soon(silent_client)
            await frozen.wait()
            nursery.cancel_scope.cancel()  # cancels the client's pump tasks, sends nothing
        start = trio.current_time()
        await wait_for(lambda: server.statistics()["quic"][0]["connections"] == 0)
        assert trio.current_time() - start <= 3.0 + 1.0
        assert outcome in (["cancelled"], ["disconnect"])
        assert server.statistics()["streams_open"] == 0
        async with h3_client(server) as client:
            assert (await client.get("/ok")).status == 200


async def test_connection_limit(start_server, h3_config, h3_client, autojump_clock):
    server = await start_server(hello_app, tls=True, config=h3_config(quic_max_connections=1))
    with trio.fail_after(60):
        async with h3_client(server) as first:
            assert (await first.get("/")).status == 200
            with pytest.raises(trio.TooSlowError):
                async with h3_client(server, handshake_timeout=3):
                    pass  # pragma: no cover
            assert server.statistics()["quic"][0]["connections_refused"] >= 1
            assert (await first.get("/")).status == 200


async def test_graceful_shutdown_goaway(h3_config, h3_client, nursery):
    entered = trio.Event()
    release = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        entered.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    server_scope = trio.CancelScope()
    finished = trio.Event()

    async def run_server(task_status: Any) -> None:
        with server_scope:
            await serve_asgi(app, binds=["127.0.0.1:0"], config=h3_config(graceful_timeout=5),
                             task_status=task_status)
        finished.set()

    server: RunningServer = await nursery.start(run_server)
    with trio.fail_after(10):
        async with h3_client(server) as client:
            _, slow = client.start_request("GET", "/slow")
            await entered.wait()
            server_scope.cancel()  # graceful shutdown: GOAWAY, in-flight streams finish
            await wait_for(lambda: server.statistics()["shutting_down"])
            _, late = client.start_request("GET", "/late")  # past the GOAWAY id
            await late.done.wait()
            assert late.reset == H3_REQUEST_REJECTED, (client.close_event, late)
            release.set()
            await slow.done.wait()
            assert slow.status == 200 and bytes(slow.body) == b"done"
            await client.terminated.wait()  # then CONNECTION_CLOSE(H3_NO_ERROR)
            assert client.close_event.error_code == H3_NO_ERROR
        await finished.wait()


async def test_graceful_shutdown_deadline(h3_config, h3_client, nursery):
    entered = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            entered.set()
            await trio.sleep_forever()

    server_scope = trio.CancelScope()
    finished = trio.Event()

    async def run_server(task_status: Any) -> None:
        with server_scope:
            await serve_asgi(app, binds=["127.0.0.1:0"],
                             config=h3_config(graceful_timeout=0.5), task_status=task_status)
        finished.set()

    server: RunningServer = await nursery.start(run_server)
    with trio.fail_after(10):
        async with h3_client(server) as client:
            _, resp = client.start_request("GET", "/stuck")
            await entered.wait()
            start = trio.current_time()
            server_scope.cancel()
            await finished.wait()
            assert trio.current_time() - start < 3
            await client.terminated.wait()  # told, best effort, that the server went away
    assert not resp.ended


async def test_config_and_binds(cert_files):
    from trio_http import BindError, ConfigError

    with pytest.raises(ConfigError):
        Config(quic_binds=("127.0.0.1:0",))  # no certificate
    cfg = Config(certfile=cert_files["certfile"], keyfile=cert_files["keyfile"],
                 quic_binds=("unix:/tmp/x",))
    with pytest.raises(ConfigError):
        await serve_asgi(hello_app, binds=["127.0.0.1:0"], config=cfg)
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    taken = sock.getsockname()[1]
    cfg = Config(certfile=cert_files["certfile"], keyfile=cert_files["keyfile"],
                 quic_binds=(f"127.0.0.1:{taken}",))
    with pytest.raises(BindError):
        await serve_asgi(hello_app, binds=["127.0.0.1:0"], config=cfg)
    sock.close()


@pytest.mark.parametrize("path", ["/", "/post"])
async def test_ngtcp2_client(start_server, h3_config, tmp_path, path):
    from .conftest import require_tool, run_tool

    gtlsclient = require_tool("gtlsclient")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        digest = hashlib.sha256()
        size = 0
        while True:
            msg = await receive()
            digest.update(msg.get("body", b""))
            size += len(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        text = f"{scope['method']} {scope['http_version']} {size} {digest.hexdigest()}\n"
        await send({"type": "http.response.body", "body": text.encode()})

    server = await start_server(app, tls=True, config=h3_config())
    port = server.quic_addresses[0][1]
    download = tmp_path / "dl"
    download.mkdir()
    argv = [gtlsclient, "-q", "--exit-on-all-streams-close", "--download", str(download),
            "--timeout=10s"]
    body = os.urandom(1024 * 1024 + 3)
    if path == "/post":
        (tmp_path / "body").write_bytes(body)
        argv += ["-m", "POST", "-d", str(tmp_path / "body")]
    argv += ["127.0.0.1", str(port), f"https://localhost:{port}{path}"]
    done = await run_tool(*argv, timeout=30)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    saved = (download / ("index.html" if path == "/" else "post")).read_text()
    if path == "/":
        assert saved == f"GET 3 0 {hashlib.sha256(b'').hexdigest()}\n"
    else:
        assert saved == f"POST 3 {len(body)} {hashlib.sha256(body).hexdigest()}\n"


async def test_serve_asgi_quic_only_ipv6_or_skip(cert_files, h3_client, nursery):
    # [::1] as a quic bind: dual stack addresses come back as 4-tuples; scopes get (host, port).
    cfg = Config(certfile=cert_files["certfile"], keyfile=cert_files["keyfile"],
                 quic_binds=("[::1]:0",))
    try:
        server = await nursery.start(partial(serve_asgi, hello_app, binds=["127.0.0.1:0"],
                                             config=cfg))
    except Exception as exc:  # no IPv6 on this host
        pytest.skip(f"IPv6 unavailable: {exc!r}")
    host, port = server.quic_addresses[0]
    assert host == "::1"
    assert server.http3_urls == (f"https://[::1]:{port}",)


async def test_websocket_over_http3(start_server, h3_config, h3_client):
    """RFC 9220: extended CONNECT with :protocol websocket, through the WebSocket layer."""
    from wsproto.frame_protocol import FrameProtocol, Opcode

    events: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        events.append(scope)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": "chat"})
        while True:
            msg = await receive()
            events.append(msg)
            if msg["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": msg["text"].upper()})

    server = await start_server(app, tls=True, config=h3_config())
    frames = FrameProtocol(client=True, extensions=[])
    with trio.fail_after(10):
        async with h3_client(server) as client:
            sid, resp = client.start_request(
                "CONNECT", "/chat",
                headers=[(b":protocol", b"websocket"), (b"sec-websocket-version", b"13"),
                         (b"sec-websocket-protocol", b"chat")],
                end_stream=False)
            await resp.headers_received.wait()
            assert resp.status == 200
            assert resp.header(b"sec-websocket-protocol") == b"chat"
            client.send_body(sid, bytes(frames.send_data("hello", fin=True)))
            await client.wait_until(lambda: len(resp.body) >= 7)
            frames.receive_bytes(bytes(resp.body))
            (frame,) = list(frames.received_frames())
            assert frame.opcode == Opcode.TEXT and frame.payload == "HELLO"
            resp.body.clear()
            client.send_body(sid, bytes(frames.close(1000, "bye")))
            await resp.done.wait()  # the server answers CLOSE and ends the stream
            frames.receive_bytes(bytes(resp.body))
            (close,) = list(frames.received_frames())
            assert close.opcode == Opcode.CLOSE
    scope = events[0]
    assert scope["http_version"] == "3" and scope["scheme"] == "wss"
    assert scope["path"] == "/chat" and scope["subprotocols"] == ["chat"]
    assert events[1] == {"type": "websocket.receive", "text": "hello"}
    assert events[-1]["type"] == "websocket.disconnect" and events[-1]["code"] == 1000


async def test_header_block_larger_than_the_window_is_refused(start_server, h3_config, h3_client):
    from aioquic.buffer import encode_uint_var

    window = 65536
    server = await start_server(hello_app, tls=True,
                                config=h3_config(h3_stream_window_size=window))
    with trio.fail_after(10):
        async with h3_client(server) as client:
            fresh = type(await client.get("/"))
            sid = client.quic.get_next_available_stream_id()
            resp = client.responses[sid] = fresh()
            # A HEADERS frame announcing 1 MiB: it can never complete within the window.
            frame = encode_uint_var(0x1) + encode_uint_var(1 << 20) + b"\x00" * (2 * window)
            client.quic.send_stream_data(sid, frame)
            client.kick()
            await resp.done.wait()
            assert resp.reset == 0x107  # H3_EXCESSIVE_LOAD
            assert (await client.get("/")).status == 200  # only that stream ended
    assert server.statistics()["quic"][0]["streams_active"] == 0


async def test_head_response_has_no_content(start_server, h3_config, h3_client):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"x-length", b"5")]})
            await send({"type": "http.response.body", "body": b"hel", "more_body": True})
            await send({"type": "http.response.body", "body": b"lo"})

    server = await start_server(app, tls=True, config=h3_config())
    with trio.fail_after(10):
        async with h3_client(server) as client:
            head = await client.request("HEAD", "/")
            get = await client.get("/")
    assert head.status == 200 and head.header(b"x-length") == b"5"
    assert head.ended and bytes(head.body) == b""
    assert bytes(get.body) == b"hello"


async def test_request_limits_apply_to_http3(start_server, h3_config, h3_client):
    """The request limits of HTTP/1.1 and HTTP/2 hold on HTTP/3 too: each refused stream gets
    its status, the app never runs for it, and the connection goes on serving."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope["path"])
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    config = h3_config(max_request_header_count=10, max_request_line_size=200,
                       max_request_body_size=1000)
    server = await start_server(app, tls=True, config=config)
    with trio.fail_after(10):
        async with h3_client(server) as client:
            many = await client.request(
                "GET", "/many", headers=[(b"x-h%d" % i, b"v") for i in range(20)])
            long = await client.get("/" + "a" * 300)
            declared = await client.request(
                "POST", "/declared", headers=[(b"content-length", b"5000")], body=b"x" * 5000)
            streamed = await client.request("POST", "/streamed", body=b"x" * 5000)
            fine = await client.request("POST", "/fine", body=b"x" * 500)
    assert many.status == 431
    assert long.status == 414
    assert declared.status == 413
    assert streamed.status == 413  # the app had not answered yet: a 413, not a reset
    assert fine.status == 200 and bytes(fine.body) == b"ok"
    assert "/many" not in seen and "/declared" not in seen
    assert "/fine" in seen


H3_MESSAGE_ERROR = 0x10E


@pytest.mark.parametrize("fields", [
    pytest.param([(b"X-Upper", b"1")], id="uppercase-name"),
    pytest.param([(b"connection", b"close")], id="connection-specific"),
    pytest.param([(b"x-nul", b"a\x00b")], id="nul-in-value"),
    pytest.param([(b":custom", b"1")], id="unknown-pseudo"),
    pytest.param([(b"host", b"other.example")], id="host-differs-from-authority"),
    pytest.param([(b"host", b"localhost"), (b"host", b"localhost")], id="two-hosts"),
])
async def test_malformed_request_resets_only_its_stream(start_server, h3_config, h3_client,
                                                        fields):
    # RFC 9114 §4.1.2: a malformed request is a stream error (H3_MESSAGE_ERROR); aioquic
    # alone would close the whole connection.
    server = await start_server(hello_app, tls=True, config=h3_config())
    with trio.fail_after(10):
        async with h3_client(server) as client:
            _, bad = client.start_request("GET", "/", headers=fields)
            await bad.done.wait()
            good = await client.get("/after")
            assert not client.terminated.is_set()
    assert bad.reset == H3_MESSAGE_ERROR and bad.status == 0
    assert good.status == 200


@pytest.mark.parametrize("budget", [None, 5])
async def test_malformed_requests_count_against_the_reset_budget(start_server, h3_config,
                                                                 h3_client, budget):
    # Each malformed request is a stream that does no work: past the reset budget (by default
    # 200 beyond completed streams, as for HTTP/2), the connection is closed with
    # H3_EXCESSIVE_LOAD.
    config = h3_config() if budget is None else h3_config(h3_reset_budget=budget)
    limit = config.h3_reset_budget
    server = await start_server(hello_app, tls=True, config=config)
    with trio.fail_after(30):
        async with h3_client(server) as client:
            assert (await client.get("/")).status == 200  # one completed stream: budget + 1
            sent = 0
            while not client.terminated.is_set() and sent < limit + 100:
                _, bad = client.start_request("GET", "/", headers=[(b"X-Upper", b"1")])
                sent += 1
                await bad.done.wait()
            await client.terminated.wait()
    assert sent == limit + 2  # resets > completed (1) + budget closes it
    assert client.close_event.error_code == 0x107  # H3_EXCESSIVE_LOAD
