"""The response side of the httptools HTTP/1.1 connection (RFC 9112 §4, §6, §7): the response
head in one pass, body framing (Content-Length, chunked, or until close), trailers and error
responses, following h11's framing rules so that both parsers put the same bytes on the wire.

:class:`ResponseWriter` is the base of :class:`~._http1_httptools.HttptoolsH1Connection`, whose
module keeps the request side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._events import Headers
from ._fields import check_field
from ._http1 import REASONS, H1Output, error_body

__all__ = ["ResponseWriter"]

# Response body framing.
_NONE, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)
# Response progress. _ERROR: the app broke the framing; as with h11, no response may follow.
_IDLE, _BODY, _DONE, _ERROR = range(4)


def _has_token(fields: Headers, name: bytes, token: bytes) -> bool:
    for n, v in fields:
        if n == name and any(t.strip().lower() == token for t in v.split(b",")):
            return True
    return False


class ResponseWriter(H1Output):
    """Response serialisation for one HTTP/1.1 connection, into ``_out``. The request side
    sets what the response depends on: ``_head_request``, ``_http10``, ``_keep_alive`` and
    ``_waiting_100``."""

    __slots__ = (
        "_framing",
        "_head_request",
        "_http10",
        "_keep_alive",
        "_out_state",
        "_remaining",
        "_waiting_100",
    )

    _framing: int
    _head_request: bool
    _http10: bool
    _keep_alive: bool
    _out_state: int
    _remaining: int
    _waiting_100: bool

    def send_informational(self, status: int, headers: Headers) -> None:
        """Queue a 1xx response (100 Continue, 101 Switching Protocols, 103 Early Hints)."""
        if not 100 <= status < 200 or self._out_state != _IDLE:
            raise ValueError(f"invalid informational response {status}")
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))]
        for name, value in headers:
            check_field(name, value)
            lines.append(name + b": " + value.strip(b" \t") + b"\r\n")
        lines.append(b"\r\n")
        self._out.append(b"".join(lines))
        self._waiting_100 = False

    def send_response(
        self,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        content_length: int | None = None,
        defaults: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """Queue the response head (RFC 9112 §4): ``headers`` as the application gave them
        (names in any case; bytes-like), then each of ``defaults`` (already valid, lowercase:
        ``server``, ``date``...) whose name the application did not use, then
        ``content-length: <content_length>`` (bytes) if given and the application set neither
        Content-Length nor Transfer-Encoding. One pass over the fields: this is the hottest
        path of a response.

        Raises :class:`ValueError` (or :class:`TypeError` for a field that is not bytes-like)
        for an invalid status or field: an application error."""
        if type(status) is not int or not 200 <= status <= 599:
            raise ValueError(f"invalid response status {status!r}")
        if self._out_state != _IDLE:
            raise self._broken("invalid response: a response was already sent")
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))]
        fields: list[tuple[bytes, bytes]] = []
        names: list[bytes] = []
        length: int | None = None
        chunked = close = False
        rebuild = self._close_after  # framing or connection fields must be rewritten (rare)
        for name, value in headers:
            if type(name) is not bytes or type(value) is not bytes:
                name, value = bytes(name), bytes(value)
            check_field(name, value)
            name = name.lower()
            value = value.strip(b" \t")
            if name == b"content-length":
                if not value.isdigit():
                    raise ValueError(f"invalid content-length {value!r}")
                if length is not None:
                    if int(value) != length:
                        raise ValueError("conflicting content-length values")
                    rebuild = True
                length = int(value)
            elif name == b"transfer-encoding":
                if value.lower() != b"chunked":
                    raise ValueError("the only transfer-coding a response may set is chunked")
                chunked = True
            elif name == b"connection":
                close = close or _has_token([(name, value)], b"connection", b"close")
            fields.append((name, value))
            names.append(name)
            lines.append(name + b": " + value + b"\r\n")
        for field in defaults:
            if field[0] not in names:
                fields.append(field)
                lines.append(field[0] + b": " + field[1] + b"\r\n")
        if content_length is not None and length is None and not chunked and status >= 200:
            length = content_length
            value = b"%d" % length
            fields.append((b"content-length", value))
            lines.append(b"content-length: " + value + b"\r\n")
        no_body = self._head_request or status == 204 or status == 304
        if status == 204 or status == 304:
            framing = _NONE
        elif chunked:
            framing = _CHUNKED
            rebuild = rebuild or length is not None or self._http10
        elif length is not None:
            framing = _LENGTH
        else:
            framing = _CHUNKED
            rebuild = True
        keep_alive = self._keep_alive and not close and not self._close_after
        if framing == _CHUNKED and self._http10:
            # An HTTP/1.0 client knows no chunked coding: the body ends with the connection.
            framing = _UNTIL_CLOSE
            if not self._head_request:
                keep_alive = False
        if not keep_alive and not close:
            rebuild = True
        if rebuild:
            lines = self._rebuild(lines[0], fields, framing, keep_alive)
        lines.append(b"\r\n")
        self._out.append(b"".join(lines))
        self._keep_alive = keep_alive
        self._waiting_100 = False
        self._out_state = _BODY
        self._framing = _NONE if no_body else framing
        self._remaining = length or 0

    @staticmethod
    def _rebuild(
        status_line: bytes, headers: Headers, framing: int, keep_alive: bool
    ) -> list[bytes]:
        # h11's rules (h11/_connection.py, _clean_up_response_headers_for_sending): chunked
        # framing drops Content-Length and says Transfer-Encoding: chunked, close-delimited
        # framing says neither, and a closing response says Connection: close.
        lines = [status_line]
        seen_length = False
        for name, value in headers:
            lname = name.lower()
            value = value.strip(b" \t")
            if lname == b"content-length":
                if framing in (_CHUNKED, _UNTIL_CLOSE) or seen_length:
                    continue
                seen_length = True
            elif lname == b"transfer-encoding":
                continue
            elif lname == b"connection" and not keep_alive:
                continue
            lines.append(name + b": " + value + b"\r\n")
        if framing == _CHUNKED:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
        return lines

    def send_data(self, data: bytes) -> None:
        """Queue response body bytes (dropped for HEAD, 204 and 304). Raises
        :class:`ValueError` when they overrun the declared Content-Length."""
        if self._out_state != _BODY:
            raise self._broken("invalid response body: no response in progress")
        framing = self._framing
        if framing == _NONE or not data:
            return
        if framing == _LENGTH:
            if len(data) > self._remaining:
                raise self._broken("invalid response body: too much data for declared "
                                   "Content-Length")
            self._remaining -= len(data)
            self._out.append(data)
        elif framing == _CHUNKED:
            self._out.append(b"%x\r\n" % len(data))
            self._out.append(data)
            self._out.append(b"\r\n")
        else:
            self._out.append(data)

    def frame_external(self, n: int) -> tuple[bytes, bytes] | None:
        """Count ``n`` body bytes that the caller writes itself (with ``os.sendfile``) and return
        the framing to write just before and just after them (a chunk header and its CRLF, or
        nothing); ``None`` when the body is dropped (HEAD, 204, 304). Anything queued in
        :meth:`data_to_send` must be written first. Raises :class:`ValueError` when the bytes
        overrun the declared Content-Length."""
        if self._out_state != _BODY:
            raise self._broken("invalid response body: no response in progress")
        framing = self._framing
        if framing == _NONE or n <= 0:
            return None
        if framing == _LENGTH:
            if n > self._remaining:
                raise self._broken("invalid response body: too much data for declared "
                                   "Content-Length")
            self._remaining -= n
        elif framing == _CHUNKED:
            return b"%x\r\n" % n, b"\r\n"
        return b"", b""

    def send_end(self, trailers: Headers | None = None) -> None:
        """Queue the end of the response. Raises :class:`ValueError` when the body fell short
        of the declared Content-Length."""
        if self._out_state != _BODY:
            raise self._broken("invalid response end: no response in progress")
        framing = self._framing
        if framing == _LENGTH:
            if self._remaining:
                raise self._broken("invalid response end: too little data for declared "
                                   "Content-Length")
            if trailers:
                raise self._broken("invalid response end: Content-Length and trailers "
                                   "don't mix")
        elif framing == _CHUNKED:
            if trailers:
                lines = [b"0\r\n"]
                for name, value in trailers:
                    check_field(name, value)
                    lines.append(name + b": " + value.strip(b" \t") + b"\r\n")
                lines.append(b"\r\n")
                self._out.append(b"".join(lines))
            else:
                self._out.append(b"0\r\n\r\n")
        elif framing == _UNTIL_CLOSE:
            if trailers:
                raise self._broken("invalid response end: no trailers without chunked coding")
            self._keep_alive = False
        self._out_state = _DONE

    def _broken(self, message: str) -> ValueError:
        self._out_state = _ERROR
        self._keep_alive = False
        return ValueError(message)

    def send_error(self, status: int, message: str = "") -> None:
        """Queue a complete plain-text error response that closes the connection. Does nothing
        if a response has already started (the caller then just closes)."""
        if self._out_state != _IDLE:
            return
        reason = REASONS.get(status, b"")
        body = error_body(status, message)
        self._out.append(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason, len(body), body)
        )
        self._out_state = _DONE
        self._keep_alive = False
