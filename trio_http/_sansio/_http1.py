"""The server side of HTTP/1.1 (RFC 9112) over h11, in the shared event vocabulary.

h11 parses and serialises; this layer adds the server's policy: request checks stricter than
h11's (request smuggling shapes, RFC 9112 §6.3), the keep-alive cycle, bodiless responses
(HEAD, 204, 304: the app may still send a body, which is dropped), reason phrases, and upgrade
detection. Output is buffered and handed out by :meth:`H1Connection.data_to_send`, so a response
head, its body and its end can leave in one write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

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
from ._fields import (
    VALUE_BYTES,
    check_field,
    checked_tokens,
    checked_values,
    remember_checked,
    token_ok,
    value_ok,
)
from ._limits import HOST_BYTES, ServerNames

__all__ = ["DEFAULT_LIMITS", "REASONS", "H1Connection", "H1Output", "RequestLimits", "error_body"]

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


class _Gap:
    """Stands for body bytes written outside h11 (see :meth:`H1Connection.frame_external`)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _fields(headers: _H11Headers) -> Headers:
    # h11's Headers is a Sequence whose generic __iter__ calls __getitem__ per field; its
    # backing list of (raw name, lowercase name, value) is much faster to walk.
    full = getattr(headers, "_full_items", None)
    if full is None:
        return list(headers)
    return [(name, value) for _, name, value in full]


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """The size limits on one HTTP/1.1 request (defaults as in :class:`~trio_http.Config`).

    ``max_request_line_size``: bytes of request line (method, target, version) before 414;
    ``max_request_header_size``: bytes of request head before 431;
    ``max_request_header_count``: header fields before 431;
    ``max_request_body_size``: bytes of declared ``Content-Length`` before 413 (``None``: no
    limit; a streamed body is counted by the I/O layer);
    ``server_names``: the hosts served, others get 421 (``None``: any host).
    """

    max_request_line_size: int = 8192
    max_request_header_size: int = 16384
    max_request_header_count: int = 100
    max_request_body_size: int | None = None
    server_names: ServerNames | None = None


DEFAULT_LIMITS = RequestLimits()

#: What a request head may hold: field values' bytes (RFC 9110 §5.5) and line ends.
_HEAD_BYTES = VALUE_BYTES + b"\r\n"

#: What a request-target may hold once parsed: visible ASCII (RFC 9112 §3.2).
_TARGET_BYTES = bytes(range(0x21, 0x7F))
#: Host values and origin-form targets that passed, as in _fields.py (the same bounds).
_checked_hosts: set[bytes] = set()
_checked_paths: set[bytes] = set()


def _check_request(
    method: bytes,
    target: bytes,
    http_version: bytes,
    fields: Headers,
    limits: RequestLimits = DEFAULT_LIMITS,
    *,
    values_checked: bool = False,
) -> tuple[bytes | None, bool, int, bool]:
    """Apply ``limits`` (414, 431, 413) and reject the request shapes that smuggling relies on
    (RFC 9112 §3, §6.1, §6.3; RFC 9110 §5.5, §7.2), for any parser: ``fields`` are the header
    fields as parsed (lowercase names, values with surrounding whitespace removed),
    ``http_version`` ``b"1.1"`` or ``b"1.0"``. ``values_checked``: the caller has already
    refused control characters in the head as received.

    Returns (upgrade token, expect 100-continue, head size in bytes as counted against
    ``max_request_header_size``, a ``close`` token in Connection). Raises
    :class:`ProtocolError` with the status to answer: 400, 405 (CONNECT), 413, 414, 421 (a
    host not in ``limits.server_names``), 431, 501 (transfer-coding), 505.
    """
    if len(method) + len(target) + 10 > limits.max_request_line_size:
        raise ProtocolError("request line too long", status_code=414)
    if len(fields) > limits.max_request_header_count:
        raise ProtocolError("too many request header fields", status_code=431)
    te = cl = 0
    host: bytes | None = None
    hosts = 0
    length = b""
    upgrade: bytes | None = None
    connection_upgrade = close = False
    expect = False
    size = len(method) + len(target) + 12
    for name, value in fields:
        size += len(name) + len(value) + 4
        if not values_checked and value not in checked_values and not value_ok(value):
            # h11 lets most C0 controls and DEL through; other hops may read them as
            # separators or whitespace (RFC 9110 §5.5).
            raise ProtocolError(f"control character in the {name!r} field")
        if name == b"transfer-encoding":
            te += 1
            if value.lower() != b"chunked":
                raise ProtocolError("unsupported transfer-coding", status_code=501)
        elif name == b"content-length":
            cl += 1
            length = value
        elif name == b"host":
            hosts += 1
            host = value
        elif name == b"upgrade":
            upgrade = value.split(b",")[0].strip().lower()
        elif name == b"connection":
            tokens = value.lower()
            # find(), not "in": see _scope.build_scope.
            connection_upgrade = connection_upgrade or tokens.find(b"upgrade") >= 0
            if tokens.find(b"close") >= 0:
                close = close or any(t.strip() == b"close" for t in tokens.split(b","))
        elif name == b"expect":
            expect = value.lower() == b"100-continue"
    if size > limits.max_request_header_size:
        raise ProtocolError("request header fields too large", status_code=431)
    if te and cl:
        raise ProtocolError("both Transfer-Encoding and Content-Length")
    if te > 1:
        raise ProtocolError("several Transfer-Encoding fields")
    if te and http_version == b"1.0":
        # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
        raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request")
    if cl > 1:
        raise ProtocolError("several Content-Length fields")
    if cl and not length.isdigit():
        # A list ("5, 5"), a sign or spaces: each hop might read it differently.
        raise ProtocolError("invalid Content-Length")
    if method not in checked_tokens and not token_ok(method):
        raise ProtocolError("invalid method token")
    if http_version != b"1.1" and http_version != b"1.0":
        raise ProtocolError("HTTP version not supported", status_code=505)
    if hosts > 1 or (hosts == 0 and http_version == b"1.1"):
        raise ProtocolError("a request must carry exactly one Host field")
    if host is not None and host not in _checked_hosts:
        if host.translate(None, HOST_BYTES):
            raise ProtocolError("invalid Host field")
        remember_checked(_checked_hosts, host)
    if method == b"CONNECT":
        # Tunnelling is not served; RFC 9110 §9.3.6 lets a server refuse it.
        raise ProtocolError("CONNECT is not supported", status_code=405)
    _check_target(method, target, host)
    if limits.server_names is not None and not limits.server_names.allows(host or b""):
        raise ProtocolError("this server does not serve that host", status_code=421)
    if cl and limits.max_request_body_size is not None and (
        len(length) > 20 or int(length) > limits.max_request_body_size
    ):
        raise ProtocolError("request body too large", status_code=413)
    return (upgrade if connection_upgrade else None), expect, size, close


def _check_target(method: bytes, target: bytes, host: bytes | None) -> None:
    """The request-target forms a server accepts (RFC 9112 §3.2): origin-form; asterisk-form
    for OPTIONS only; absolute-form with an ``http``/``https`` authority that matches Host
    (RFC 9110 §7.2), so that no hop routes on one host while the app reads another.
    Authority-form belongs to CONNECT, refused before this. Raises :class:`ProtocolError`."""
    if target in _checked_paths:
        return
    if not target or target.translate(None, _TARGET_BYTES):
        raise ProtocolError("malformed request-target")
    if target[0] == 0x2F:  # "/": origin-form, whatever the method and host
        remember_checked(_checked_paths, target)
        return
    if target == b"*":
        if method != b"OPTIONS":
            raise ProtocolError("asterisk-form request-target is for OPTIONS only")
        return
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        raise ProtocolError("malformed request-target")
    end = len(rest)
    for stop in (b"/", b"?", b"#"):
        i = rest.find(stop)
        if 0 <= i < end:
            end = i
    authority = rest[:end]
    if not authority or b"@" in authority or authority.translate(None, HOST_BYTES):
        raise ProtocolError("invalid authority in the request-target")
    if host is not None and host.lower() != authority.lower():
        raise ProtocolError("Host does not match the request-target")


def error_body(status: int, message: str = "") -> bytes:
    """The plain-text body of an error response both parsers send: the status line's words
    and, if given, a short reason (at most 200 bytes)."""
    body = f"{status} {REASONS.get(status, b'').decode()}\n".encode()
    if message:
        body += message.encode("utf-8", "replace")[:200] + b"\n"
    return body


class H1Output:
    """The output side both HTTP/1.1 parsers share: bytes queued in ``_out`` until the I/O
    layer takes them, and the request to close after the current response."""

    __slots__ = ("_close_after", "_out")

    def __init__(self) -> None:
        self._out: list[bytes] = []
        self._close_after = False

    def data_to_send(self) -> bytes:
        """Take the bytes queued for the peer (may be empty)."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def data_to_send_parts(self) -> list[bytes]:
        """Take the bytes queued for the peer as the pieces they were queued in, so a large
        body can be written without first being copied into one buffer."""
        out = self._out
        self._out = []
        return out

    # --- the keep-alive cycle ----------------------------------------------------------
    def close_after_response(self) -> None:
        """Ask to close once the current (or next) response is done: adds ``connection:
        close`` to a response not yet started (graceful shutdown, RFC 9112 §9.6)."""
        self._close_after = True


class H1Connection(H1Output):
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
        "_h11", "_head_request", "_limits", "_max_head", "_no_body",
        "_raw", "_scanned", "request",
    )

    def __init__(
        self, *, max_request_header_size: int = 16384, limits: RequestLimits | None = None
    ) -> None:
        if limits is None:
            limits = RequestLimits(max_request_header_size=max_request_header_size)
        else:
            max_request_header_size = limits.max_request_header_size
        self._limits = limits
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_request_header_size)
        self._max_head = max_request_header_size
        # h11's receive buffer, read (never written) to check a request head as sent before
        # h11 normalises it: see _check_raw_head.
        buffer = getattr(self._h11, "_receive_buffer", None)
        raw = getattr(buffer, "_data", None)
        self._raw: bytearray | None = raw if isinstance(raw, bytearray) else None
        self._scanned = 0  # bytes of an incomplete head already searched for its end
        super().__init__()
        self._no_body = False
        self._head_request = False
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
        if self._raw is not None:
            return len(self._raw)
        return len(self._h11.trailing_data[0])

    def next_event(self) -> H1Event:
        """The next event, :data:`NEED_DATA` or :data:`PAUSED`. Raises :class:`ProtocolError`."""
        if self._raw and self._h11.their_state is h11.IDLE:
            self._check_raw_head(self._raw)
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if status == 431 or ("exceeds" in str(exc) and status == 400):
                # An over-long head (h11 may call it a plain 400): 414 if the request line
                # alone is too long, else 431.
                raw = self._raw if self._raw is not None else b""
                line_max = self._limits.max_request_line_size
                status = 414 if len(raw) > line_max and raw.find(b"\n", 0, line_max) < 0 else 431
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

    def _check_raw_head(self, raw: bytearray) -> None:
        # What h11 accepts but normalises away, so that _check_request cannot see it: bare LF
        # line ends, obs-fold continuation lines (RFC 9112 §2.2, §5.2), and repeated or
        # list-form Content-Length (RFC 9110 §8.6), all of which other hops may frame
        # differently. Only a complete head is checked; the search resumes where it stopped.
        start = max(0, self._scanned - 3)
        end = raw.find(b"\r\n\r\n", start)
        if end < 0:
            if raw.find(b"\n\n", start) >= 0 or raw.find(b"\n\r\n", start) >= 0:
                raise ProtocolError("bare LF in the request head")  # h11 would end it there
            # Still incomplete: refuse binary garbage (a TLS hello, a stray protocol) now
            # rather than when the head times out.
            if raw[self._scanned :].translate(None, _HEAD_BYTES):
                raise ProtocolError("control character in the request head")
            self._scanned = len(raw)
            return
        self._scanned = 0
        end += 4
        head = raw[:end]
        if head.translate(None, _HEAD_BYTES):
            raise ProtocolError("control character in the request head")
        if head.count(b"\n") != head.count(b"\r\n"):  # (h11 refuses a bare CR itself)
            raise ProtocolError("bare LF in the request head")
        if head.find(b"\n ") >= 0 or head.find(b"\n\t") >= 0:
            raise ProtocolError("obsolete line folding in the request head")
        head = head.lower()
        i = head.find(b"\ncontent-length:")
        if i >= 0:
            if head.find(b"\ncontent-length:", i + 16) >= 0:
                raise ProtocolError("several Content-Length fields")
            if head.find(b",", i + 16, head.find(b"\n", i + 16)) >= 0:
                raise ProtocolError("invalid Content-Length")

    def _on_request(self, event: h11.Request) -> Request:
        fields = _fields(event.headers)
        upgrade, expect, _, _ = _check_request(
            event.method, event.target, event.http_version, fields, self._limits,
            values_checked=self._raw is not None,
        )
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
        """Queue a 1xx response (100 Continue, 101 Switching Protocols, 103 Early Hints).
        Raises :class:`ValueError` for an invalid status or fields, or once a response has
        started."""
        try:
            data = self._h11.send(h11.InformationalResponse(
                status_code=status, headers=headers, reason=REASONS.get(status, b"")
            ))
        except h11.LocalProtocolError as exc:
            raise ValueError(f"invalid informational response: {exc}") from None
        self._out.append(data or b"")

    def send_response(
        self,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        content_length: int | None = None,
        defaults: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """Queue the response head: ``headers`` as the application gave them (names in any
        case; bytes-like), then each of ``defaults`` (already valid, lowercase: ``server``,
        ``date``...) whose name the application did not use, then ``content-length:
        <content_length>`` (bytes) if given and the application set neither Content-Length
        nor Transfer-Encoding.

        Raises :class:`ValueError` (or :class:`TypeError` for a field that is not bytes-like)
        for an invalid status or field: an application error."""
        if type(status) is not int or not 200 <= status <= 599:
            raise ValueError(f"invalid response status {status!r}")
        fields: Headers = []
        names: list[bytes] = []
        for name, value in headers:
            if type(name) is not bytes or type(value) is not bytes:
                name, value = bytes(name), bytes(value)
            name = name.lower()
            fields.append((name, value))
            names.append(name)
        framed = b"content-length" in names or b"transfer-encoding" in names
        for field in defaults:
            if field[0] not in names:
                fields.append(field)
        if content_length is not None and not framed:
            fields.append((b"content-length", b"%d" % content_length))
        if self._close_after:
            fields.append((b"connection", b"close"))
        headers = fields
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
            # The passthrough form hands back h11's pieces (chunk header, data, CRLF) instead
            # of joining them: a large body is not copied.
            out = self._h11.send_with_data_passthrough(h11.Data(data=data))
        except h11.LocalProtocolError as exc:
            raise ValueError(f"invalid response body: {exc}") from None
        if out:
            self._out.extend(out)

    def frame_external(self, n: int) -> tuple[bytes, bytes] | None:
        """Count ``n`` body bytes that the caller writes itself (with ``os.sendfile``) and return
        the framing to write just before and just after them (a chunk header and its CRLF, or
        nothing); ``None`` when the body is dropped (HEAD, 204, 304). Anything queued in
        :meth:`data_to_send` must be written first. Raises :class:`ValueError` when the bytes
        overrun the declared Content-Length."""
        if self._no_body or n <= 0:
            return None
        gap = _Gap(n)
        try:
            # h11's documented sendfile pattern: its writers take len() of the data and pass
            # the object itself through, so a stand-in yields the framing around it.
            parts: list[Any] = self._h11.send_with_data_passthrough(
                h11.Data(data=gap)  # type: ignore[arg-type]
            ) or []
        except h11.LocalProtocolError as exc:
            raise ValueError(f"invalid response body: {exc}") from None
        i = next(i for i, part in enumerate(parts) if part is gap)
        return b"".join(parts[:i]), b"".join(parts[i + 1 :])

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
        body = error_body(status, message)
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

    # --- the keep-alive cycle ----------------------------------------------------------

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
