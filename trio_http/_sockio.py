"""Direct system calls on a plain TCP or Unix connection, for the HTTP/1.1 hot path.

``trio.SocketStream`` wraps every call in a conflict detector, an error-translating generator
context manager and trio's try-then-wait helper, which ends each successful call with a trip
through the scheduler. Per keep-alive request those wrappers cost more than our whole
HTTP/1.1 bridge (profiled: about a quarter of the server's CPU). The two calls made on every
request go to the socket directly instead:

* the read of the next request head (or WebSocket frame) first yields to the scheduler, then
  tries ``recv()``, and only if nothing is there waits for readability
  (:func:`receive_after_yield`). Right after a response the next request is almost never
  here yet, so a ``recv()`` at once only buys an ``EAGAIN``; but once every other ready
  task has had its turn, under load it nearly always is, and the read then skips the
  ``epoll_ctl()`` that each of trio's one-shot waits makes, and the wake-up. Measured with
  wrk at 50 connections: +15-25% requests/s (WebSocket echo: +15-20%); at 1 connection,
  where the ``recv()`` after the yield finds nothing, no difference beyond noise. The h2c
  reader instead waits first (:func:`receive_after_wait`): it reads again before the stream
  tasks that answer have run, so a yield finds nothing (measured: no gain);
* a write is one ``send()`` or ``sendmsg()`` (a response's head and body gathered, with no
  joining copy), made at once; only when the kernel's buffer is full does the caller wait
  for room, under its write timeout.

Everything else (TLS, request bodies, WebSockets, sendfile) keeps using the stream.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import trio

__all__ = [
    "advance",
    "raw_socket",
    "receive_after_wait",
    "receive_after_yield",
    "set_notsent_lowat",
    "try_send",
]


def raw_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """The stdlib socket under a plain ``trio.SocketStream``; ``None`` for any other stream
    (TLS, a test's memory stream, PROXY-protocol wrappers).

    trio has no public accessor for it: the attribute read is guarded, so a trio release that
    renames it only turns the hot path off (``tests/test_sockio.py`` notices)."""
    if type(stream) is not trio.SocketStream:
        return None
    sock: Any = getattr(stream.socket, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def set_notsent_lowat(stream: trio.abc.Stream, nbytes: int) -> bool:
    """Let the kernel queue up to ``nbytes`` (bytes) of unsent data on the TCP connection under
    ``stream`` (``TCP_NOTSENT_LOWAT``; through TLS too) before a write must wait. Returns
    whether it was set: not for Unix sockets, other streams, or where the option is missing.

    trio sets 16 KiB on each connection: a write then returns only once nearly all of it is
    on the wire, and a large response costs a wait for writability per ~100 KiB."""
    inner: trio.abc.Stream = stream
    while isinstance(inner, trio.SSLStream):
        inner = inner.transport_stream
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if (option is None or type(inner) is not trio.SocketStream
            or inner.socket.family not in (socket.AF_INET, socket.AF_INET6)):
        return False
    try:
        inner.setsockopt(socket.IPPROTO_TCP, option, nbytes)
    except OSError:
        return False
    return True


async def receive_after_wait(sock: socket.socket, max_bytes: int) -> bytes:
    """Wait until ``sock`` is readable, then read up to ``max_bytes`` bytes.

    Returns ``b""`` at end of file or when the connection failed (reset, closed). Always a
    checkpoint: it raises :exc:`trio.Cancelled` if cancelled while waiting, having read
    nothing."""
    while True:
        try:
            await trio.lowlevel.wait_readable(sock)
        except (trio.ClosedResourceError, OSError):
            return b""
        try:
            return sock.recv(max_bytes)
        except BlockingIOError:
            continue  # a spurious wake-up
        except OSError:
            return b""


async def receive_after_yield(sock: socket.socket, max_bytes: int) -> bytes:
    """Yield to the scheduler, then read up to ``max_bytes`` bytes from ``sock``, waiting for
    readability only if none have arrived (see the module's notes for why).

    Returns ``b""`` at end of file or when the connection failed (reset, closed). Always a
    checkpoint: it raises :exc:`trio.Cancelled` if cancelled, having read nothing."""
    await trio.lowlevel.checkpoint()
    try:
        return sock.recv(max_bytes)
    except BlockingIOError:
        pass
    except OSError:
        return b""
    return await receive_after_wait(sock, max_bytes)


#: Most buffers handed to one sendmsg() (Linux's IOV_MAX is 1024).
_MAX_PARTS = 64


def try_send(sock: socket.socket, parts: Sequence[bytes | bytearray | memoryview]) -> int:
    """Send what the kernel takes of ``parts`` now, in one system call (``sendmsg`` gathers
    them: no joining copy), without waiting; returns the bytes sent (0 when the buffer is
    full). Raises :exc:`OSError` when the connection failed."""
    try:
        if len(parts) == 1:
            return sock.send(parts[0])
        return sock.sendmsg(parts[:_MAX_PARTS])
    except BlockingIOError:
        return 0


def advance(parts: list[bytes | memoryview], sent: int) -> None:
    """Drop the first ``sent`` bytes from ``parts`` (in place)."""
    done = 0
    for i, part in enumerate(parts):
        n = len(part)
        if sent < n:
            if sent:
                parts[i] = memoryview(part)[sent:]
            break
        sent -= n
        done = i + 1
    del parts[:done]
