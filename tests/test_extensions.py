"""The ASGI response extensions (early hints, trailers, pathsend, zerocopysend, server push) over
HTTP/1.1 (both parsers, plain and TLS), HTTP/2 and HTTP/3, each seen by a real client: curl,
httpx, raw sockets, a raw h2 peer, and aioquic's client (tests/h3_client.py)."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest
import trio

from trio_http import Config, RunningServer

from .conftest import require_tool, run_tool
from .h3_client import open_h3_client

FILE_SIZE = 1 << 20
LINKS = [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]
COMMON = {
    "http.response.early_hint", "http.response.informational", "http.response.trailers",
    "http.response.pathsend", "http.response.zerocopysend",
}


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "big.bin"
    path.write_bytes(os.urandom(FILE_SIZE))
    return path


@pytest.fixture(params=["h11", "httptools"])
def parser(request: pytest.FixtureRequest) -> str:
    if request.param == "httptools":
        pytest.importorskip("httptools")
    return str(request.param)


@dataclass
class Seen:
    """What the app observed: scopes by path, zerocopysend file positions, errors."""

    scopes: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def make_app(big_file: Path, seen: Seen) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        seen.scopes[path] = scope
        start = {"type": "http.response.start", "status": 200, "headers": []}
        if path == "/scope":
            body = json.dumps(sorted(scope["extensions"]), default=str).encode()
            await send(start)
            await send({"type": "http.response.body", "body": body})
        elif path == "/hint":
            await send({"type": "http.response.early_hint", "links": LINKS})
            await send({"type": "http.response.informational", "status": 103,
                        "headers": [(b"link", b"</font.woff2>; rel=preload; as=font")]})
            await send(start)
            await send({"type": "http.response.body", "body": b"page"})
        elif path == "/bad-hint":
            try:
                await send({"type": "http.response.early_hint", "links": [b"</x>\r\nevil: 1"]})
            except ValueError as exc:
                seen.errors.append(str(exc))
            await send(start)
            await send({"type": "http.response.body", "body": b"ok"})
        elif path == "/trailers":
            await send({**start, "headers": [(b"trailer", b"x-checksum, x-more")],
                        "trailers": True})
            await send({"type": "http.response.body", "body": b"part1-", "more_body": True})
            await send({"type": "http.response.body", "body": b"part2"})
            await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")],
                        "more_trailers": True})
            await send({"type": "http.response.trailers", "headers": [(b"x-more", b"1")]})
        elif path == "/pathsend":
            await send({**start, "headers": [(b"content-type", b"application/octet-stream")]})
            try:
                await send({"type": "http.response.pathsend", "path": str(big_file)})
            except OSError as exc:
                seen.errors.append(type(exc).__name__)
                raise
        elif path == "/zerocopy":
            half = FILE_SIZE // 2
            await send(start)
            f = await trio.to_thread.run_sync(open, big_file, "rb")
            with f:
                await send({"type": "http.response.zerocopysend", "file": f, "offset": 0,
                            "count": half, "more_body": True})
                f.seek(half)  # no offset below: from the current position, to the end
                await send({"type": "http.response.zerocopysend", "file": f})
                seen.positions.append(f.tell())
        elif path == "/push":
            await send(start)
            await send({"type": "http.response.push", "path": "/style.css",
                        "headers": [(b"accept", b"text/css")]})
            await send({"type": "http.response.body", "body": b"page"})
        elif path == "/style.css":
            await send({**start, "headers": [(b"content-type", b"text/css")]})
            await send({"type": "http.response.body", "body": b"body{}"})
        else:
            await send({**start, "status": 404})
            await send({"type": "http.response.body", "body": b""})

    return app


@pytest.fixture
def start_ext(start_server: Any, big_file: Path, cert_files: dict[str, str]) -> Any:
    """``server, seen = await start_ext(tls=False, h3=False, parser="auto")``: the app above on
    a real server (TLS when ``tls`` or ``h3``; a quic bind too when ``h3``)."""

    async def start(*, tls: bool = False, h3: bool = False, parser: str = "auto",
                    **config: Any) -> tuple[RunningServer, Seen]:
        seen = Seen()
        kw: dict[str, Any] = {"h1_parser": parser, **config}
        if h3:
            kw.update(quic_binds=("127.0.0.1:0",), certfile=cert_files["certfile"],
                      keyfile=cert_files["keyfile"])
        server = await start_server(make_app(big_file, seen), tls=tls or h3, config=Config(**kw))
        return server, seen

    return start


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` over a fresh TCP connection and read until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = bytearray()
        while chunk := await stream.receive_some(65536):
            data += chunk
    return bytes(data)


# --- a raw HTTP/2 client ---------------------------------------------------------------------
@dataclass
class H2Stream:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    interim: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    ended: bool = False


async def h2_get(port: int, path: str, *, extra: list[tuple[bytes, bytes]] | None = None,
                 enable_push: bool = True) -> tuple[dict[int, H2Stream], list[Any]]:
    """GET ``path`` with prior knowledge over plain TCP; return every stream seen (pushed ones
    included) and the PushedStreamReceived events, once all of them have ended."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    conn = h2.connection.H2Connection(config=config)
    conn.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.ENABLE_PUSH: int(enable_push)})
    conn.initiate_connection()
    conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"),
                          (b":authority", b"localhost"), (b":path", path.encode()),
                          *(extra or [])], end_stream=True)
    streams: dict[int, H2Stream] = {1: H2Stream()}
    pushes: list[Any] = []
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(conn.data_to_send())
        while not all(s.ended for s in streams.values()):
            data = await stream.receive_some(65536)
            assert data, "the server closed the connection"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.PushedStreamReceived):
                    pushes.append(ev)
                    streams[ev.pushed_stream_id] = H2Stream()
                elif isinstance(ev, h2.events.InformationalResponseReceived):
                    streams[ev.stream_id].interim.append(list(ev.headers))
                elif isinstance(ev, h2.events.ResponseReceived):
                    streams[ev.stream_id].headers = list(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    streams[ev.stream_id].data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.TrailersReceived):
                    streams[ev.stream_id].trailers = list(ev.headers)
                elif isinstance(ev, h2.events.StreamEnded):
                    streams[ev.stream_id].ended = True
                elif isinstance(ev, h2.events.StreamReset):
                    raise AssertionError(f"stream {ev.stream_id} reset: {ev.error_code}")
            await stream.send_all(conn.data_to_send())
    return streams, pushes


# --- advertised extensions ----------------------------------------------------------------
async def test_extensions_advertised(start_ext, big_file, cert_files, client_ssl_context):
    server, _ = await start_ext(h3=True)
    with trio.fail_after(10):
        async with httpx.AsyncClient(verify=client_ssl_context, http2=True) as client:
            h2_names = set((await client.get(f"{server.urls[0]}/scope")).json())
        async with httpx.AsyncClient(verify=client_ssl_context, http2=False) as client:
            h1_names = set((await client.get(f"{server.urls[0]}/scope")).json())
        async with open_h3_client(server.quic_addresses[0], cert_files["cafile"]) as h3:
            resp = await h3.get("/scope")
    h3_names = set(json.loads(bytes(resp.body)))
    assert COMMON <= h1_names and "http.response.push" not in h1_names
    assert COMMON | {"http.response.push"} <= h2_names
    assert COMMON <= h3_names and "http.response.push" not in h3_names
    assert {"tls"} <= h1_names & h2_names & h3_names


async def test_http3_tls_extension(start_ext, big_file, cert_files):
    server, seen = await start_ext(h3=True)
    with trio.fail_after(10):
        async with open_h3_client(server.quic_addresses[0], cert_files["cafile"]) as h3:
            await h3.get("/scope")
    tls = seen.scopes["/scope"]["extensions"]["tls"]
    assert tls["tls_version"] == 0x0304
    assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)  # the TLS 1.3 suites
    assert tls["server_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert tls["client_cert_chain"] == []


# --- early hints ----------------------------------------------------------------------------
async def test_early_hints_http1_curl(start_ext, big_file, parser):
    curl = require_tool("curl")
    server, _ = await start_ext(parser=parser)
    result = await run_tool(curl, "-sv", f"{server.urls[0]}/hint", timeout=10)
    err = result.stderr.decode()
    assert result.stdout == b"page"
    assert err.count("< HTTP/1.1 103") == 2
    assert "< link: </style.css>; rel=preload; as=style" in err
    assert "< link: </font.woff2>; rel=preload; as=font" in err
    assert err.index("HTTP/1.1 103") < err.index("HTTP/1.1 200")


async def test_early_hints_http2_curl(start_ext, big_file, cert_files):
    curl = require_tool("curl")
    server, _ = await start_ext(tls=True)
    result = await run_tool(curl, "-sv", "--http2", "--cacert", cert_files["cafile"],
                            f"{server.urls[0]}/hint", timeout=10)
    err = result.stderr.decode()
    assert result.stdout == b"page"
    assert err.count("< HTTP/2 103") == 2
    assert "< link: </app.js>; rel=preload; as=script" in err
    assert err.index("HTTP/2 103") < err.index("HTTP/2 200")


async def test_early_hints_http3(start_ext, big_file, cert_files):
    server, _ = await start_ext(h3=True)
    with trio.fail_after(10):
        async with open_h3_client(server.quic_addresses[0], cert_files["cafile"]) as h3:
            resp = await h3.get("/hint")
    assert resp.status == 200 and bytes(resp.body) == b"page"
    assert [dict(h)[b":status"] for h in resp.interim] == [b"103", b"103"]
    assert [v for n, v in resp.interim[0] if n == b"link"] == LINKS


async def test_early_hints_ignored_for_http10(start_ext, big_file, parser):
    server, _ = await start_ext(parser=parser)
    with trio.fail_after(10):
        data = await raw_exchange(server.port, b"GET /hint HTTP/1.0\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b" 103 " not in data and data.endswith(b"\r\n\r\npage")


async def test_invalid_early_hint_is_refused(start_ext, big_file):
    server, seen = await start_ext()
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"{server.urls[0]}/bad-hint")
    assert resp.status_code == 200 and resp.text == "ok"
    assert seen.errors and "link" in seen.errors[0]
    assert "evil" not in resp.headers


# --- trailers -------------------------------------------------------------------------------
async def test_trailers_http1(start_ext, big_file, parser):
    server, _ = await start_ext(parser=parser)
    with trio.fail_after(10):
        with_te = await raw_exchange(
            server.port,
            b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
        without = await raw_exchange(
            server.port, b"GET /trailers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = with_te.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"6\r\npart1-\r\n5\r\npart2\r\n0\r\nx-checksum: abc\r\nx-more: 1\r\n\r\n"
    # Without TE: trailers the response ends after the body, without them.
    head, _, body = without.partition(b"\r\n\r\n")
    assert body == b"6\r\npart1-\r\n5\r\npart2\r\n0\r\n\r\n"


async def test_trailers_http2(start_ext, big_file):
    server, _ = await start_ext()
    with trio.fail_after(10):
        streams, _ = await h2_get(server.port, "/trailers", extra=[(b"te", b"trailers")])
    st = streams[1]
    assert dict(st.headers)[b":status"] == b"200"
    assert bytes(st.data) == b"part1-part2"
    assert st.trailers == [(b"x-checksum", b"abc"), (b"x-more", b"1")]


async def test_trailers_http3(start_ext, big_file, cert_files):
    server, _ = await start_ext(h3=True)
    with trio.fail_after(10):
        async with open_h3_client(server.quic_addresses[0], cert_files["cafile"]) as h3:
            resp = await h3.get("/trailers")
    assert bytes(resp.body) == b"part1-part2"
    assert resp.trailers == [(b"x-checksum", b"abc"), (b"x-more", b"1")]


# --- pathsend and zerocopysend --------------------------------------------------------------
@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts os.sendfile calls (the real one runs)."""
    calls: list[int] = []
    real = os.sendfile

    def counting(*args: Any) -> int:
        calls.append(args[3])
        return real(*args)

    monkeypatch.setattr(os, "sendfile", counting)
    return calls


@pytest.mark.parametrize("path", ["/pathsend", "/zerocopy"])
async def test_files_http1_plain_use_sendfile(start_ext, big_file, parser, path,
                                              sendfile_calls):
    server, seen = await start_ext(parser=parser)
    with trio.fail_after(15):
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"{server.urls[0]}{path}")
            again = await client.get(f"{server.urls[0]}/scope")  # the connection is reusable
    assert resp.status_code == 200 and again.status_code == 200
    assert resp.content == big_file.read_bytes()
    assert sendfile_calls, "os.sendfile was not used"
    if path == "/pathsend":
        assert resp.headers["content-length"] == str(FILE_SIZE)
    else:
        assert resp.headers["transfer-encoding"] == "chunked"  # more_body: length unknown
        assert seen.positions == [FILE_SIZE]  # the file moved past what was sent


def small_window_socket(port: int) -> trio.SocketStream:
    """A client socket with a 4 KiB receive buffer: the server's sends soon block."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return trio.SocketStream(trio.socket.from_stdlib_socket(sock))


async def test_sendfile_waits_for_a_slow_reader(start_ext, big_file, sendfile_calls):
    # trio's 16 KiB TCP_NOTSENT_LOWAT: the kernel takes the file in pieces, whatever its size.
    server, _ = await start_ext(tcp_notsent_lowat=None)
    stream = small_window_socket(server.port)
    data = bytearray()
    with trio.fail_after(15):
        async with stream:
            await stream.send_all(b"GET /pathsend HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while chunk := await stream.receive_some(4096):
                data += chunk
    assert data.partition(b"\r\n\r\n")[2] == big_file.read_bytes()
    assert len(sendfile_calls) > 1  # it had to wait for the socket to drain


async def test_sendfile_to_a_peer_that_never_reads_times_out(start_ext, mock_clock):
    # The clock moves only when the test moves it. The server opens the file in a worker
    # thread, in real time; an autojumping clock ran on meanwhile, and on a slow machine ran
    # past the test's own bound before the file was even open (CI failed so).
    # trio's 16 KiB TCP_NOTSENT_LOWAT, so that the file cannot all sit in the kernel's buffer.
    server, seen = await start_ext(write_timeout=5, tcp_notsent_lowat=None)
    stream = small_window_socket(server.port)
    async with stream:
        await stream.send_all(b"GET /pathsend HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:  # the head: the file is open, its bytes on the way
            chunk = await stream.receive_some(1024)
            assert chunk, "the server closed the connection"
            received += chunk
        # From here the client reads nothing: the server's send waits for room.
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        mock_clock.jump(4.9)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert seen.errors == []  # not before write_timeout
        mock_clock.jump(0.2)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert seen.errors == ["ClientDisconnected"]


@pytest.mark.parametrize("path", ["/pathsend", "/zerocopy"])
async def test_files_http1_tls(start_ext, big_file, client_ssl_context, path,
                               sendfile_calls):
    server, _ = await start_ext(tls=True)
    with trio.fail_after(15):
        async with httpx.AsyncClient(verify=client_ssl_context) as client:
            resp = await client.get(f"{server.urls[0]}{path}")
    assert resp.http_version == "HTTP/1.1"
    assert resp.content == big_file.read_bytes()
    assert not sendfile_calls  # TLS: read in chunks instead


@pytest.mark.parametrize("path", ["/pathsend", "/zerocopy"])
async def test_files_http2(start_ext, big_file, client_ssl_context, path):
    server, seen = await start_ext(tls=True)
    with trio.fail_after(15):
        async with httpx.AsyncClient(verify=client_ssl_context, http2=True) as client:
            resp = await client.get(f"{server.urls[0]}{path}")
    assert resp.http_version == "HTTP/2"
    assert resp.content == big_file.read_bytes()
    if path == "/pathsend":
        assert resp.headers["content-length"] == str(FILE_SIZE)
    else:
        assert seen.positions == [FILE_SIZE]


@pytest.mark.parametrize("path", ["/pathsend", "/zerocopy"])
async def test_files_http3(start_ext, big_file, cert_files, path):
    server, _ = await start_ext(h3=True)
    with trio.fail_after(20):
        async with open_h3_client(server.quic_addresses[0], cert_files["cafile"]) as h3:
            resp = await h3.get(path)
    assert resp.status == 200
    assert bytes(resp.body) == big_file.read_bytes()
    if path == "/pathsend":
        assert resp.header(b"content-length") == str(FILE_SIZE).encode()


async def test_pathsend_head_and_missing_file(start_server, big_file, tmp_path):
    missing = tmp_path / "missing.bin"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        target = big_file if scope["path"] == "/big" else missing
        await send({"type": "http.response.pathsend", "path": str(target)})

    server = await start_server(app)
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            head = await client.head(f"{server.urls[0]}/big")
            gone = await client.get(f"{server.urls[0]}/missing")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(FILE_SIZE)
    assert gone.status_code == 500  # FileNotFoundError reached the app, which did not catch it


# --- server push ----------------------------------------------------------------------------
async def test_push_http2(start_ext, big_file):
    server, seen = await start_ext()
    with trio.fail_after(10):
        streams, pushes = await h2_get(server.port, "/push")
    assert bytes(streams[1].data) == b"page"
    assert len(pushes) == 1
    promise = pushes[0]
    assert promise.parent_stream_id == 1 and promise.pushed_stream_id % 2 == 0
    request = dict(promise.headers)
    assert request[b":path"] == b"/style.css" and request[b":method"] == b"GET"
    assert request[b":authority"] == b"localhost" and request[b"accept"] == b"text/css"
    pushed = streams[promise.pushed_stream_id]
    assert dict(pushed.headers)[b":status"] == b"200"
    assert bytes(pushed.data) == b"body{}"
    scope = seen.scopes["/style.css"]
    assert scope["http_version"] == "2" and scope["method"] == "GET"
    assert (b"accept", b"text/css") in scope["headers"]


async def test_push_ignored_when_disabled_or_http1(start_ext, big_file):
    server, seen = await start_ext()
    with trio.fail_after(10):
        streams, pushes = await h2_get(server.port, "/push", enable_push=False)
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"{server.urls[0]}/push")
    assert pushes == [] and list(streams) == [1]
    assert bytes(streams[1].data) == b"page"
    assert resp.status_code == 200 and resp.text == "page"
    assert "/style.css" not in seen.scopes


async def test_h2_interim_headers_seen_by_raw_peer(start_ext, big_file):
    server, _ = await start_ext()
    with trio.fail_after(10):
        streams, _ = await h2_get(server.port, "/hint")
    interim = streams[1].interim
    assert [dict(h)[b":status"] for h in interim] == [b"103", b"103"]
    assert bytes(streams[1].data) == b"page"
