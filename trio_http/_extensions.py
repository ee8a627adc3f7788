"""The ASGI response extensions, served alike on HTTP/1.1, HTTP/2 and HTTP/3: what the bridges'
``send()`` methods share (message validation, reading files, server push bookkeeping).

Source: ASGI extensions (https://asgi.readthedocs.io/en/latest/extensions.html):

* ``http.response.early_hint`` (``links``: link field values) -> ``103 Early Hints``
  (RFC 8297) with one ``link`` field each; Gunicorn's ``http.response.informational``
  (``status`` 1xx other than 101, ``headers``) -> that informational response. Either is sent
  only while the final response head has not gone out, and never to an HTTP/1.0 client (it
  would read a 1xx as the response).
* ``http.response.trailers``: ``http.response.start`` says ``trailers: True``; after the final
  body message come ``http.response.trailers`` messages (``headers``, ``more_trailers``). On
  HTTP/1.1 they end a chunked body, and only when the request said ``TE: trailers`` (RFC 9110
  §10.1.4; otherwise the response ends without them); on HTTP/2 and HTTP/3 they are a trailing
  HEADERS frame.
* ``http.response.pathsend`` (``path``) and ``http.response.zerocopysend`` (``file``, optional
  ``offset``, ``count``, ``more_body``): a file's bytes as the body, with ``content-length``
  from the file's size when the app set none. Over plain TCP HTTP/1.1 they go out with
  :func:`os.sendfile`; elsewhere (TLS, HTTP/2, HTTP/3) they are read in a worker thread,
  :data:`FILE_CHUNK` bytes at a time, and sent under the stream's flow control.
* ``http.response.push`` (``path``, ``headers``): an HTTP/2 server push (RFC 9113 §8.4) when
  the client allows it; ignored otherwise, and on HTTP/1.1 and HTTP/3.

Errors in a message (wrong types, a field with CR/LF, a status out of range) raise
:class:`TypeError` / :class:`ValueError` into the app, as for the core messages.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import trio

from ._errors import ClientDisconnected
from ._sansio._events import Request
from ._sansio._fields import NOT_IN_RESPONSES, check_field
from ._sansio._scope import ConnectionInfo
from ._types import Headers, Message

if TYPE_CHECKING:
    from ._h1_cycle import Cycle as _Cycle
    from ._h2_server import H2Server
    from ._h2_server import _Stream as H2Stream

__all__ = [
    "EARLY_HINT",
    "FILE_CHUNK",
    "FILE_MESSAGES",
    "H1_EXTENSIONS",
    "H2_EXTENSIONS",
    "H3_EXTENSIONS",
    "INFORMATIONAL",
    "PATHSEND",
    "PUSH",
    "PUSH_QUEUE",
    "TRAILERS",
    "ZEROCOPYSEND",
    "FileSource",
    "gather_trailers",
    "h1_accepts_trailers",
    "h1_sendfile",
    "h2_push",
    "informational_head",
    "send_file",
    "serve_pushes",
    "trailer_fields",
    "with_extensions",
]

EARLY_HINT = "http.response.early_hint"
INFORMATIONAL = "http.response.informational"
TRAILERS = "http.response.trailers"
PATHSEND = "http.response.pathsend"
ZEROCOPYSEND = "http.response.zerocopysend"
PUSH = "http.response.push"
FILE_MESSAGES = (PATHSEND, ZEROCOPYSEND)

_COMMON = (EARLY_HINT, INFORMATIONAL, TRAILERS, PATHSEND, ZEROCOPYSEND)
#: The extensions each protocol advertises in ``scope["extensions"]``.
H1_EXTENSIONS = _COMMON
H2_EXTENSIONS = (*_COMMON, PUSH)
H3_EXTENSIONS = _COMMON

#: Bytes of a file read per worker-thread call (and held per response) when it cannot be
#: sent with os.sendfile.
FILE_CHUNK = 65536
#: Bytes per os.sendfile call: the event loop waits for the disk reads of one call.
SENDFILE_CHUNK = 1 << 20
#: Pushed requests waiting for their task to start, per HTTP/2 connection (a push past it is
#: not made).
PUSH_QUEUE = 16

_HAVE_SENDFILE = hasattr(os, "sendfile")
# What a pushed path keeps unescaped: RFC 3986 pchar plus "/" and "?".
_PATH_SAFE = "/?:@!$&'()*+,;=-._~"


def with_extensions(info: ConnectionInfo, names: tuple[str, ...]) -> ConnectionInfo:
    """A copy of ``info`` whose ``extensions`` also advertise ``names``."""
    extensions = dict(info.extensions)
    for name in names:
        extensions.setdefault(name, {})
    return ConnectionInfo(
        client=info.client, server=info.server, tls=info.tls, root_path=info.root_path,
        state=info.state, extensions=extensions,
    )


def _fields(items: Any, what: str) -> Headers:
    headers: Headers = []
    for item in items:
        name, value = item
        if not isinstance(name, (bytes, bytearray)) or not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"{what}: header names and values must be byte strings")
        name = bytes(name).lower()
        value = bytes(value)
        if name[:1] == b":":
            raise ValueError(f"{what}: pseudo-header {name!r} is not allowed")
        check_field(name, value)
        if name not in NOT_IN_RESPONSES:
            headers.append((name, value))
    return headers


def informational_head(message: Message) -> tuple[int, Headers] | None:
    """Validate an ``http.response.early_hint`` or ``http.response.informational`` message and
    return its ``(status, fields)``, or ``None`` when there is nothing to send (no links).
    Raises :class:`TypeError` / :class:`ValueError` (101 belongs to upgrades only)."""
    if message["type"] == EARLY_HINT:
        links = message.get("links", ())
        if isinstance(links, (bytes, str)):
            raise TypeError("http.response.early_hint: links must be an iterable of bytes")
        headers: Headers = []
        for link in links:
            if not isinstance(link, (bytes, bytearray)):
                raise TypeError("http.response.early_hint: each link must be bytes")
            check_field(b"link", bytes(link))
            headers.append((b"link", bytes(link)))
        return (103, headers) if headers else None
    status = message.get("status")
    if type(status) is not int or not 100 <= status <= 199 or status == 101:
        raise ValueError(f"http.response.informational: invalid status {status!r}")
    return status, _fields(message.get("headers", ()), INFORMATIONAL)


def trailer_fields(message: Message) -> tuple[Headers, bool]:
    """Validate an ``http.response.trailers`` message: ``(fields, more_trailers)``."""
    return _fields(message.get("headers", ()), TRAILERS), bool(message.get("more_trailers"))


class _Trailers(Protocol):
    """A bridge's trailer state: the fields gathered (``None``: none are promised or they
    will be dropped) and whether the body is complete."""

    trailers: Headers | None
    trailers_due: bool


def gather_trailers(bridge: _Trailers, message: Message) -> Headers | None:
    """Take an ``http.response.trailers`` message: returns every trailer field gathered once the
    last one (``more_trailers`` false) comes, for the bridge to send; ``None`` meanwhile, and
    for trailers that were not promised or are dropped (ignored). Raises
    :class:`RuntimeError` before the final body message."""
    fields, more = trailer_fields(message)
    if bridge.trailers is None:
        return None
    if not bridge.trailers_due:
        raise RuntimeError("ASGI: http.response.trailers before the final body")
    bridge.trailers += fields
    if more:
        return None
    gathered, bridge.trailers, bridge.trailers_due = bridge.trailers, None, False
    return gathered


def _te_trailers(request: Request) -> bool:
    for name, value in request.headers:
        if name == b"te":
            for item in value.split(b","):
                if item.split(b";")[0].strip().lower() == b"trailers":
                    return True
    return False


def h1_accepts_trailers(request: Request, start: Message) -> bool:
    """Whether an HTTP/1.1 response started with ``start`` (``trailers: True``) can carry
    trailers: the client said ``TE: trailers`` and the body will be chunked (HTTP/1.1, no
    ``content-length`` from the app, a response with a body)."""
    if request.http_version != "1.1" or request.method == b"HEAD" or not _te_trailers(request):
        return False
    if start.get("status") in (204, 304):
        return False
    return not any(bytes(n).lower() == b"content-length" for n, _ in start.get("headers", ()))


# --- files -------------------------------------------------------------------------------
class FileSource:
    """The part of an open file a response sends: from ``position``, ``remaining`` bytes when
    the length is known (``length`` is not ``None``), else up to ``limit`` bytes or the end of
    the file. Open with :meth:`open` (in a worker thread for a path); :meth:`aclose` closes a
    file it opened, or moves a caller's file past what was sent when no offset was given."""

    __slots__ = ("_advance", "_owned", "fd", "length", "limit", "position", "regular",
                 "remaining", "sent")

    def __init__(self, fd: int, *, owned: bool, regular: bool, position: int,
                 length: int | None, limit: int | None, advance: bool) -> None:
        self.fd = fd
        self._owned = owned
        self.regular = regular
        self.position = position
        self.length = length
        self.remaining = length
        self.limit = limit
        self._advance = advance
        self.sent = 0

    @classmethod
    async def open(cls, message: Message) -> FileSource:
        """From an ``http.response.pathsend`` or ``http.response.zerocopysend`` message. Raises
        :class:`TypeError`, :class:`ValueError`, or :class:`OSError` (no such file...)."""
        if message["type"] == PATHSEND:
            path = message.get("path")
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError("http.response.pathsend: path must be a string")
            fd, size = await trio.to_thread.run_sync(_open_regular, os.fspath(path))
            return cls(fd, owned=True, regular=True, position=0, length=size, limit=None,
                       advance=False)
        file = message.get("file")
        fd = file if isinstance(file, int) else getattr(file, "fileno", lambda: -1)()
        if not isinstance(fd, int) or fd < 0:
            raise TypeError("http.response.zerocopysend: file must have a file descriptor")
        offset, count = message.get("offset"), message.get("count")
        for key, value in (("offset", offset), ("count", count)):
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"http.response.zerocopysend: invalid {key} {value!r}")
        info = os.fstat(fd)
        regular = stat.S_ISREG(info.st_mode)
        if not regular:
            # A pipe or a device: read from where it is, to its end or count bytes.
            return cls(fd, owned=False, regular=False, position=0, length=None, limit=count,
                       advance=False)
        start = os.lseek(fd, 0, os.SEEK_CUR) if offset is None else offset
        available = max(0, info.st_size - start)
        length = available if count is None else min(count, available)
        return cls(fd, owned=False, regular=True, position=start, length=length, limit=None,
                   advance=offset is None)

    @property
    def exhausted(self) -> bool:
        return self.remaining == 0 or self.limit == 0

    def consumed(self, n: int) -> None:
        self.position += n
        self.sent += n
        if self.remaining is not None:
            self.remaining -= n
        if self.limit is not None:
            self.limit -= n

    async def read(self, size: int = FILE_CHUNK) -> bytes:
        """The next bytes (at most ``size``); ``b""`` at the end. Raises :class:`OSError` when a
        file of known length ends early (it shrank while being sent)."""
        if self.remaining is not None:
            size = min(size, self.remaining)
        if self.limit is not None:
            size = min(size, self.limit)
        if size <= 0:
            return b""
        if self.regular:
            data = await trio.to_thread.run_sync(os.pread, self.fd, size, self.position)
            if not data:
                raise OSError(errno.EIO, "the file is shorter than when the response began")
        else:
            # A pipe may block for long: a cancelled wait leaves the thread to finish alone.
            data = await trio.to_thread.run_sync(os.read, self.fd, size, abandon_on_cancel=True)
        self.consumed(len(data))
        return data

    async def aclose(self) -> None:
        if self._owned:
            os.close(self.fd)
        elif self._advance and self.sent:
            try:
                os.lseek(self.fd, self.position, os.SEEK_SET)
            except OSError:
                pass


def _open_regular(path: str) -> tuple[int, int]:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EISDIR if stat.S_ISDIR(info.st_mode) else errno.EINVAL,
                          "http.response.pathsend: not a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


class _Bridge(Protocol):
    """What :func:`send_file` needs of a protocol's ``send()`` side."""

    start_message: Message | None
    request: Request
    status: int

    async def send(self, message: Message) -> None: ...


def _with_content_length(start: Message, length: int) -> Message:
    if start.get("trailers") or start.get("status") in (204, 304):
        return start
    headers = list(start.get("headers", ()))
    for name, _ in headers:
        if bytes(name).lower() in (b"content-length", b"transfer-encoding"):
            return start
    headers.append((b"content-length", b"%d" % length))
    return {**start, "headers": headers}


async def send_file(
    bridge: _Bridge, message: Message, *, head_sent: bool, cycle: _Cycle | None = None
) -> None:
    """Serve a ``pathsend`` / ``zerocopysend`` message through ``bridge.send`` as body
    messages of at most :data:`FILE_CHUNK` bytes (so each protocol's flow control and
    backpressure apply), or with :func:`h1_sendfile` for the HTTP/1.1 ``cycle`` given.
    The response head gets a ``content-length`` when it has not gone out (``head_sent``)
    and this message ends the body."""
    t = message["type"]
    if bridge.start_message is None:
        raise RuntimeError(f"ASGI: {t} before http.response.start")
    more = t == ZEROCOPYSEND and bool(message.get("more_body", False))
    src = await FileSource.open(message)
    try:
        if not head_sent and not more and src.length is not None:
            bridge.start_message = _with_content_length(bridge.start_message, src.length)
        if bridge.request.method == b"HEAD" or bridge.status in (204, 304):
            await bridge.send({"type": "http.response.body", "body": b"", "more_body": more})
            return
        if cycle is not None and await h1_sendfile(cycle, src, more):
            return
        while True:
            chunk = await src.read()
            done = not chunk or src.exhausted
            await bridge.send({"type": "http.response.body", "body": chunk,
                               "more_body": more or not done})
            if done:
                return
    finally:
        await src.aclose()


async def h1_sendfile(cycle: _Cycle, src: FileSource, more: bool) -> bool:
    """Send ``src`` on an HTTP/1.1 connection over plain TCP with :func:`os.sendfile`: the
    bytes go from the page cache to the socket without entering Python. Returns False (nothing
    sent) when the transport does not allow it (TLS, a wrapped stream, not a regular file)."""
    server = cycle.server
    stream = server.stream
    if not (_HAVE_SENDFILE and src.regular and src.length
            and isinstance(stream, trio.SocketStream)):
        return False
    conn = server.conn
    if server.broken:
        raise ClientDisconnected("the client has disconnected")
    if not conn.response_started:
        cycle._start(None)  # a content-length, if any, is in the start message already
    framing = conn.frame_external(src.length)
    if framing is not None:
        prefix, suffix = framing
        head = conn.data_to_send() + prefix  # one write for the head and the chunk header
        if head:
            await server._write(head)
        await _sendfile(cycle, stream, src)
        if suffix:
            await server._write(suffix)
    await cycle.send({"type": "http.response.body", "body": b"", "more_body": more})
    return True


async def _sendfile(cycle: _Cycle, stream: trio.SocketStream, src: FileSource) -> None:
    server = cycle.server
    if server.broken:
        raise ClientDisconnected("the client has disconnected")
    sock = stream.socket
    out_fd = sock.fileno()
    timeout = server.ctx.config.write_timeout
    # The write lock keeps other writes (a 100 Continue from receive()) out of the body.
    async with server._write_lock:
        while src.remaining:
            try:
                n = os.sendfile(out_fd, src.fd, src.position, min(src.remaining, SENDFILE_CHUNK))
            except BlockingIOError:
                # The socket buffer is full: a peer that reads nothing for write_timeout
                # seconds is dropped, as for any other write.
                deadline = trio.current_time() + timeout if timeout is not None else float("inf")
                with trio.move_on_at(deadline) as scope:
                    await trio.lowlevel.wait_writable(sock)
                if scope.cancelled_caught:
                    server.broken = True
                    raise ClientDisconnected("the client stopped reading") from None
                continue
            except ConnectionError as exc:
                server.broken = True
                raise ClientDisconnected("the client has disconnected") from exc
            except OSError:
                server.broken = True  # the framing promised bytes that will not come
                raise
            if n == 0:
                server.broken = True
                raise OSError(errno.EIO, "the file is shorter than when the response began")
            src.consumed(n)
            cycle.sent += n
            await trio.lowlevel.checkpoint()


# --- HTTP/2 server push -------------------------------------------------------------------
def h2_push(stream: H2Stream, message: Message) -> None:
    """Promise the request ``message`` describes (PUSH_PROMISE on ``stream``) and queue it for
    :func:`serve_pushes`; nothing happens when the client refuses pushes, has no room for
    another stream, the connection is closing, or the push queue is full."""
    path = message.get("path")
    if not isinstance(path, str):
        raise TypeError("http.response.push: path must be a string")
    headers = _fields(message.get("headers", ()), PUSH)
    server = stream.server
    if (stream.disconnected or stream.response_done or server._closing
            or server.pushes.statistics().current_buffer_used >= PUSH_QUEUE):
        return
    request = stream.request
    authority = request.authority or next(
        (v for n, v in request.headers if n == b"host"), b""
    )
    scheme = request.scheme or ("https" if server.info.tls else "http")
    target = quote(path, safe=_PATH_SAFE).encode("ascii")
    pushed = server.conn.push(request.stream_id, target, headers,
                              authority=authority, scheme=scheme)
    if pushed is not None:
        server.kick()
        server.pushes.send_nowait(pushed)


async def serve_pushes(
    server: H2Server, pushed: trio.MemoryReceiveChannel[Request], nursery: trio.Nursery
) -> None:
    """Run the app for each pushed request, as a stream of ``server``'s connection, until the
    connection closes the channel."""
    async for request in pushed:
        if server.conn.terminated or server.broken:
            server.conn.refuse_stream(request.stream_id)
            continue
        server._open_stream(request, nursery)
