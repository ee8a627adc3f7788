"""Real clients against a real server: httpx over HTTP/1.1, HTTP/2 over TLS and h2c with prior
knowledge; curl over HTTP/1.1, HTTP/2 over TLS, prior knowledge and the ``Upgrade: h2c`` dance.
Also the ASGI scope each request gets, ASGI 2 apps, lifespan state and app failures."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
import trio

from trio_http import Config

from .conftest import echo_app, require_tool, run_tool


def scope_fields(scope: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": scope["type"],
        "asgi": scope["asgi"],
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "root_path": scope["root_path"],
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "client": list(scope["client"]) if scope["client"] else None,
        "server": list(scope["server"]) if scope["server"] else None,
        "state": scope.get("state"),
    }


class ScopeApp:
    """Answers with the request's scope as JSON; has a lifespan that fills ``state``."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    scope["state"]["db"] = "connected"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.scopes.append(scope)
        body = json.dumps(scope_fields(scope)).encode()
        # Each request gets its own copy of the state: this must not leak to the next one.
        scope["state"]["touched"] = True
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def as_localhost(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")


@pytest.mark.parametrize("mode", ["h1", "h1-tls", "h2-tls", "h2c"])
async def test_httpx_scope_fields(start_server, client_ssl_context, mode):
    app = ScopeApp()
    tls = mode.endswith("tls")
    server = await start_server(app, tls=tls, config=Config(root_path="/mount"))
    kw: dict[str, Any] = {"verify": client_ssl_context} if tls else {}
    if mode == "h2c":
        kw.update(http1=False, http2=True)
    elif mode == "h2-tls":
        kw.update(http2=True)
    async with httpx.AsyncClient(**kw) as client:
        url = as_localhost(server.urls[0]) + "/a%20b/c%2Fd?x=1&y=%20"
        r = await client.get(url, headers={"X-Custom": "yes"})
        r2 = await client.get(as_localhost(server.urls[0]) + "/again")
    assert r.status_code == 200
    assert r2.status_code == 200
    s = r.json()
    h2 = mode in ("h2-tls", "h2c")
    assert r.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
    assert s["type"] == "http"
    assert s["asgi"]["version"] == "3.0"
    assert s["http_version"] == ("2" if h2 else "1.1")
    assert s["scheme"] == ("https" if tls else "http")
    assert s["method"] == "GET"
    assert s["path"] == "/mount/a b/c/d"
    assert s["raw_path"] == "/a%20b/c%2Fd"
    assert s["query_string"] == "x=1&y=%20"
    assert s["root_path"] == "/mount"
    headers = dict(s["headers"])
    assert headers["x-custom"] == "yes"
    assert headers["host"] == f"localhost:{server.port}"
    assert all(name == name.lower() for name, _ in s["headers"])
    assert s["client"][0] == "127.0.0.1"
    assert isinstance(s["client"][1], int)
    assert s["server"] == ["127.0.0.1", server.port]
    assert s["state"] == {"db": "connected"}
    assert r2.json()["state"] == {"db": "connected"}
    assert server.state == {"db": "connected"}


async def digest_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, then answers with its length and SHA-256 (an echo would deadlock
    with clients that write the whole request before reading)."""
    if scope["type"] != "http":
        return
    h = hashlib.sha256()
    n = 0
    while True:
        msg = await receive()
        h.update(msg.get("body", b""))
        n += len(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"{n} {h.hexdigest()}".encode()})


async def chunked(body: bytes) -> Any:
    for i in range(0, len(body), 10000):
        yield body[i : i + 10000]


async def test_httpx_post_bodies_http1_and_h2(start_server, client_ssl_context):
    server = await start_server(digest_app, tls=True)
    body = bytes(range(256)) * 4000  # 1 MB: many HTTP/2 windows
    expect = f"{len(body)} {hashlib.sha256(body).hexdigest()}"
    for http2 in (False, True):
        async with httpx.AsyncClient(verify=client_ssl_context, http2=http2) as client:
            r = await client.post(as_localhost(server.urls[0]), content=body)
            assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            assert r.text == expect
            # Streamed (chunked over HTTP/1.1) request body.
            r = await client.post(as_localhost(server.urls[0]), content=chunked(body))
            assert r.text == expect


async def test_httpx_many_concurrent_h2_requests(start_server, client_ssl_context):
    server = await start_server(echo_app, tls=True)
    results: dict[int, bytes] = {}
    async with httpx.AsyncClient(verify=client_ssl_context, http2=True) as client:
        async def one(i: int) -> None:
            r = await client.post(as_localhost(server.urls[0]), content=b"%d" % i)
            results[i] = r.content

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(one, i)
    assert results == {i: b"%d" % i for i in range(50)}
    assert server.statistics()["connections_total"] == 1


async def test_asgi2_double_callable_app(start_server):
    class ASGI2App:
        def __init__(self, scope: dict[str, Any]) -> None:
            self.scope = scope

        async def __call__(self, receive: Any, send: Any) -> None:
            if self.scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            body = b"asgi2 " + self.scope["path"].encode()
            await send({"type": "http.response.body", "body": body})

    server = await start_server(ASGI2App)
    for http1, http2 in ((True, False), (False, True)):
        async with httpx.AsyncClient(http1=http1, http2=http2) as client:
            r = await client.get(server.urls[0] + "/two")
            assert r.text == "asgi2 /two"


async def test_app_exception_is_500_and_server_keeps_serving(start_server, client_ssl_context,
                                                              caplog):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/boom":
            raise ValueError("kaboom")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"alive"})

    server = await start_server(app, tls=True)
    for http2 in (False, True):
        async with httpx.AsyncClient(verify=client_ssl_context, http2=http2) as client:
            r = await client.get(as_localhost(server.urls[0]) + "/boom")
            assert r.status_code == 500
            r = await client.get(as_localhost(server.urls[0]) + "/")
            assert r.status_code == 200
            assert r.text == "alive"
    assert server.statistics()["app_errors"] == 2
    assert "kaboom" in caplog.text


async def test_exception_after_start_breaks_response_in_httpx(start_server, client_ssl_context):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/late":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            raise ValueError("late")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server = await start_server(app, tls=True)
    for http2 in (False, True):
        async with httpx.AsyncClient(verify=client_ssl_context, http2=http2) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(as_localhost(server.urls[0]) + "/late")
            r = await client.get(as_localhost(server.urls[0]) + "/")
            assert r.text == "ok"


# --- curl --------------------------------------------------------------------------------


async def curl(*args: str) -> tuple[int, str, str]:
    exe = require_tool("curl")
    proc = await run_tool(exe, "-sS", "--max-time", "10", "-w", "\n%{http_version}", *args,
                          timeout=20)
    out = proc.stdout.decode()
    body, _, version = out.rpartition("\n")
    return proc.returncode, body, version + "|" + proc.stderr.decode()


async def test_curl_http11(start_server):
    server = await start_server(ScopeApp())
    rc, body, version = await curl("--http1.1", server.urls[0] + "/p")
    assert rc == 0, version
    assert version.startswith("1.1")
    assert json.loads(body)["http_version"] == "1.1"


async def test_curl_http2_over_tls(start_server, cert_files):
    server = await start_server(ScopeApp(), tls=True)
    rc, body, version = await curl("--http2", "--cacert", cert_files["cafile"],
                                   as_localhost(server.urls[0]) + "/p")
    assert rc == 0, version
    assert version.startswith("2")
    assert json.loads(body)["http_version"] == "2"
    assert json.loads(body)["scheme"] == "https"


async def test_curl_http11_over_tls(start_server, cert_files):
    server = await start_server(ScopeApp(), tls=True)
    rc, body, version = await curl("--http1.1", "--cacert", cert_files["cafile"],
                                   as_localhost(server.urls[0]) + "/p")
    assert rc == 0, version
    assert version.startswith("1.1")
    assert json.loads(body)["http_version"] == "1.1"


async def test_curl_http2_prior_knowledge(start_server):
    server = await start_server(ScopeApp())
    rc, body, version = await curl("--http2-prior-knowledge", server.urls[0] + "/p")
    assert rc == 0, version
    assert version.startswith("2")
    assert json.loads(body)["http_version"] == "2"


async def test_curl_h2c_upgrade(start_server):
    server = await start_server(ScopeApp())
    rc, body, version = await curl("--http2", "-v", server.urls[0] + "/up?q=1")
    assert rc == 0, version
    assert version.startswith("2")
    assert "101 Switching Protocols" in version  # curl -v prints the upgrade on stderr
    s = json.loads(body)
    assert s["http_version"] == "2"
    assert s["path"] == "/up"
    assert s["query_string"] == "q=1"


async def test_curl_h2c_upgrade_with_post_body(start_server, tmp_path):
    server = await start_server(echo_app)
    data = tmp_path / "body.bin"
    payload = b"upgrade-body-" * 1000
    data.write_bytes(payload)
    rc, body, version = await curl("--http2", "-v", "--data-binary", f"@{data}",
                                   server.urls[0] + "/echo")
    assert rc == 0, version
    assert version.startswith("2"), version
    assert "101 Switching Protocols" in version
    assert body.encode() == payload


async def test_curl_h2c_upgrade_with_large_body_falls_back_to_http11(start_server, tmp_path):
    # A body too large to buffer for the switch is served over HTTP/1.1 instead (the upgrade
    # is optional for the server, RFC 9110 §7.8), never truncated or refused.
    server = await start_server(digest_app)
    data = tmp_path / "big.bin"
    payload = bytes(range(256)) * 1000
    data.write_bytes(payload)
    rc, body, version = await curl("--http2", "--data-binary", f"@{data}",
                                   server.urls[0] + "/big")
    assert rc == 0, version
    assert version.startswith("1.1"), version
    assert body == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"


async def test_curl_many_requests_one_h2_connection(start_server, cert_files):
    server = await start_server(echo_app, tls=True)
    url = as_localhost(server.urls[0])
    args: list[str] = []
    for i in range(10):
        args += ["--http2", "--cacert", cert_files["cafile"], "--data-binary", f"n{i}", url,
                 "--next"]
    rc, body, version = await curl(*args[:-1])
    assert rc == 0, version
    assert body.startswith("n0")
    assert server.statistics()["connections_total"] == 1



async def test_unix_socket_bind(start_server, tmp_path):
    path = str(tmp_path / "app.sock")
    app = ScopeApp()
    server = await start_server(app, binds=[f"unix:{path}"])
    assert server.urls == (f"http+unix://{path}",)
    transport = httpx.AsyncHTTPTransport(uds=path)
    async with httpx.AsyncClient(transport=transport) as client:
        r = await client.get("http://localhost/u")
    s = r.json()
    assert s["path"] == "/u"
    assert s["client"] is None
    assert s["server"] == [path, None]


async def test_failed_tls_handshake_ends_only_that_connection(start_server, client_ssl_context):
    server = await start_server(echo_app, tls=True)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # plaintext to a TLS port
    with trio.fail_after(5):
        while True:
            try:
                if not await stream.receive_some(1000):
                    break
            except trio.BrokenResourceError:
                break
    await stream.aclose()
    async with httpx.AsyncClient(verify=client_ssl_context, http2=True) as client:
        r = await client.post(as_localhost(server.urls[0]), content=b"still here")
        assert r.content == b"still here"
    assert server.statistics()["tls_handshake_failures"] == 1


async def test_tls_handshake_timeout(start_server, client_ssl_context, autojump_clock):
    server = await start_server(echo_app, tls=True, config=Config(tls_handshake_timeout=3))
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    start = trio.current_time()
    with trio.fail_after(30):
        # A client that never starts its handshake is dropped after the timeout.
        assert await stream.receive_some(1000) == b""
    assert 3 <= trio.current_time() - start < 3.5
    assert server.statistics()["tls_handshake_failures"] == 1
