"""The server side of HTTP/1.1 (RFC 9112) over httptools (llhttp), with the interface of
:class:`~trio_http._sansio._http1.H1Connection`.

llhttp parses in C and calls back once per field; this module turns the callbacks into the shared
events, applies the same request checks as the h11 path (:func:`._http1._check_request`, called
with the parsed fields) and serialises responses itself (:mod:`._http1_response`), following
h11's framing rules so both parsers put the same bytes on the wire.

llhttp parses everything it is fed, pipelined requests included, so parsed events wait in a queue
until the current exchange is over (:data:`PAUSED` meanwhile). The queue is bounded by the I/O
layer, which stops reading while :attr:`HttptoolsH1Connection.buffered` (bytes: queued events plus
an unfinished head) exceeds ``max_request_header_size``; one read adds at most ``read_size``.
"""

from __future__ import annotations

from collections import deque

import h11
import httptools

from .._errors import ProtocolError
from ._events import (
    NEED_DATA,
    PAUSED,
    ConnectionTerminated,
    Data,
    EndOfMessage,
    Headers,
    NeedData,
    Paused,
    Request,
)
from ._http1 import RequestLimits, _check_request
from ._http1_response import _BODY, _DONE, _IDLE, _NONE, ResponseWriter

__all__ = ["HttptoolsH1Connection"]

H1Event = Request | Data | EndOfMessage | ConnectionTerminated | NeedData | Paused

_CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: upgrade\r\nTransfer-Encoding: chunked\r\n\r\n"



class _Stop(Exception):
    """Raised from a parser callback to stop llhttp once an error is queued."""


class _Head:
    """A parsed request head waiting in the queue, with what the response needs to know."""

    __slots__ = ("expect", "keep_alive", "request", "size")

    def __init__(self, request: Request, keep_alive: bool, expect: bool, size: int) -> None:
        self.request = request
        self.keep_alive = keep_alive
        self.expect = expect
        self.size = size


_Queued = _Head | Data | EndOfMessage | ConnectionTerminated | ProtocolError


def _status_for(exc: httptools.HttpParserError) -> int:
    # llhttp refuses a request whose last transfer-coding is not chunked before our checks
    # see it; the h11 path answers that with 501, so do the same.
    if "invalid `Transfer-Encoding`" in str(exc) and "Request has" in str(exc):
        return 501
    return 400


class HttptoolsH1Connection(ResponseWriter):
    """One HTTP/1.1 server connection parsed by httptools; see
    :class:`~trio_http._sansio._http1.H1Connection` for the interface (identical)."""

    __slots__ = (
        "_dead",
        "_eof",
        "_events",
        "_feed_body",
        "_fields",
        "_head_new",
        "_head_partial",
        "_in_head",
        "_limits",
        "_max_head",
        "_msg_open",
        "_parser",
        "_queued_bytes",
        "_their_done",
        "_trailers",
        "_trailing",
        "_upgrade_body",
        "_upgrade_h11",
        "_upgraded",
        "_url",
        "request",
    )

    def __init__(
        self, *, max_request_header_size: int = 16384, limits: RequestLimits | None = None
    ) -> None:
        if limits is None:
            limits = RequestLimits(max_request_header_size=max_request_header_size)
        self._limits = limits
        self._max_head = limits.max_request_header_size
        self._parser = httptools.HttpRequestParser(self)
        self._events: deque[_Queued] = deque()
        self._queued_bytes = 0  # bytes of the events in _events (heads approximately)
        self._trailing = bytearray()  # bytes after an upgrade request, not parsed
        self._upgraded = False  # llhttp stopped at an upgrade request
        self._upgrade_body = 0  # body bytes of that request still to come
        self._upgrade_h11: h11.Connection | None = None  # reads its chunked body, if any
        self._dead = False  # an error or EOF is queued: nothing more is parsed
        self._eof = False
        # Parser callback state, for the message being parsed.
        self._url = b""
        self._fields: Headers = []
        self._trailers: Headers | None = None
        self._in_head = False
        self._msg_open = False
        self._head_new = False  # the head began in the current feed
        self._head_partial = 0  # bytes of an unfinished head (upper bound)
        self._feed_body = 0  # body bytes seen in the current feed
        # The exchange being served.
        self.request: Request | None = None
        self._their_done = False
        self._keep_alive = True
        self._head_request = False
        self._http10 = False
        self._waiting_100 = False
        super().__init__()
        self._out_state = _IDLE
        self._framing = _NONE
        self._remaining = 0

    # --- llhttp callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._fields = []
        self._trailers = None
        self._in_head = True
        self._msg_open = True
        self._head_new = True
        self._head_partial = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        field = (name.lower(), value.strip(b" \t"))
        if self._in_head:
            self._fields.append(field)
        elif self._trailers is None:
            self._trailers = [field]
        else:
            self._trailers.append(field)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_partial = 0
        parser = self._parser
        method = parser.get_method()
        target = self._url
        version = parser.get_http_version()
        fields = self._fields
        try:
            upgrade, expect, size, close = _check_request(
                method, target, version.encode("ascii"), fields, self._limits
            )
        except ProtocolError as exc:
            self._fail(exc)
            raise _Stop from None
        request = Request(
            stream_id=1, method=method, target=target, headers=fields, http_version=version,
            upgrade=upgrade, expect_continue=expect and version == "1.1",
        )
        keep_alive = version == "1.1" and not close
        self._events.append(_Head(request, keep_alive, request.expect_continue, size))
        self._queued_bytes += size

    def on_body(self, body: bytes) -> None:
        self._events.append(Data(1, body))
        n = len(body)
        self._queued_bytes += n
        self._feed_body += n

    def on_message_complete(self) -> None:
        self._msg_open = False
        self._events.append(EndOfMessage(1, self._trailers or []))

    # --- input -------------------------------------------------------------------------
    def _fail(self, exc: ProtocolError) -> None:
        self._events.append(exc)
        self._dead = True

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer."""
        if self._dead or not data:
            return
        if self._upgraded:
            if self._upgrade_h11 is not None:
                self._feed_upgrade_h11(data)
                return
            if self._upgrade_body:
                data = self._take_upgrade_body(data)
            self._trailing += data
            return
        self._head_new = False
        self._feed_body = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._on_upgrade(data[exc.args[0]:])
            return
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Stop):
                raise
            return
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(str(exc), status_code=_status_for(exc)))
            return
        if self._in_head:
            # h11 bounds an incomplete head with max_incomplete_event_size; llhttp holds the
            # unfinished field itself, so bound what this head can have taken of the input.
            if self._head_new:
                end = data.rfind(b"\r\n\r\n")
                self._head_partial = len(data) - max(end + 4 if end >= 0 else 0, self._feed_body)
            else:
                self._head_partial += len(data)
            if not self._fields and (
                len(self._url) + 10 > self._limits.max_request_line_size
                or (not self._url and self._head_partial > self._limits.max_request_line_size)
            ):
                # Still in the request line (llhttp hands the target over as it comes).
                self._fail(ProtocolError("request line too long", status_code=414))
            elif self._head_partial > self._max_head:
                self._fail(ProtocolError("request header fields too large", status_code=431))

    def _on_upgrade(self, rest: bytes) -> None:
        # llhttp stops after the head of a request with Connection: upgrade (and CONNECT,
        # refused by _check_request) and reports it complete whatever its body: read the
        # body here, as h11 does, and keep what follows for the new protocol.
        self._upgraded = True
        events = self._events
        head = next((e for e in reversed(events) if type(e) is _Head), None)
        if head is None:  # pragma: no cover - llhttp reports upgrades after a head
            self._fail(ProtocolError("upgrade without a request"))
            return
        fields = head.request.headers
        if any(n == b"transfer-encoding" for n, _ in fields):
            # Rare: let h11 read the chunked body (and find where it ends), fed with a stand-in
            # head; _check_request has already vetted the real one.
            self._events.pop()  # the EndOfMessage llhttp reported early
            self._upgrade_h11 = h11.Connection(h11.SERVER,
                                               max_incomplete_event_size=self._max_head)
            self._upgrade_h11.receive_data(_CHUNKED_HEAD)
            self._upgrade_h11.next_event()
            self._feed_upgrade_h11(rest)
            return
        length = 0
        for n, v in fields:
            if n == b"content-length":
                length = int(v)
        if length:
            end = events.pop()  # the EndOfMessage llhttp reported early
            assert type(end) is EndOfMessage
            self._upgrade_body = length
            rest = self._take_upgrade_body(rest)
        self._trailing += rest

    def _feed_upgrade_h11(self, data: bytes) -> None:
        conn = self._upgrade_h11
        assert conn is not None
        conn.receive_data(data)
        try:
            while True:
                event = conn.next_event()
                if type(event) is h11.Data:
                    self._events.append(Data(1, bytes(event.data)))
                    self._queued_bytes += len(event.data)
                elif type(event) is h11.EndOfMessage:
                    self._events.append(EndOfMessage(1, [(n, v) for n, v in event.headers]))
                    self._trailing += conn.trailing_data[0]
                    self._upgrade_h11 = None
                    return
                else:
                    return
        except h11.RemoteProtocolError as exc:
            self._upgrade_h11 = None
            self._fail(ProtocolError(str(exc), status_code=exc.error_status_hint))

    def _take_upgrade_body(self, data: bytes) -> bytes:
        n = min(self._upgrade_body, len(data))
        if n:
            self._events.append(Data(1, data[:n]))
            self._queued_bytes += n
            self._upgrade_body -= n
        if not self._upgrade_body:
            self._events.append(EndOfMessage(1, []))
        return data[n:]

    def receive_eof(self) -> None:
        """The peer closed its sending side."""
        if self._eof:
            return
        self._eof = True
        if self._dead:
            return
        if (self._upgrade_body or self._upgrade_h11 is not None
                or (self._msg_open and not self._upgraded)):
            self._fail(ProtocolError("peer unexpectedly closed connection"))
        else:
            self._events.append(ConnectionTerminated(reason="peer closed the connection"))
            self._dead = True

    @property
    def trailing_data(self) -> bytes:
        """Bytes received beyond the current request (after an upgrade: the new protocol's)."""
        return bytes(self._trailing)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out as events (heads counted approximately)."""
        return self._queued_bytes + len(self._trailing) + self._head_partial

    def next_event(self) -> H1Event:
        """The next event, :data:`NEED_DATA` or :data:`PAUSED`. Raises :class:`ProtocolError`."""
        events = self._events
        if self._their_done:
            if events and type(events[0]) is ConnectionTerminated:
                return events[0]
            return PAUSED if events or self._trailing else NEED_DATA
        if not events:
            return NEED_DATA
        ev = events[0]
        t = type(ev)
        if t is Data:
            events.popleft()
            self._queued_bytes -= len(ev.data)  # type: ignore[union-attr]
            self._waiting_100 = False
            return ev  # type: ignore[return-value]
        if t is _Head:
            events.popleft()
            self._queued_bytes -= ev.size  # type: ignore[union-attr]
            request: Request = ev.request  # type: ignore[union-attr]
            self.request = request
            self._keep_alive = ev.keep_alive  # type: ignore[union-attr]
            self._waiting_100 = ev.expect  # type: ignore[union-attr]
            self._head_request = request.method == b"HEAD"
            self._http10 = request.http_version == "1.0"
            return request
        if t is EndOfMessage:
            events.popleft()
            self._their_done = True
            self._waiting_100 = False
            return ev  # type: ignore[return-value]
        if t is ConnectionTerminated:
            return ev  # type: ignore[return-value]
        raise ev  # type: ignore[misc]  # a queued ProtocolError, raised again if asked again

    # --- the keep-alive cycle ----------------------------------------------------------

    @property
    def response_started(self) -> bool:
        """True once a response head has been queued in the current cycle."""
        return self._out_state == _BODY or self._out_state == _DONE

    @property
    def request_complete(self) -> bool:
        """True once the current request body has been read to its end."""
        return self._their_done

    @property
    def response_complete(self) -> bool:
        """True once the current response has been fully queued."""
        return self._out_state == _DONE

    @property
    def waiting_for_100_continue(self) -> bool:
        """True while the client waits for ``100 Continue`` before sending its body."""
        return self._waiting_100

    def start_next_cycle(self) -> bool:
        """Get ready for the next request once the current exchange is complete. Returns False
        when the connection must close instead (``Connection: close``, HTTP/1.0, an unread body,
        shutdown)."""
        self.request = None
        if self._close_after or not (
            self._out_state == _DONE and self._their_done and self._keep_alive
        ):
            return False
        self._out_state = _IDLE
        self._their_done = False
        self._head_request = False
        if self._upgraded:
            # The upgrade was declined: what followed is the next request, for a new parser.
            self._upgraded = False
            self._parser = httptools.HttpRequestParser(self)
            rest = bytes(self._trailing)
            self._trailing.clear()
            self.receive_data(rest)
        return True

    def switch_protocol(self, status: int, headers: Headers) -> bytes:
        """Answer an upgrade with ``101 Switching Protocols`` (RFC 9110 §15.2.2) and return the
        bytes that arrived after the request, which belong to the new protocol."""
        self.send_informational(status, headers)
        return self.trailing_data
