"""An HTTP/3 client for tests: aioquic's sans-io client ``QuicConnection`` and ``H3Connection``
driven from a trio UDP socket (no asyncio). One reader task feeds datagrams in, one sender task
takes datagrams out (woken by requests, or by the QUIC timer)."""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.lowlevel
from aioquic.h3 import events as h3e
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

Headers = list[tuple[bytes, bytes]]


@dataclass
class Response:
    status: int = 0
    headers: Headers = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None
    done: trio.Event = field(default_factory=trio.Event)
    headers_received: trio.Event = field(default_factory=trio.Event)
    interim: list[Headers] = field(default_factory=list)  # 1xx responses, in order
    trailers: Headers = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)


class H3Client:
    def __init__(self, sock: trio.socket.SocketType, addr: tuple[str, int], cafile: str,
                 *, server_name: str = "localhost", idle_timeout: float = 30.0) -> None:
        config = QuicConfiguration(alpn_protocols=list(H3_ALPN), is_client=True,
                                   server_name=server_name, idle_timeout=idle_timeout)
        config.load_verify_locations(cafile=cafile)
        config.verify_mode = ssl.CERT_REQUIRED
        self.sock = sock
        self.addr = addr
        self.quic = QuicConnection(configuration=config)
        self.h3 = H3Connection(self.quic)
        self.responses: dict[int, Response] = {}
        self.connected = trio.Event()
        self.terminated = trio.Event()
        self.goaway_received = False
        self.close_event: Any = None
        self._wake = trio.Event()
        self._watchers: list[tuple[Callable[[], bool], trio.Event]] = []

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; checked after every datagram in or out."""
        if predicate():
            return
        event = trio.Event()
        self._watchers.append((predicate, event))
        await event.wait()

    def _check_watchers(self) -> None:
        for item in list(self._watchers):
            if item[0]():
                self._watchers.remove(item)
                item[1].set()

    # --- pumping ---------------------------------------------------------------------
    def kick(self) -> None:
        self._wake.set()

    async def _reader(self) -> None:
        while True:
            data, addr = await self.sock.recvfrom(65536)
            self.quic.receive_datagram(data, addr, now=trio.current_time())
            self._process()
            self._check_watchers()
            self.kick()

    async def _sender(self) -> None:
        while True:
            timer = self.quic.get_timer()
            if not self._wake.is_set():
                with trio.move_on_at(math.inf if timer is None else timer):
                    await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            if timer is not None and now >= timer:
                self.quic.handle_timer(now)
                self._process()
            for data, addr in self.quic.datagrams_to_send(now=now):
                await self.sock.sendto(data, addr)
            self._check_watchers()

    def _process(self) -> None:
        while (ev := self.quic.next_event()) is not None:
            if isinstance(ev, qe.HandshakeCompleted):
                self.connected.set()
            elif isinstance(ev, qe.ConnectionTerminated):
                self.close_event = ev
                self.terminated.set()
                self.connected.set()
                for r in self.responses.values():
                    r.done.set()
            elif isinstance(ev, qe.StreamReset):
                r = self.responses.get(ev.stream_id)
                if r is not None:
                    r.reset = ev.error_code
                    r.done.set()
            for h in self.h3.handle_event(ev):
                r = self.responses.get(getattr(h, "stream_id", -1))
                if r is None:
                    continue
                if isinstance(h, h3e.HeadersReceived):
                    status = dict(h.headers).get(b":status", b"")
                    if r.status:
                        r.trailers = list(h.headers)
                    elif status.startswith(b"1"):
                        r.interim.append(list(h.headers))
                    else:
                        r.headers = list(h.headers)
                        r.status = int(dict(h.headers)[b":status"])
                        r.headers_received.set()
                    if h.stream_ended:
                        r.ended = True
                        r.done.set()
                elif isinstance(h, h3e.DataReceived):
                    r.body += h.data
                    if h.stream_ended:
                        r.ended = True
                        r.done.set()

    # --- requests ----------------------------------------------------------------------
    def start_request(self, method: str, path: str, *, headers: Headers | None = None,
                      body: bytes | None = None, end_stream: bool = True,
                      authority: str = "localhost") -> tuple[int, Response]:
        sid = self.quic.get_next_available_stream_id()
        resp = self.responses[sid] = Response()
        if self.terminated.is_set():
            resp.done.set()
            return sid, resp
        block = [(b":method", method.encode()), (b":scheme", b"https"),
                 (b":authority", authority.encode()), (b":path", path.encode()),
                 *(headers or [])]
        no_body = not body and end_stream
        self.h3.send_headers(sid, block, end_stream=no_body)
        if body or (end_stream and not no_body):
            self.h3.send_data(sid, body or b"", end_stream=end_stream)
        self.kick()
        return sid, resp

    def send_body(self, sid: int, data: bytes, *, end_stream: bool = False) -> None:
        self.h3.send_data(sid, data, end_stream=end_stream)
        self.kick()

    def reset(self, sid: int, code: int = 0x10C) -> None:
        self.quic.reset_stream(sid, code)
        self.kick()

    async def request(self, method: str, path: str, *, headers: Headers | None = None,
                      body: bytes | None = None) -> Response:
        _, resp = self.start_request(method, path, headers=headers, body=body)
        await resp.done.wait()
        return resp

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    def close(self) -> None:
        self.quic.close(error_code=0x100)
        self.kick()


@asynccontextmanager
async def open_h3_client(addr: tuple[str, int], cafile: str, *, idle_timeout: float = 30.0,
                         handshake_timeout: float = 10.0) -> AsyncIterator[H3Client]:
    """A connected client; closed (CONNECTION_CLOSE) on exit."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    client = H3Client(sock, addr, cafile, idle_timeout=idle_timeout)
    with sock:
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._reader)
            nursery.start_soon(client._sender)
            client.quic.connect(addr, now=trio.current_time())
            client.kick()
            with trio.move_on_after(handshake_timeout):
                await client.connected.wait()
            if not client.connected.is_set():
                failure = trio.TooSlowError()
            elif client.terminated.is_set():
                failure = ConnectionError(f"QUIC handshake failed: {client.close_event}")
            if failure is not None:
                nursery.cancel_scope.cancel()
            else:
                try:
                    yield client
                finally:
                    if not client.terminated.is_set():
                        client.close()
                        for _ in range(10):  # let the sender flush CONNECTION_CLOSE
                            await trio.lowlevel.checkpoint()
                    nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
