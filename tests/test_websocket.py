"""WebSockets over HTTP/1.1 (RFC 6455) with a third-party client: the ``websockets`` package's
sync client, run in a worker thread against a real server on 127.0.0.1."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from typing import Any

import pytest
import trio
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from trio_http import ClientDisconnected, Config

from .apps.ws_apps import Recorder, echo_app
from .apps.ws_peers import open_h1_websocket

TIMEOUT = 20


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking client in a thread, bounded in time."""
    with trio.fail_after(TIMEOUT):
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


def ws_connect(port: int, path: str = "/ws", **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("max_size", None)
    kwargs.setdefault("open_timeout", 10)
    kwargs.setdefault("close_timeout", 10)
    return connect(f"ws://127.0.0.1:{port}{path}", **kwargs)


SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 5 << 20]


@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "plain"])
async def test_echo_text_and_binary_all_sizes(start_server: Any, deflate: bool) -> None:
    server = await start_server(echo_app)

    def client() -> list[str | None]:
        seen = []
        compression = "deflate" if deflate else None
        with ws_connect(server.port, compression=compression) as ws:
            seen.append(ws.response.headers.get("sec-websocket-extensions"))
            for size in SIZES:
                blob = os.urandom(size)
                ws.send(blob)
                assert ws.recv(timeout=10) == blob
                text = ("é" + "a" * 7) * (size // 9)
                ws.send(text)
                assert ws.recv(timeout=10) == text
        return seen

    [extensions] = await in_thread(client)
    if deflate:
        assert extensions is not None and extensions.startswith("permessage-deflate")
    else:
        assert extensions is None


async def test_deflate_can_be_turned_off(start_server: Any) -> None:
    server = await start_server(echo_app, config=Config(websocket_per_message_deflate=False))

    def client() -> str | None:
        with ws_connect(server.port) as ws:  # offers permessage-deflate by default
            ws.send("x" * 10000)
            assert ws.recv(timeout=10) == "x" * 10000
            return ws.response.headers.get("sec-websocket-extensions")

    assert await in_thread(client) is None


async def test_deflate_compresses_on_the_wire(start_server: Any) -> None:
    server = await start_server(echo_app)
    async with open_h1_websocket(server.port, deflate=True) as ws:
        assert ws.status == 101 and ws.accepted_extensions
        await ws.send_text("z" * 100_000)
        raw = await ws.stream.receive_some(200_000)
        # RSV1 marks a compressed message (RFC 7692 §6); 100 kB of "z" shrinks to a few bytes.
        assert raw[0] & 0x40 and len(raw) < 1000
        ws.ws.receive_data(raw)
        assert [e.data for e in ws.ws.events()] == ["z" * 100_000]


async def test_fragmented_messages_are_assembled(start_server: Any) -> None:
    recorder = Recorder()
    server = await start_server(recorder)

    def client() -> None:
        with ws_connect(server.port) as ws:
            ws.send(["frag", "ment", "ed"])
            assert ws.recv(timeout=10) == "fragmented"
            ws.send([b"\x00" * 70000, b"", b"\x01" * 5])
            assert ws.recv(timeout=10) == b"\x00" * 70000 + b"\x01" * 5

    await in_thread(client)
    await recorder.done.wait()
    assert recorder.received[0] == {"type": "websocket.receive", "text": "fragmented"}
    assert recorder.received[1]["bytes"] == b"\x00" * 70000 + b"\x01" * 5


async def test_client_ping_gets_pong(start_server: Any) -> None:
    server = await start_server(echo_app)

    def client() -> bool:
        with ws_connect(server.port) as ws:
            latency = ws.ping(b"are you there").wait(10)
            ws.send("after ping")
            assert ws.recv(timeout=10) == "after ping"
            return latency

    assert await in_thread(client)


async def test_subprotocol_and_scope(start_server: Any) -> None:
    recorder = Recorder()
    server = await start_server(recorder)

    def client() -> str | None:
        with ws_connect(server.port, "/chat/room%201?x=1", subprotocols=["v2", "v1"]) as ws:
            ws.send("hi")
            ws.recv(timeout=10)
            return ws.subprotocol

    await in_thread(client)
    await recorder.done.wait()
    scope = recorder.scope
    assert scope is not None
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat/room 1" and scope["raw_path"] == b"/chat/room%201"
    assert scope["query_string"] == b"x=1"
    assert scope["subprotocols"] == ["v2", "v1"]
    assert "websocket.http.response" in scope["extensions"]
    assert "method" not in scope


async def test_accept_with_subprotocol_and_headers(start_server: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "v1",
                    "headers": [(b"x-custom", b"yes")]})
        await receive()

    server = await start_server(app)

    def client() -> tuple[str | None, str | None]:
        with ws_connect(server.port, subprotocols=["v2", "v1"]) as ws:
            return ws.subprotocol, ws.response.headers.get("x-custom")

    assert await in_thread(client) == ("v1", "yes")


async def test_wss_scope_scheme(start_server: Any, client_ssl_context: ssl.SSLContext) -> None:
    recorder = Recorder()
    server = await start_server(recorder, tls=True)
    client_ssl_context.set_alpn_protocols(["http/1.1"])

    def client() -> None:
        with connect(f"wss://localhost:{server.port}/", ssl=client_ssl_context,
                     open_timeout=10) as ws:
            ws.send("secure")
            assert ws.recv(timeout=10) == "secure"

    await in_thread(client)
    await recorder.done.wait()
    assert recorder.scope is not None and recorder.scope["scheme"] == "wss"


# --- close paths ------------------------------------------------------------------------
async def test_client_close_code_and_reason_reach_the_app(start_server: Any) -> None:
    recorder = Recorder()
    server = await start_server(recorder)

    def client() -> None:
        with ws_connect(server.port) as ws:
            ws.send("one")
            assert ws.recv(timeout=10) == "one"
            ws.close(4321, "client is done")

    await in_thread(client)
    with trio.fail_after(10):
        await recorder.done.wait()
    assert recorder.disconnect == {"type": "websocket.disconnect", "code": 4321,
                                   "reason": "client is done"}


async def test_server_close_with_code_and_reason(start_server: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "bye soon"})
        await send({"type": "websocket.close", "code": 4001, "reason": "server says bye"})

    server = await start_server(app)

    def client() -> tuple[int | None, str | None]:
        with ws_connect(server.port) as ws:
            assert ws.recv(timeout=10) == "bye soon"
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=10)
            rcvd = info.value.rcvd
            assert rcvd is not None
            return rcvd.code, rcvd.reason

    assert await in_thread(client) == (4001, "server says bye")


@pytest.mark.parametrize("how", ["close", "return", "raise"])
async def test_refusal_before_accept(start_server: Any, how: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        if how == "close":
            await send({"type": "websocket.close"})
        elif how == "raise":
            raise RuntimeError("boom")

    server = await start_server(app)

    def client() -> int:
        with pytest.raises(InvalidStatus) as info:
            ws_connect(server.port)
        return info.value.response.status_code

    assert await in_thread(client) == (500 if how == "raise" else 403)


async def test_denial_response_extension(start_server: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Basic")]})
        await send({"type": "websocket.http.response.body", "body": b"who ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"are you?"})

    server = await start_server(app)

    def client() -> tuple[int, str | None, bytes]:
        with pytest.raises(InvalidStatus) as info:
            ws_connect(server.port)
        r = info.value.response
        return r.status_code, r.headers.get("www-authenticate"), r.body

    assert await in_thread(client) == (401, "Basic", b"who are you?")


@pytest.mark.parametrize("error", [False, True])
async def test_app_returns_after_accept(start_server: Any, error: bool) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        if error:
            raise RuntimeError("app failure")

    server = await start_server(app)

    def client() -> int | None:
        with ws_connect(server.port) as ws, pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        return info.value.rcvd.code if info.value.rcvd else None

    assert await in_thread(client) == (1011 if error else 1000)


async def test_app_send_after_client_close_raises_client_disconnected(start_server: Any) -> None:
    recorder = Recorder(send_after_close=True)
    server = await start_server(recorder)

    def client() -> None:
        with ws_connect(server.port) as ws:
            ws.send("x")
            ws.recv(timeout=10)

    await in_thread(client)
    with trio.fail_after(10):
        await recorder.done.wait()
    assert recorder.disconnect is not None and recorder.disconnect["code"] == 1000
    assert isinstance(recorder.late_send_error, ClientDisconnected)
    assert isinstance(recorder.late_send_error, OSError)


async def test_send_after_own_close_raises_and_close_twice_is_harmless(start_server: Any) -> None:
    errors: list[BaseException] = []
    finished = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        await send({"type": "websocket.close", "code": 1000})
        try:
            await send({"type": "websocket.send", "bytes": b"late"})
        except BaseException as exc:
            errors.append(exc)
        msg = await receive()
        errors.append(msg)  # type: ignore[arg-type]
        finished.set()

    server = await start_server(app)

    def client() -> None:
        with ws_connect(server.port) as ws, pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)

    await in_thread(client)
    with trio.fail_after(10):
        await finished.wait()
    assert isinstance(errors[0], ClientDisconnected)
    assert errors[1] == {"type": "websocket.disconnect", "code": 1000, "reason": ""}


# --- handshake errors -------------------------------------------------------------------
async def _raw(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        out = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                out += chunk
        return out


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"Sec-WebSocket-Version: 13\r\n", b"400"),  # no key
        (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
         b"426"),
        (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         b"Sec-WebSocket-Protocol: \xff\xfe\r\n", b"400"),
        (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=x\r\n", b"101"),
    ],
    ids=["no-key", "bad-version", "undecodable-protocol", "bad-deflate-offer"],
)
async def test_bad_handshakes_are_refused_without_harm(
    start_server: Any, headers: bytes, status: bytes
) -> None:
    server = await start_server(echo_app)
    request = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\n" + headers + b"\r\n")
    if status == b"101":
        # A malformed permessage-deflate offer is declined; the WebSocket still opens.
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(request)
            head = await stream.receive_some(65536)
        assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" not in head.lower()
    else:
        response = await _raw(server.port, request)
        assert response.split(b" ")[1] == status
        if status == b"426":
            assert b"sec-websocket-version: 13" in response.lower()
    # The server is unharmed.
    r = await _raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 200") and r.endswith(b"hello")
    assert server.statistics()["app_errors"] == 0


async def test_upgrade_with_other_method_is_plain_http(start_server: Any) -> None:
    server = await start_server(echo_app)
    r = await _raw(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade, close\r\nContent-Length: 0\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 200")
