"""One event vocabulary for HTTP/1.1 and HTTP/2 (and HTTP/3), so the ASGI bridge is written once.

Field names follow RFC 9110 (method, target, fields) and RFC 9113 (stream, window, GOAWAY).
``stream_id`` is the HTTP/2 or HTTP/3 stream identifier; HTTP/1.1 uses 1 for every request.
Header names are lowercase bytes, values bytes, in the order received.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Request:
    """A request head (RFC 9110 §9, §6.3). ``target`` is the raw request-target: for origin-form
    requests the path and query as sent. ``authority`` is ``:authority`` (HTTP/2) or ``None``.
    ``protocol`` is the extended CONNECT ``:protocol`` (RFC 8441) or ``None``. ``upgrade`` is the
    lowercased token of an HTTP/1.1 ``Upgrade`` request (``b"websocket"``, ``b"h2c"``) or ``None``.
    """

    stream_id: int
    method: bytes
    target: bytes
    headers: Headers
    http_version: str
    scheme: str | None = None
    authority: bytes | None = None
    protocol: str | None = None
    upgrade: bytes | None = None
    expect_continue: bool = False
    end_stream: bool = False


@dataclass(slots=True)
class Data:
    """Request body bytes. ``flow_controlled_length`` (bytes, HTTP/2 only) is what the frame cost
    the peer's window, padding included; return it with ``acknowledge_data`` once consumed."""

    stream_id: int
    data: bytes
    flow_controlled_length: int = 0
    end_stream: bool = False


@dataclass(slots=True)
class EndOfMessage:
    """The request body is complete. ``trailers`` holds trailer fields, if any (RFC 9110 §6.5)."""

    stream_id: int
    trailers: Headers = field(default_factory=list)


@dataclass(slots=True)
class StreamReset:
    """The peer reset the stream (RST_STREAM, RFC 9113 §6.4) with ``error_code``."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class WindowUpdated:
    """Send window grew: on ``stream_id``, or on every stream when ``stream_id`` is 0."""

    stream_id: int


@dataclass(slots=True)
class ConnectionTerminated:
    """The connection is over: GOAWAY from the peer (``by_peer``), a protocol error on our side
    (GOAWAY queued in ``data_to_send``), or a clean end of input. ``last_stream_id`` is the
    highest stream the sender of the GOAWAY will process."""

    error_code: int = 0
    last_stream_id: int | None = None
    by_peer: bool = True
    reason: str = ""


@dataclass(slots=True)
class ConnectionIdIssued:
    """HTTP/3: the connection now also answers to ``cid`` (RFC 9000 §5.1): route its
    datagrams here."""

    cid: bytes


@dataclass(slots=True)
class ConnectionIdRetired:
    """HTTP/3: ``cid`` no longer names this connection."""

    cid: bytes


class StreamClosed(Exception):
    """Raised by an HTTP/2 or HTTP/3 connection's output methods: the stream can no longer
    carry data (reset, stopped, or closed on our side); ``error_code`` is the peer's reset
    code when known."""

    def __init__(self, stream_id: int, error_code: int | None = None) -> None:
        super().__init__(f"stream {stream_id} is closed")
        self.stream_id = stream_id
        self.error_code = error_code


class NeedData:
    """More bytes are needed before another event can be produced (HTTP/1.1)."""

    __slots__ = ()


class Paused:
    """The request is complete and the next one waits until the response is done (HTTP/1.1
    pipelining, RFC 9112 §9.3.2), or an upgrade is pending."""

    __slots__ = ()


NEED_DATA = NeedData()
PAUSED = Paused()

Event = Request | Data | EndOfMessage | StreamReset | WindowUpdated | ConnectionTerminated
H3Event = Event | ConnectionIdIssued | ConnectionIdRetired
