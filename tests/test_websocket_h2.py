"""WebSockets over HTTP/2 (RFC 8441 extended CONNECT) with a raw h2 client: SETTINGS, CONNECT
with ``:protocol websocket``, and DATA frames carrying wsproto client frames."""

from __future__ import annotations

import os
import ssl
from typing import Any

import pytest
import trio
from wsproto.events import CloseConnection, Ping, Pong, TextMessage

from trio_http import ClientDisconnected, Config

from .apps.ws_apps import Recorder, echo_app
from .apps.ws_peers import OP_CONT, OP_TEXT, frame, open_h2_peer


def ws_only(app: Any) -> Any:
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await app(scope, receive, send)

    return wrapped


async def test_settings_advertise_extended_connect(start_server: Any) -> None:
    server = await start_server(echo_app)
    async with open_h2_peer(server.port) as peer:
        assert peer.enable_connect_protocol == 1


@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "plain"])
async def test_echo_text_and_binary_all_sizes(start_server: Any, deflate: bool) -> None:
    server = await start_server(echo_app)
    async with open_h2_peer(server.port) as peer:
        st, ws = await peer.websocket("/ws", deflate=deflate)
        assert st.status == 200 and ws is not None
        assert (st.header(b"sec-websocket-extensions") is not None) == deflate
        with trio.fail_after(30):
            for size in [0, 1, 125, 126, 65535, 65536, 1 << 20, 4 << 20]:
                blob = os.urandom(size)
                await ws.send_bytes(blob)
                assert await ws.receive_message() == blob
                text = "ü" * (size // 2)
                await ws.send_text(text)
                assert await ws.receive_message() == text


async def test_many_websockets_beside_ordinary_streams(start_server: Any) -> None:
    recorder_scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            recorder_scopes.append(scope)
        await echo_app(scope, receive, send)

    server = await start_server(app)
    async with open_h2_peer(server.port) as peer:
        sockets = []
        for i in range(10):
            st, ws = await peer.websocket(f"/ws/{i}", subprotocols=["chat"])
            assert ws is not None and st.header(b"sec-websocket-protocol") == b"chat"
            sockets.append(ws)

        async def talk(i: int) -> None:
            for j in range(20):
                await sockets[i].send_text(f"{i}:{j}")
                assert await sockets[i].receive_message() == f"{i}:{j}"

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(talk, i)
                for _ in range(5):
                    assert await peer.request("GET", "/") == (200, b"hello")
    assert len(recorder_scopes) == 10
    scope = recorder_scopes[0]
    assert scope["http_version"] == "2" and scope["scheme"] == "ws"
    assert scope["subprotocols"] == ["chat"]
    assert dict(scope["headers"])[b"host"] == b"localhost"
    # A websocket scope offers the WebSocket extension, not the http response ones the
    # HTTP/2 connection offers its http scopes (early hints, push...).
    assert "websocket.http.response" in scope["extensions"]
    assert not [name for name in scope["extensions"] if name.startswith("http.response.")]


async def test_tls_alpn_h2_websocket(
    start_server: Any, client_ssl_context: ssl.SSLContext
) -> None:
    recorder = Recorder()
    server = await start_server(recorder, tls=True)
    async with open_h2_peer(server.port, ssl_context=client_ssl_context) as peer:
        _, ws = await peer.websocket("/secure")
        assert ws is not None
        await ws.send_text("over tls")
        assert await ws.receive_message() == "over tls"
        await ws.send(CloseConnection(code=1000))
        assert await ws.expect_close() == (1000, "")
    await recorder.done.wait()
    assert recorder.scope is not None and recorder.scope["scheme"] == "wss"


async def test_fragments_and_ping(start_server: Any) -> None:
    server = await start_server(echo_app)
    async with open_h2_peer(server.port) as peer:
        _, ws = await peer.websocket()
        assert ws is not None
        await ws.send(TextMessage(data="frag", message_finished=False))
        await ws.send(Ping(payload=b"p1"))  # control frames may interleave (RFC 6455 §5.4)
        await ws.send(TextMessage(data="mented", message_finished=True))
        with trio.fail_after(10):
            ev = await ws.next_event()
            assert isinstance(ev, Pong) and ev.payload == b"p1"
            assert await ws.receive_message() == "fragmented"


async def test_client_close_reaches_app_and_stream_ends(start_server: Any) -> None:
    recorder = Recorder(send_after_close=True)
    server = await start_server(recorder)
    async with open_h2_peer(server.port) as peer:
        st, ws = await peer.websocket()
        assert ws is not None
        await ws.send(CloseConnection(code=4000, reason="enough"))
        with trio.fail_after(10):
            assert await ws.expect_close(reply=False) == (4000, "enough")
            await ws.read_until_eof()  # END_STREAM after the closing handshake
            await recorder.done.wait()
        assert st.ended
    assert recorder.disconnect == {"type": "websocket.disconnect", "code": 4000,
                                   "reason": "enough"}
    assert isinstance(recorder.late_send_error, ClientDisconnected)


async def test_stream_reset_is_a_1006_disconnect(start_server: Any) -> None:
    recorder = Recorder(send_after_close=True)
    server = await start_server(recorder)
    async with open_h2_peer(server.port) as peer:
        st, ws = await peer.websocket()
        assert ws is not None
        await ws.send_text("x")
        assert await ws.receive_message() == "x"
        await st.reset()
        with trio.fail_after(10):
            await recorder.done.wait()
        # The connection lives on (this app does not answer plain HTTP: 500).
        assert (await peer.request("GET", "/"))[0] == 500
    assert recorder.disconnect is not None and recorder.disconnect["code"] == 1006
    assert isinstance(recorder.late_send_error, ClientDisconnected)


async def test_server_close_with_code_and_reason(start_server: Any) -> None:
    @ws_only
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4002, "reason": "go"})

    server = await start_server(app)
    async with open_h2_peer(server.port) as peer:
        st, ws = await peer.websocket()
        assert ws is not None
        with trio.fail_after(10):
            assert await ws.expect_close() == (4002, "go")
            await ws.read_until_eof()
        assert st.ended and st.reset_code in (None, 0)


@pytest.mark.parametrize(("how", "status"), [("close", 403), ("return", 403), ("raise", 500)])
async def test_refusal_before_accept(start_server: Any, how: str, status: int) -> None:
    @ws_only
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if how == "close":
            await send({"type": "websocket.close"})
        elif how == "raise":
            raise RuntimeError("boom")

    server = await start_server(app)
    async with open_h2_peer(server.port) as peer:
        st, ws = await peer.websocket()
        assert ws is None and st.status == status
        await st.read_all()
        assert st.ended


async def test_denial_response_extension(start_server: Any) -> None:
    @ws_only
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 409,
                    "headers": [(b"x-why", b"busy")]})
        await send({"type": "websocket.http.response.body", "body": b"try ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"later"})

    server = await start_server(app)
    async with open_h2_peer(server.port) as peer:
        st, ws = await peer.websocket()
        assert ws is None and st.status == 409 and st.header(b"x-why") == b"busy"
        assert await st.read_all() == b"try later"


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [({"protocol": b"connect-udp"}, 501), ({"version": b"8"}, 400)],
    ids=["other-protocol", "bad-version"],
)
async def test_bad_extended_connect_is_refused(
    start_server: Any, kwargs: dict[str, Any], status: int
) -> None:
    server = await start_server(echo_app)
    async with open_h2_peer(server.port) as peer:
        st, ws = await peer.websocket(**kwargs)
        assert ws is None and st.status == status
        assert await peer.request("GET", "/") == (200, b"hello")


async def test_deflate_disabled_by_config(start_server: Any) -> None:
    server = await start_server(echo_app, config=Config(websocket_per_message_deflate=False))
    async with open_h2_peer(server.port) as peer:
        st, ws = await peer.websocket(deflate=True)
        assert ws is not None and st.header(b"sec-websocket-extensions") is None
        await ws.send_text("plain")
        assert await ws.receive_message() == "plain"


async def test_raw_frames_split_across_data_frames(start_server: Any) -> None:
    server = await start_server(echo_app)
    async with open_h2_peer(server.port) as peer:
        st, ws = await peer.websocket()
        assert ws is not None
        wire = frame(OP_TEXT, b"hel", fin=False) + frame(OP_CONT, b"lo")
        for i in range(len(wire)):
            await st.send(wire[i : i + 1])
        with trio.fail_after(10):
            assert await ws.receive_message() == "hello"
