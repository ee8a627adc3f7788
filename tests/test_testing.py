"""trio_http.testing: open_test_server, serve_in_thread and RecordingApp, with real clients
(httpx over HTTP/1.1, HTTP/2 and h2c, requests, raw sockets) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import socket
import ssl
import subprocess
import sys
import threading
import traceback
from typing import Any

import httpx
import pytest
import requests
import trio

from trio_http import Config, LifespanFailure, serve_asgi
from trio_http.testing import (
    RecordingApp,
    TestServer,
    default_ca,
    open_test_server,
    serve_in_thread,
)

from .conftest import echo_app, hello_app

HAS_QUIC = "quic_binds" in inspect.signature(serve_asgi).parameters or "quic_binds" in {
    f.name for f in dataclasses.fields(Config)
}


async def boom_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    raise ZeroDivisionError("boom from the app")


def _frames(exc: BaseException) -> list[str]:
    return [f.name for f in traceback.extract_tb(exc.__traceback__)]


# --- open_test_server -------------------------------------------------------------------


async def test_tls_server_speaks_h2_and_http11() -> None:
    rec = RecordingApp(hello_app)
    async with open_test_server(rec) as server:
        assert server.url == f"https://127.0.0.1:{server.port}"
        assert server.h2_url == server.http1_url == server.url
        assert server.h2c_url is None and server.http3_url is None
        assert server.ca is default_ca()
        async with httpx.AsyncClient(verify=server.ssl_context(), http2=True) as client:
            r = await client.post(server.url + "/a?x=1", content=b"payload",
                                  headers={"X-Test": "yes"})
            assert (r.status_code, r.http_version, r.text) == (200, "HTTP/2", "hello over 2")
        ctx = ssl.create_default_context(cafile=server.ca_file)  # what requests/curl use
        async with httpx.AsyncClient(verify=ctx) as client:
            r = await client.get(server.url + "/b")
            assert (r.http_version, r.text) == ("HTTP/1.1", "hello over 1.1")
        stats = server.statistics()
        assert stats["requests_by_http_version"] == {"2": 1, "1.1": 1}
        assert stats["connections_total"] == 2
    assert rec.http_versions == ["2", "1.1"]
    first = rec.assert_requested(method="POST", path="/a", http_version="2",
                                 headers={"x-test": "yes"})
    assert first.query_string == b"x=1" and first.scheme == "https"
    rec.assert_requested(path="/b", http_version="1.1", count=1)


async def test_cleartext_server_speaks_h2c_and_http11() -> None:
    rec = RecordingApp(body=b"plain")
    async with open_test_server(rec, tls=False) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.h2c_url == server.url and server.h2_url is None
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            r = await client.get(server.h2c_url + "/prior-knowledge")
            assert (r.http_version, r.text) == ("HTTP/2", "plain")
        async with httpx.AsyncClient() as client:
            r = await client.get(server.http1_url + "/h11")
            assert r.http_version == "HTTP/1.1"
    assert rec.http_versions == ["2", "1.1"]
    assert server.statistics()["shutting_down"] is True  # figures frozen at shutdown


async def test_app_exception_is_raised_on_exit_with_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError, match="boom from the app") as excinfo:
        async with open_test_server(boom_app) as server:
            async with httpx.AsyncClient(verify=server.ssl_context(), http2=True) as client:
                assert (await client.get(server.url + "/x")).status_code == 500
            assert isinstance(server.app_error, ZeroDivisionError)
    assert "boom_app" in _frames(excinfo.value)


async def test_app_exception_is_attached_when_the_block_fails() -> None:
    with pytest.raises(AssertionError) as excinfo:
        async with open_test_server(boom_app, tls=False) as server, httpx.AsyncClient() as c:
            r = await c.get(server.url + "/where")
            assert r.status_code == 200, "the test's own failure"
    notes = "\n".join(getattr(excinfo.value, "__notes__", []))
    assert "the app also raised while serving GET '/where'" in notes
    assert "ZeroDivisionError: boom from the app" in notes and "boom_app" in notes


async def test_raise_app_errors_false_keeps_them_for_inspection() -> None:
    async with open_test_server(boom_app, tls=False, raise_app_errors=False) as server:
        async with httpx.AsyncClient() as client:
            for _ in range(2):
                assert (await client.get(server.url)).status_code == 500
    assert [type(e) for e in server.app_errors] == [ZeroDivisionError] * 2


async def test_app_exception_replaces_cancellation() -> None:
    # A fixture's nursery is cancelled at teardown: the app's error must still surface.
    with pytest.raises(ZeroDivisionError):
        with trio.CancelScope() as scope:
            async with open_test_server(boom_app, tls=False) as server:
                async with httpx.AsyncClient() as client:
                    await client.get(server.url)
                scope.cancel()
                await trio.sleep_forever()


async def test_block_exception_is_not_wrapped_in_a_group() -> None:
    with pytest.raises(KeyError):
        async with open_test_server(hello_app):
            raise KeyError("mine")


async def test_startup_failure_raised_on_entry() -> None:
    async def no_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "db is down"})

    with pytest.raises(LifespanFailure):
        async with open_test_server(no_startup, config=Config(lifespan="on")):
            pytest.fail("should not start")  # pragma: no cover


async def test_http3_served_or_clear_error() -> None:
    with pytest.raises(ValueError, match="tls"):
        async with open_test_server(hello_app, tls=False, http3=True):
            pass  # pragma: no cover
    if not HAS_QUIC:
        with pytest.raises(NotImplementedError, match="HTTP/3"):
            async with open_test_server(hello_app, http3=True):
                pass  # pragma: no cover
        return
    from .h3_client import open_h3_client

    rec = RecordingApp(hello_app)
    async with open_test_server(rec, http3=True) as server:
        assert server.http3_url == f"https://127.0.0.1:{server.http3_port}"
        async with open_h3_client(("127.0.0.1", server.http3_port), server.ca_file) as client:
            r = await client.get("/h3")
            assert (r.status, bytes(r.body)) == (200, b"hello over 3")
        # the same app, on TCP, beside it
        async with httpx.AsyncClient(verify=server.ssl_context(), http2=True) as tcp:
            assert (await tcp.get(server.h2_url + "/h2")).text == "hello over 2"
        assert server.statistics()["requests_by_http_version"] == {"3": 1, "2": 1}
    rec.assert_requested(path="/h3", http_version="3", count=1)


class Asgi2App:
    """ASGI 2: instantiated per scope, then called with receive and send."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2 " + self.scope["path"].encode()})


async def test_asgi2_app_is_served() -> None:
    async with open_test_server(Asgi2App, tls=False) as server, httpx.AsyncClient() as client:
        assert (await client.get(server.url + "/p")).text == "asgi2 /p"


async def test_recording_app_wraps_a_streaming_app() -> None:
    rec = RecordingApp(echo_app)
    async with open_test_server(rec) as server:
        async with httpx.AsyncClient(verify=server.ssl_context(), http2=True) as client:
            r = await client.put(server.url + "/echo", content=b"x" * 100_000)
            assert r.content == b"x" * 100_000
    req = rec.last
    assert (req.method, req.body, req.status, req.finished) == ("PUT", b"x" * 100_000, 200, True)
    assert req.header("Content-Length") == "100000"
    rec.assert_all_http_version("2")
    rec.assert_not_requested(method="GET")
    with pytest.raises(AssertionError, match=r"expected a request matching method='GET'.*PUT"):
        rec.assert_requested(method="GET")
    with pytest.raises(AssertionError, match="expected 2 request"):
        rec.assert_requested(path="/echo", count=2)
    with pytest.raises(AssertionError, match=r"every request over HTTP/1\.1"):
        rec.assert_all_http_version("1.1")
    rec.clear()
    assert len(rec) == 0
    with pytest.raises(AssertionError):
        rec.last  # noqa: B018


# --- serve_in_thread --------------------------------------------------------------------


def test_serve_in_thread_sync_httpx_over_h2() -> None:
    rec = RecordingApp(body=b"from the thread")
    with serve_in_thread(rec) as server, httpx.Client(
        verify=server.ssl_context(), http2=True
    ) as client:
        for i in range(3):
            r = client.post(f"{server.url}/n/{i}", content=str(i).encode())
            assert (r.http_version, r.text) == ("HTTP/2", "from the thread")
        stats = server.statistics()  # read in the server's own loop
        assert stats["requests_by_http_version"] == {"2": 3}
        assert stats["connections_open"] == 1
    assert [r.body for r in rec.requests] == [b"0", b"1", b"2"]
    rec.assert_all_http_version("2")
    assert server.statistics()["connections_open"] == 0  # after the stop


def test_serve_in_thread_from_asyncio_with_httpx_async_client() -> None:
    rec = RecordingApp(echo_app)

    async def main(url: str, ctx: ssl.SSLContext) -> list[httpx.Response]:
        async with httpx.AsyncClient(verify=ctx, http2=True) as client:
            return list(await asyncio.gather(
                *(client.post(f"{url}/{i}", content=b"%d" % i) for i in range(10))
            ))

    with serve_in_thread(rec) as server:
        responses = asyncio.run(main(server.url, server.ssl_context()))
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert sorted(r.content for r in responses) == sorted(b"%d" % i for i in range(10))
    assert len(rec.requests) == 10
    assert server.statistics()["connections_total"] == 1  # ten streams on one connection


def test_serve_in_thread_with_requests_and_ca_file() -> None:
    rec = RecordingApp(body=b"ok")
    with serve_in_thread(rec) as server:
        r = requests.post(server.url + "/form", data=b"a=1", verify=server.ca_file, timeout=10)
        assert (r.status_code, r.text) == (200, "ok")
    rec.assert_requested(method="POST", path="/form", http_version="1.1", body=b"a=1")


def test_serve_in_thread_reraises_app_exception_in_the_test_thread() -> None:
    before = threading.active_count()
    with pytest.raises(ZeroDivisionError, match="boom from the app") as excinfo:
        with serve_in_thread(boom_app, tls=False) as server:
            assert httpx.get(server.url + "/t").status_code == 500
    assert "boom_app" in _frames(excinfo.value)
    assert threading.active_count() == before

    with pytest.raises(AssertionError) as excinfo2:
        with serve_in_thread(boom_app, tls=False) as server:
            assert httpx.get(server.url + "/u").status_code == 200
    assert "the app also raised while serving GET '/u'" in "\n".join(excinfo2.value.__notes__)


def test_serve_in_thread_startup_failure_raised_on_entry() -> None:
    async def lifespan_fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("cannot start")

    before = threading.active_count()
    with pytest.raises(LifespanFailure):
        with serve_in_thread(lifespan_fails, config=Config(lifespan="on")):
            pytest.fail("should not start")  # pragma: no cover
    assert threading.active_count() == before


def test_test_server_is_not_collected() -> None:
    assert TestServer.__test__ is False


def test_plugin_import_is_cheap() -> None:
    code = (
        "import sys, trio_http.testing._plugin\n"
        "heavy = ['pytest_trio', 'httpx', 'trustme', 'trio_http.testing._server']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# --- leaks ------------------------------------------------------------------------------


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _listening_ports() -> set[int]:
    """TCP ports on which a socket of this process listens (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _get(port: int, ctx: ssl.SSLContext | None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        # Without it, Nagle holds the request behind the TLS Finished for a delayed ACK (40 ms).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1") if ctx else raw
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        return data


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_hundreds_of_thread_servers_leak_nothing() -> None:
    ctx = ssl.create_default_context()
    default_ca().configure_trust(ctx)
    ctx.set_alpn_protocols(["http/1.1"])

    def one(i: int, *, check_listening: bool = False) -> int:
        with serve_in_thread(hello_app, tls=i % 2 == 0) as server:
            if check_listening:
                assert server.port in _listening_ports()  # the leak check can see a leak
            assert _get(server.port, ctx if server.tls else None).startswith(b"HTTP/1.1 200")
        return server.port

    for i in range(3):  # warm-up: the CA, certificate files and lazy imports
        one(i, check_listening=True)
    threads, fds, listening = set(threading.enumerate()), _fd_count(), _listening_ports()
    ports = {one(i) for i in range(200)}
    # No thread born during the loop is still alive. (Counting would not do: an idle worker
    # thread left by an earlier test may exit meanwhile.)
    assert not set(threading.enumerate()) - threads
    assert _fd_count() == fds
    assert _listening_ports() == listening and not ports & listening


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_hundreds_of_trio_servers_leak_nothing() -> None:
    async def one(i: int) -> int:
        tls, http3 = i % 2 == 0, HAS_QUIC and i % 4 == 0  # UDP sockets are fds too
        async with open_test_server(hello_app, tls=tls, http3=http3) as server:
            stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            if server.tls:
                stream = trio.SSLStream(stream, server.ssl_context(alpn=["http/1.1"]),
                                        server_hostname="127.0.0.1")
            async with stream:
                await stream.send_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200")
        return server.port

    await one(0)
    fds = _fd_count()
    ports = {await one(i) for i in range(200)}
    assert _fd_count() == fds
    assert not ports & _listening_ports()
