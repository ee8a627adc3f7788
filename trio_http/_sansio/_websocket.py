"""The WebSocket protocol (RFC 6455) over wsproto, with permessage-deflate (RFC 7692), separate
from the transport that carries it.

Two openings lead to the same frame layer, :class:`WebSocketProtocol`:

* :class:`H1Opening`: an HTTP/1.1 ``Upgrade: websocket`` request, validated by wsproto's
  ``H11Handshake`` fed with the request already parsed by the HTTP/1.1 layer; the answer is
  ``101 Switching Protocols`` bytes.
* :class:`ConnectOpening`: an extended CONNECT stream with ``:protocol websocket`` (HTTP/2,
  RFC 8441; HTTP/3, RFC 9220). The HTTP layer answers with ``:status 200`` and the fields this
  class returns; only wsproto's frame layer is used, and DATA frames carry its bytes.

The frame layer turns wsproto's events into a small vocabulary (:class:`Message`,
:class:`PongReceived`, :class:`CloseReceived`, :class:`ProtocolFailure`,
:class:`ConnectionLost`), assembles fragmented messages up to a size limit (1009 past it),
answers PINGs, replies to a peer's CLOSE, and turns every parse failure into a CLOSE with the
code RFC 6455 §7.4.1 prescribes (1002, 1007, ...). Bytes out wait in :meth:`data_to_send`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.events import Event as _WSEvent
from wsproto.events import Request as WSRequest
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from ._events import Headers, Request
from ._http1 import REASONS

__all__ = [
    "BUSY",
    "Busy",
    "CloseReceived",
    "ConnectOpening",
    "ConnectionLost",
    "H1Opening",
    "HandshakeRejected",
    "Message",
    "PongReceived",
    "ProtocolFailure",
    "WebSocketClosed",
    "WebSocketProtocol",
    "check_close_code",
]

# RFC 6455 §7.4.1: codes an endpoint may put in a CLOSE frame (1004-1006 and 1015 are
# reserved or local-only); 3000-4999 are for libraries and applications (§7.4.2).
_SENDABLE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                             1013, 1014))

#: Compressed bytes handed to wsproto at a time when permessage-deflate is on, so that one
#: step inflates to at most about 1032 times that (deflate's best ratio) before the message
#: size check runs.
DEFLATE_FEED_SIZE = 16384


def check_close_code(code: int) -> None:
    """Raise :class:`ValueError` unless ``code`` may be sent in a CLOSE frame."""
    if type(code) is not int or not (code in _SENDABLE_CODES or 3000 <= code <= 4999):
        raise ValueError(f"invalid WebSocket close code {code!r}")


# --- events ------------------------------------------------------------------------------
@dataclass(slots=True)
class Message:
    """A complete message: ``str`` for a text message, ``bytes`` for a binary one."""

    data: str | bytes


@dataclass(slots=True)
class PongReceived:
    """A PONG frame arrived (RFC 6455 §5.5.3)."""

    payload: bytes


@dataclass(slots=True)
class CloseReceived:
    """The peer's CLOSE frame: it started the closing handshake (our reply is queued) or
    answered ours. ``code`` is 1005 when the frame carried none (RFC 6455 §7.1.5)."""

    code: int
    reason: str


@dataclass(slots=True)
class ProtocolFailure:
    """The peer broke RFC 6455 (or the size limit): a CLOSE with ``code`` is queued if we had
    not sent one, and nothing more is parsed. Close the transport once it is flushed."""

    code: int
    reason: str


class Busy:
    """Many frames were parsed without producing another event (a flood of fragments or
    PINGs): call :meth:`WebSocketProtocol.next_event` again once other work had a turn."""

    __slots__ = ()


BUSY = Busy()


@dataclass(slots=True)
class ConnectionLost:
    """The transport ended without a closing handshake (code 1006, RFC 6455 §7.1.5)."""

    code: int = 1006


WSEvent = Message | PongReceived | CloseReceived | ProtocolFailure | ConnectionLost | Busy

#: Frames parsed by one :meth:`WebSocketProtocol.next_event` call before it returns BUSY.
FRAME_BUDGET = 256


class WebSocketClosed(Exception):
    """The connection can no longer carry messages (closing or closed)."""


class HandshakeRejected(Exception):
    """The opening handshake is invalid: answer with ``status_code`` and ``headers``."""

    def __init__(self, message: str, status_code: int = 400, headers: Headers | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.headers: Headers = headers or []


# --- negotiation -------------------------------------------------------------------------
def _header_list(headers: Headers, name: bytes) -> list[str]:
    """The comma-separated elements of every ``name`` field, stripped (RFC 9110 §5.6.1)."""
    out: list[str] = []
    for n, v in headers:
        if n == name:
            out.extend(p.strip() for p in v.decode("latin-1").split(","))
    return [p for p in out if p]


def subprotocols_of(headers: Headers) -> list[str]:
    """The subprotocols a client offers in ``sec-websocket-protocol``, in its order."""
    return _header_list(headers, b"sec-websocket-protocol")


def negotiate_deflate(offers: list[str]) -> tuple[bytes | None, list[Extension]]:
    """Accept the first acceptable permessage-deflate offer (RFC 7692 §5): the response field
    value and the extension to give the frame layer, or ``(None, [])``."""
    for offer in offers:
        if offer.split(";", 1)[0].strip() != PerMessageDeflate.name:
            continue
        ext = PerMessageDeflate()  # fresh per offer: accept() mutates it
        try:
            params = ext.accept(offer)
        except ValueError:  # a malformed window-bits value: decline this offer
            continue
        if params is None or params is False:
            continue
        value = PerMessageDeflate.name if params is True or not params else (
            f"{PerMessageDeflate.name}; {params}"
        )
        return value.encode("ascii"), [ext]
    return None, []


class _Opening:
    """What both openings share: the offered subprotocols and extensions."""

    subprotocols: list[str]
    extension_offers: list[str]

    def _negotiate(
        self, subprotocol: str | None, deflate: bool
    ) -> tuple[Headers, list[Extension]]:
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        value, extensions = negotiate_deflate(self.extension_offers) if deflate else (None, [])
        fields: Headers = []
        if value is not None:
            fields.append((b"sec-websocket-extensions", value))
        return fields, extensions


class H1Opening(_Opening):
    """An HTTP/1.1 upgrade (RFC 6455 §4.2), validated by wsproto's handshake.

    Raises :class:`HandshakeRejected` (400, or 426 with ``Sec-WebSocket-Version: 13``) for a
    request that is not a valid opening handshake.
    """

    def __init__(self, request: Request) -> None:
        self._hs = H11Handshake(ConnectionType.SERVER)
        try:
            self._hs.initiate_upgrade_connection(request.headers, request.target)
            events = list(self._hs.events())
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            if isinstance(hint, RejectConnection):
                raise HandshakeRejected(str(exc), hint.status_code, list(hint.headers)) from None
            raise HandshakeRejected(str(exc)) from None
        except Exception as exc:  # undecodable Host, target or tokens
            raise HandshakeRejected(f"malformed WebSocket handshake: {exc}") from None
        if len(events) != 1 or not isinstance(events[0], WSRequest):
            raise HandshakeRejected("malformed WebSocket handshake")
        self.subprotocols = list(events[0].subprotocols)
        self.extension_offers = list(events[0].extensions)  # type: ignore[arg-type]

    def accept(
        self, subprotocol: str | None, headers: Headers, *, deflate: bool, max_message_size: int
    ) -> tuple[bytes, WebSocketProtocol]:
        """``101 Switching Protocols`` and the frame layer. Raises :class:`ValueError` for a
        subprotocol the client did not offer or invalid header fields (application errors)."""
        fields, extensions = self._negotiate(subprotocol, deflate)
        try:
            data = self._hs.send(AcceptConnection(
                subprotocol=subprotocol, extensions=[], extra_headers=fields + headers
            ))
        except Exception as exc:  # h11/wsproto LocalProtocolError: bad fields from the app
            raise ValueError(f"invalid websocket.accept: {exc}") from None
        return data, WebSocketProtocol(extensions, max_message_size=max_message_size)

    def reject(self, status: int, headers: Headers) -> bytes:
        """The head of a refusal response (its body follows with :meth:`reject_data`).
        Raises :class:`ValueError` for an invalid status or fields."""
        try:
            return self._hs.send(RejectConnection(
                status_code=status, headers=headers, has_body=True
            ))
        except Exception as exc:
            raise ValueError(f"invalid websocket.http.response.start: {exc}") from None

    def reject_data(self, data: bytes, *, finished: bool) -> bytes:
        """Refusal body bytes; ``finished`` ends the response. Raises :class:`ValueError`."""
        try:
            return self._hs.send(RejectData(data=data, body_finished=finished))
        except Exception as exc:
            raise ValueError(f"invalid websocket.http.response.body: {exc}") from None


def rejection_bytes(exc: HandshakeRejected) -> bytes:
    """A complete HTTP/1.1 response refusing a bad handshake (the connection then closes)."""
    status = exc.status_code
    head = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))]
    head += [n + b": " + v + b"\r\n" for n, v in exc.headers]
    head.append(b"content-length: 0\r\nconnection: close\r\n\r\n")
    return b"".join(head)


class ConnectOpening(_Opening):
    """An extended CONNECT stream (RFC 8441 §4-5; RFC 9220): ``:method CONNECT`` with
    ``:protocol websocket``. Raises :class:`HandshakeRejected` (501 for another ``:protocol``,
    400 for a ``sec-websocket-version`` other than 13)."""

    def __init__(self, request: Request) -> None:
        if request.method != b"CONNECT" or request.protocol != "websocket":
            raise HandshakeRejected(f"unsupported :protocol {request.protocol!r}", 501)
        versions = [v for n, v in request.headers if n == b"sec-websocket-version"]
        if versions and versions != [b"13"]:
            raise HandshakeRejected(
                "unsupported WebSocket version", 400, [(b"sec-websocket-version", b"13")]
            )
        self.subprotocols = subprotocols_of(request.headers)
        self.extension_offers = _header_list(request.headers, b"sec-websocket-extensions")

    def accept(
        self, subprotocol: str | None, *, deflate: bool, max_message_size: int
    ) -> tuple[Headers, WebSocketProtocol]:
        """The fields of the ``:status 200`` response and the frame layer. Raises
        :class:`ValueError` for a subprotocol the client did not offer."""
        fields, extensions = self._negotiate(subprotocol, deflate)
        if subprotocol is not None:
            fields.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
        return fields, WebSocketProtocol(extensions, max_message_size=max_message_size)


# --- the frame layer ---------------------------------------------------------------------
class WebSocketProtocol:
    """The server side of an open WebSocket: bytes in (:meth:`receive_data`,
    :meth:`receive_eof`), events out (:meth:`next_event`), bytes out (:meth:`data_to_send`).

    ``max_message_size`` (bytes, after decompression) bounds an incoming message; a larger one
    fails the connection with 1009. :meth:`next_event` parses lazily, one event per call, so
    the caller decides how many messages it holds; it never raises for peer input.
    """

    __slots__ = ("_binary", "_conn", "_eof", "_failed", "_feed", "_gen", "_lost_reported",
                 "_max", "_out", "_size", "_text", "_unfed", "deflate", "finished",
                 "pending_output")

    def __init__(self, extensions: list[Extension], *, max_message_size: int) -> None:
        self._conn = Connection(ConnectionType.SERVER, extensions)
        self.deflate = bool(extensions)
        self._max = max_message_size
        self._feed = DEFLATE_FEED_SIZE if extensions else 0
        self._out: list[bytes] = []
        #: Bytes queued in :meth:`data_to_send`.
        self.pending_output = 0
        #: True once nothing more will be parsed: the closing handshake is complete, the
        #: connection failed, or the transport ended. (Attributes rather than properties:
        #: both are read for every message.)
        self.finished = False
        self._gen: Iterator[_WSEvent] | None = None
        self._unfed = b""
        self._size = 0
        self._text: io.StringIO | None = None
        self._binary: bytearray | None = None
        self._failed = False
        self._eof = False
        self._lost_reported = False

    # --- state --------------------------------------------------------------------------
    @property
    def open(self) -> bool:
        """True while messages may be sent (no CLOSE sent or received, no failure)."""
        return not self._failed and self._conn.state is ConnectionState.OPEN

    @property
    def failed(self) -> bool:
        """True after a :class:`ProtocolFailure`."""
        return self._failed

    # --- input --------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes from the transport; ignored once :attr:`finished`."""
        if self.finished or not data:
            return
        if self._feed:
            # Inflating is bounded per step: hand wsproto the compressed bytes in slices.
            self._unfed += data
        else:
            self._conn.receive_data(data)

    def receive_eof(self) -> None:
        """The transport ended (TCP EOF, END_STREAM)."""
        self._eof = True
        self.finished = True

    def next_event(self) -> WSEvent | None:
        """The next event, or ``None`` when more bytes are needed (or nothing more will come:
        check :attr:`finished`), or :data:`BUSY` after :data:`FRAME_BUDGET` frames."""
        if self._failed:
            return None
        budget = FRAME_BUDGET
        while True:
            budget -= 1
            if not budget:
                return BUSY
            if self._gen is None:
                self._gen = self._conn.events()
            try:
                ev = next(self._gen)
            except StopIteration:
                self._gen = None
                if self._unfed and self._conn.state is not ConnectionState.CLOSED:
                    chunk, self._unfed = self._unfed[: self._feed], self._unfed[self._feed :]
                    self._conn.receive_data(chunk)
                    continue
                if self._eof and not self._lost_reported and (
                    self._conn.state is not ConnectionState.CLOSED
                ):
                    self._lost_reported = True
                    return ConnectionLost()
                return None
            except Exception as exc:  # a wsproto defect must not reach the application
                self._gen = None
                return self._fail(1002, f"unparsable frame ({type(exc).__name__})")
            if isinstance(ev, (TextMessage, BytesMessage)):
                out = self._on_data(ev)
                if out is not None:
                    return out
            elif isinstance(ev, Ping):
                if self._conn.state is ConnectionState.OPEN:
                    self._queue(self._conn.send(ev.response()))
            elif isinstance(ev, Pong):
                return PongReceived(bytes(ev.payload))
            elif isinstance(ev, CloseConnection):
                return self._on_close(ev)

    def _on_data(self, ev: TextMessage | BytesMessage) -> WSEvent | None:
        data = ev.data
        if isinstance(data, str):
            self._size += len(data) if data.isascii() else len(data.encode("utf-8", "replace"))
        else:
            self._size += len(data)
        if self._size > self._max:
            return self._fail(1009, f"message larger than {self._max} bytes")
        if ev.message_finished and self._text is None and self._binary is None:
            self._size = 0
            return Message(bytes(data) if isinstance(data, bytearray) else data)
        # A fragmented (or partly received) message: accumulate compactly, since a flood of
        # tiny fragments would otherwise cost an object per fragment.
        if isinstance(data, str):
            if self._text is None:
                self._text = io.StringIO()
            self._text.write(data)
        else:
            if self._binary is None:
                self._binary = bytearray()
            self._binary += data
        if not ev.message_finished:
            return None
        self._size = 0
        if self._text is not None:
            text, self._text = self._text.getvalue(), None
            return Message(text)
        assert self._binary is not None
        binary, self._binary = bytes(self._binary), None
        return Message(binary)

    def _on_close(self, ev: CloseConnection) -> WSEvent:
        state = self._conn.state
        if state is ConnectionState.REMOTE_CLOSING:
            # The peer started the closing handshake: echo its code (RFC 6455 §5.5.1).
            self._queue(self._conn.send(ev.response()))
            self.finished = True
            return CloseReceived(int(ev.code), ev.reason or "")
        if state is ConnectionState.CLOSED:
            self.finished = True
            return CloseReceived(int(ev.code), ev.reason or "")
        # wsproto reports a parse failure as a CloseConnection without a state change.
        return self._fail(int(ev.code), ev.reason or "")

    def _fail(self, code: int, reason: str) -> ProtocolFailure:
        """_Fail the WebSocket Connection_ (RFC 6455 §7.1.7)."""
        if self._conn.state is ConnectionState.OPEN:
            self._queue(self._conn.send(CloseConnection(code=code, reason=reason)))
        self._failed = True
        self.finished = True
        self._text = self._binary = None
        self._unfed = b""
        return ProtocolFailure(code, reason)

    # --- output -------------------------------------------------------------------------
    def _queue(self, data: bytes) -> None:
        if data:
            self._out.append(data)
            self.pending_output += len(data)

    def send_message(self, data: str | bytes) -> None:
        """Queue a text (``str``) or binary message. Raises :class:`WebSocketClosed` once the
        connection is closing, :class:`UnicodeEncodeError` for unencodable text."""
        if not self.open:
            raise WebSocketClosed("the WebSocket is closing or closed")
        event = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
        self._queue(self._conn.send(event))

    def send_ping(self, payload: bytes = b"") -> None:
        """Queue a PING (payload at most 125 bytes). Raises :class:`WebSocketClosed`."""
        if not self.open:
            raise WebSocketClosed("the WebSocket is closing or closed")
        self._queue(self._conn.send(Ping(payload=payload)))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake with ``code`` and ``reason`` (truncated to fit a
        control frame). Does nothing once closing. Raises :class:`ValueError` for a code that
        may not be sent (see :func:`check_close_code`)."""
        check_close_code(code)
        if self.open:
            self._queue(self._conn.send(CloseConnection(code=code, reason=reason or None)))

    def data_to_send(self) -> bytes:
        """Take the bytes queued for the peer (may be empty)."""
        out = self._out
        if not out:
            return b""
        self._out = []
        self.pending_output = 0
        return out[0] if len(out) == 1 else b"".join(out)
