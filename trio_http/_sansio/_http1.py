"""The server side of HTTP/1.1 (RFC 9112) over h11, in the shared event vocabulary.

h11 parses and serialises; this layer adds the server's policy: request checks stricter than
h11's (request smuggling shapes, RFC 9112 §6.3), the keep-alive cycle, bodiless responses
(HEAD, 204, 304: the app may still send a body, which is dropped), reason phrases, and upgrade
detection. Output is buffered and handed out by :meth:`H1Connection.data_to_send`, so a response
head, its body and its end can leave in one write.
"""

from __future__ import annotations

from http import HTTPStatus

import h11
from h11._headers import Headers as _H11Headers

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
from ._fields import TOKEN_BYTES, check_field

__all__ = ["REASONS", "H1Connection"]

#: Reason phrases (RFC 9110 §15) for the status line, as bytes.
REASONS: dict[int, bytes] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


def _response_headers(headers: Headers) -> _H11Headers:
    """Validate response fields and build h11's header list directly.

    h11 would validate each field with regular expressions (about half of its cost per
    response); :func:`check_field` applies the same rules. Raises :class:`ValueError` for a
    field that could split the response (CR, LF, NUL...)."""
    full = []
    for name, value in headers:
        check_field(name, value)
        if name == b"content-length":
            if not value.isdigit():
                raise ValueError(f"invalid content-length {value!r}")
        elif name == b"transfer-encoding" and value.strip().lower() != b"chunked":
            raise ValueError("the only transfer-coding a response may set is chunked")
        value = value.strip(b" \t")
        full.append((name, name.lower(), value))
    return _H11Headers(full)


H1Event = Request | Data | EndOfMessage | ConnectionTerminated | NeedData | Paused


def _fields(headers: _H11Headers) -> Headers:
    # h11's Headers is a Sequence whose generic __iter__ calls __getitem__ per field; its
    # backing list of (raw name, lowercase name, value) is much faster to walk.
    full = getattr(headers, "_full_items", None)
    if full is None:
        return list(headers)
    return [(name, value) for _, name, value in full]


def _check_request(event: h11.Request, fields: Headers) -> tuple[bytes | None, bool]:
    """Reject the request shapes that smuggling relies on (RFC 9112 §6.1, §6.3; RFC 9110 §5.5).

    Returns (upgrade token, expect 100-continue). Raises :class:`ProtocolError`.
    """
    te = cl = host = 0
    upgrade: bytes | None = None
    connection_upgrade = False
    expect = False
    for name, value in fields:
        if name == b"transfer-encoding":
            te += 1
            if value.strip().lower() != b"chunked":
                raise ProtocolError("unsupported transfer-coding", status_code=501)
        elif name == b"content-length":
            cl += 1
        elif name == b"host":
            host += 1
        elif name == b"upgrade":
            upgrade = value.split(b",")[0].strip().lower()
        elif name == b"connection":
            connection_upgrade = connection_upgrade or b"upgrade" in value.lower()
        elif name == b"expect":
            expect = value.lower() == b"100-continue"
    if te and cl:
        raise ProtocolError("both Transfer-Encoding and Content-Length")
    if te > 1:
        raise ProtocolError("several Transfer-Encoding fields")
    if cl > 1:
        raise ProtocolError("several Content-Length fields")
    if host != 1 and event.http_version == b"1.1":
        raise ProtocolError("a request must carry exactly one Host field")
    if event.method.translate(None, TOKEN_BYTES):
        raise ProtocolError("invalid method token")
    target = event.target
    if event.method == b"CONNECT":
        # Tunnelling is not served; RFC 9110 §9.3.6 lets a server refuse it.
        raise ProtocolError("CONNECT is not supported", status_code=405)
    if not (target.startswith(b"/") or (target == b"*" and event.method == b"OPTIONS")):
        # absolute-form is allowed by RFC 9112 §3.2.2 (proxies send it).
        if not (target.startswith(b"http://") or target.startswith(b"https://")):
            raise ProtocolError("malformed request-target")
    return (upgrade if connection_upgrade else None), expect


class H1Connection:
    """One HTTP/1.1 server connection.

    Feed bytes with :meth:`receive_data` / :meth:`receive_eof`; pull events with
    :meth:`next_event`, which returns :data:`NEED_DATA` when it needs bytes and :data:`PAUSED`
    once a request is complete and the response is outstanding. Raises :class:`ProtocolError`
    (with ``status_code``) for a request that must be refused; answer it with
    :meth:`send_error` and close.

    Responses are written with :meth:`send_response`, :meth:`send_data`, :meth:`send_end`;
    the bytes wait in :meth:`data_to_send`.
    """

    __slots__ = (
        "_close_after", "_h11", "_head_request", "_max_head", "_no_body", "_out", "request",
    )

    def __init__(self, *, max_request_header_size: int = 16384) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_request_header_size)
        self._max_head = max_request_header_size
        self._out: list[bytes] = []
        self._no_body = False
        self._head_request = False
        self._close_after = False
        #: The request currently being served, if any.
        self.request: Request | None = None

    # --- input -------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer."""
        self._h11.receive_data(data)

    def receive_eof(self) -> None:
        """The peer closed its sending side."""
        if self._h11.their_state is not h11.CLOSED:
            self._h11.receive_data(b"")

    @property
    def trailing_data(self) -> bytes:
        """Bytes received beyond the current request (after an upgrade: the new protocol's)."""
        return bytes(self._h11.trailing_data[0])

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed."""
        return len(self._h11.trailing_data[0])

    def next_event(self) -> H1Event:
        """The next event, :data:`NEED_DATA` or :data:`PAUSED`. Raises :class:`ProtocolError`."""
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if "exceeds" in str(exc) and status == 400:
                status = 431  # h11 reports an over-long head as a plain 400.
            raise ProtocolError(str(exc), status_code=status) from None
        t = type(event)
        if t is h11.Data:
            return Data(1, bytes(event.data))  # type: ignore[union-attr]
        if t is h11.Request:
            return self._on_request(event)  # type: ignore[arg-type]
        if t is h11.EndOfMessage:
            return EndOfMessage(1, _fields(event.headers))  # type: ignore[union-attr]
        if event is h11.NEED_DATA:
            return NEED_DATA
        if event is h11.PAUSED:
            return PAUSED
        # h11.ConnectionClosed
        return ConnectionTerminated(reason="peer closed the connection")

    def _on_request(self, event: h11.Request) -> Request:
        if len(event.target) > 8192:
            raise ProtocolError("request-target too long", status_code=414)
        # h11 bounds only a head still incomplete; one that arrives whole in a single read
        # must be measured here (approximately: name + value + ": " and CRLF per field).
        size = len(event.method) + len(event.target) + 12
        for name, value in event.headers:
            size += len(name) + len(value) + 4
        if size > self._max_head:
            raise ProtocolError("request header fields too large", status_code=431)
        fields = _fields(event.headers)
        upgrade, expect = _check_request(event, fields)
        request = Request(
            stream_id=1,
            method=bytes(event.method),
            target=bytes(event.target),
            headers=fields,
            http_version=event.http_version.decode("ascii"),
            upgrade=upgrade,
            expect_continue=expect and event.http_version == b"1.1",
        )
        self.request = request
        self._head_request = request.method == b"HEAD"
        return request

    # --- output ------------------------------------------------------------------------
    def send_informational(self, status: int, headers: Headers) -> None:
        """Queue a 1xx response (100 Continue, 101 Switching Protocols, 103 Early Hints)."""
        self._out.append(
            self._h11.send(h11.InformationalResponse(
                status_code=status, headers=headers, reason=REASONS.get(status, b"")
            )) or b""
        )

    def send_response(self, status: int, headers: Headers) -> None:
        """Queue the response head. Raises :class:`ValueError` for an invalid status or fields
        (an application error)."""
        if self._close_after:
            headers = [*headers, (b"connection", b"close")]
        if not 200 <= status <= 999:
            raise ValueError(f"invalid response status {status}")
        try:
            data = self._h11.send(h11.Response(
                status_code=status, headers=_response_headers(headers),
                reason=REASONS.get(status, b""), _parsed=True,
            ))
        except h11.LocalProtocolError as exc:
            raise ValueError(f"invalid response: {exc}") from None
        self._no_body = self._head_request or status in (204, 304)
        if data:
            self._out.append(data)

    def send_data(self, data: bytes) -> None:
        """Queue response body bytes (dropped for HEAD, 204 and 304). Raises
        :class:`ValueError` when they overrun the declared Content-Length."""
        if self._no_body or not data:
            return
        try:
            out = self._h11.send(h11.Data(data=data))
        except h11.LocalProtocolError as exc:
            raise ValueError(f"invalid response body: {exc}") from None
        if out:
            self._out.append(out)

    def send_end(self, trailers: Headers | None = None) -> None:
        """Queue the end of the response. Raises :class:`ValueError` when the body fell short
        of the declared Content-Length."""
        try:
            out = self._h11.send(h11.EndOfMessage(headers=trailers or []))
        except h11.LocalProtocolError as exc:
            raise ValueError(f"invalid response end: {exc}") from None
        if out:
            self._out.append(out)

    def send_error(self, status: int, message: str = "") -> None:
        """Queue a complete plain-text error response that closes the connection. Does nothing
        if a response has already started (the caller then just closes)."""
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{status} {REASONS.get(status, b'').decode()}\n".encode()
        if message:
            body += message.encode("utf-8", "replace")[:200] + b"\n"
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            self._out.append(self._h11.send(h11.Response(
                status_code=status, headers=headers, reason=REASONS.get(status, b"")
            )) or b"")
            self._out.append(self._h11.send(h11.Data(data=body)) or b"")
            self._out.append(self._h11.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            pass

    def data_to_send(self) -> bytes:
        """Take the bytes queued for the peer (may be empty)."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    # --- the keep-alive cycle ----------------------------------------------------------
    def close_after_response(self) -> None:
        """Ask to close once the current (or next) response is done: adds ``connection:
        close`` to a response not yet started (graceful shutdown, RFC 9112 §9.6)."""
        self._close_after = True

    @property
    def response_started(self) -> bool:
        """True once a response head has been queued in the current cycle."""
        return self._h11.our_state in (h11.SEND_BODY, h11.DONE, h11.MUST_CLOSE, h11.CLOSED)

    @property
    def request_complete(self) -> bool:
        """True once the current request body has been read to its end."""
        return self._h11.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)

    @property
    def response_complete(self) -> bool:
        """True once the current response has been fully queued."""
        return self._h11.our_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)

    @property
    def waiting_for_100_continue(self) -> bool:
        """True while the client waits for ``100 Continue`` before sending its body."""
        return self._h11.they_are_waiting_for_100_continue

    def start_next_cycle(self) -> bool:
        """Get ready for the next request once the current exchange is complete. Returns False
        when the connection must close instead (``Connection: close``, HTTP/1.0, an unread body,
        shutdown)."""
        self.request = None
        if self._close_after:
            return False
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            return True
        return False

    def switch_protocol(self, status: int, headers: Headers) -> bytes:
        """Answer an upgrade with ``101 Switching Protocols`` (RFC 9110 §15.2.2) and return the
        bytes that arrived after the request, which belong to the new protocol."""
        self.send_informational(status, headers)
        return self.trailing_data
