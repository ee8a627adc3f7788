"""The HTTP/1.1 hot path's direct socket calls (_sockio.py): used only under a plain
``trio.SocketStream``, still yielding between pipelined requests, and handing a write the
kernel cannot take at once to the stream (which waits for room)."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import trio
import trio.testing

from trio_http import Config, handle_asgi_stream
from trio_http._sockio import raw_socket, receive_after_yield, set_notsent_lowat

from .apps.peers import connect, read_until_eof


class Ticker:
    """A task that counts scheduler batches: it runs once per batch while anything is runnable."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await trio.lowlevel.checkpoint()


async def test_raw_socket_only_under_a_plain_socket_stream(cert_files: dict[str, str]) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with listeners[0], await trio.open_tcp_stream("127.0.0.1", port) as client:
        raw = raw_socket(client)
        # If trio ever renames the attribute, the hot path is off: this test says so.
        assert isinstance(raw, socket.socket)
        assert raw.fileno() == client.socket.fileno()
        ctx = ssl.create_default_context()
        assert raw_socket(trio.SSLStream(client, ctx, server_hostname="localhost")) is None
    left, _ = trio.testing.memory_stream_pair()
    assert raw_socket(left) is None


async def test_pipelined_requests_let_other_tasks_run(start_server: Any) -> None:
    # A response's last write skips trio's checkpoint; the connection loop must then yield
    # before a request that is already buffered, or a pipelining client would hold the server.
    ticker = Ticker()
    seen: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(ticker.ticks)  # no await in this app: only the server can yield
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server = await start_server(app)
    stream = await connect(server.port)
    reqs = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 20
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker.run)
            await stream.send_all(reqs + b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            raw = await read_until_eof(stream)
            nursery.cancel_scope.cancel()
    assert raw.count(b"HTTP/1.1 200 OK") == 21
    assert len(seen) == 21
    # The ticker runs once per scheduler batch, before or after the server's task (trio
    # shuffles the order within a batch): without a yield per request, one batch would serve
    # them all and ``seen`` would hold one or two values.
    assert len(set(seen)) > 10, seen


async def test_a_response_larger_than_the_socket_buffer_arrives_whole(start_server: Any) -> None:
    # 16 MiB: more than Linux's largest socket buffers (tcp_wmem and tcp_rmem top out at
    # 4 and 6 MiB by default), so the first send() takes only part of it.
    body = bytes(range(256)) * (64 * 1024)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    server = await start_server(app)
    stream = await connect(server.port)
    with trio.fail_after(20):
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        raw = await read_until_eof(stream, limit=len(body) + 4096)
    head, _, got = raw.partition(b"\r\n\r\n")
    assert b"content-length: 16777216" in head.lower()
    assert got == body


async def test_a_websocket_app_that_only_sends_still_lets_other_tasks_run(
    start_server: Any,
) -> None:
    # A write the kernel takes whole may skip its checkpoint only if a read has waited since
    # the last one that did: an app sending in a loop must still yield to the scheduler.
    from .apps.ws_peers import open_h1_websocket

    ticker = Ticker()
    seen: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        for i in range(40):
            seen.append(ticker.ticks)  # no await here but send(): only the server can yield
            await send({"type": "websocket.send", "text": str(i)})
        await send({"type": "websocket.close", "code": 1000})

    server = await start_server(app)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker.run)
            async with open_h1_websocket(server.port) as ws:
                got = [await ws.receive_message() for _ in range(40)]
                assert (await ws.expect_close())[0] == 1000
            nursery.cancel_scope.cancel()
    assert got == [str(i) for i in range(40)]
    # A yield at every other send at least: without one, seen would hold one or two values.
    assert len(set(seen)) >= 10, seen


async def _tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    return client, server


def _lowat(stream: trio.SocketStream) -> int:
    return int(stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT))


async def test_set_notsent_lowat_on_tcp_only() -> None:
    client, server = await _tcp_pair()
    async with client, server:
        assert _lowat(server) == 16384  # trio's own setting
        assert set_notsent_lowat(server, 1 << 20)
        assert _lowat(server) == 1 << 20
        tls = trio.SSLStream(server, ssl.create_default_context(), server_side=False)
        assert set_notsent_lowat(tls, 65536)  # the TCP connection under TLS
        assert _lowat(server) == 65536
    a, b = trio.socket.socketpair()
    with a, b:
        assert not set_notsent_lowat(trio.SocketStream(a), 1 << 20)  # a Unix socket
    left, _ = trio.testing.memory_stream_pair()
    assert not set_notsent_lowat(left, 1 << 20)


async def test_each_connection_gets_the_configured_lowat() -> None:
    seen: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(_lowat(server))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    for config, expected in ((Config(tcp_notsent_lowat=262144), 262144),
                             (Config(), 1 << 20), (Config(tcp_notsent_lowat=None), 16384)):
        client, server = await _tcp_pair()
        with trio.fail_after(10):
            async with client, trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda s=server, c=config: handle_asgi_stream(app, s, config=c)
                )
                await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                assert (await read_until_eof(client)).startswith(b"HTTP/1.1 204 ")
        assert seen[-1] == expected


async def test_receive_after_yield_reads_what_is_there_after_one_yield() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.sendall(b"GET / HTTP/1.1\r\n\r\n")
        # The bytes are there already, yet the call is a checkpoint (a scheduling point).
        with trio.testing.assert_checkpoints():
            assert await receive_after_yield(a, 1024) == b"GET / HTTP/1.1\r\n\r\n"


async def test_receive_after_yield_waits_when_nothing_is_there() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        got: list[bytes] = []

        async def reader() -> None:
            got.append(await receive_after_yield(a, 1024))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []  # parked on readability, not spinning
            b.sendall(b"late")
        assert got == [b"late"]
        b.shutdown(socket.SHUT_WR)
        assert await receive_after_yield(a, 1024) == b""  # end of file


async def test_receive_after_yield_cancelled_reads_nothing() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.sendall(b"kept")
        with trio.CancelScope() as scope:
            scope.cancel()
            await receive_after_yield(a, 1024)
        assert scope.cancelled_caught
        assert a.recv(1024) == b"kept"  # still in the kernel for the next read
