"""The server side of HTTP/3 (RFC 9114) over QUIC (RFC 9000), in the shared event vocabulary.

aioquic's sans-io ``QuicConnection`` (transport, TLS 1.3, loss recovery) and ``H3Connection``
(framing, QPACK, message validation) do the protocol work; this layer adds the server's policy
and speaks in :mod:`._events`. Datagrams go in with :meth:`H3Connection.receive_datagram`,
come out of :meth:`H3Connection.datagrams_to_send`; time comes in as ``now`` (any monotonic
clock, in seconds, used consistently); :meth:`H3Connection.get_timer` says when to call
:meth:`H3Connection.handle_timer`.

Policy added here:

* **Receive credit follows consumption.** aioquic raises a stream's MAX_STREAM_DATA as soon
  as the peer has *sent* half of it, whether or not anyone read the bytes, so on its own a
  request body would be buffered without bound while the application does not read. Request
  streams therefore use our own rule (:class:`_ServerQuic` overrides aioquic's
  ``_write_stream_limits``, the one place it decides MAX_STREAM_DATA): the limit is the
  consumed offset plus ``stream_window_size``, and body bytes count as consumed only once the
  I/O layer calls :meth:`H3Connection.acknowledge_data`. HTTP/3 framing bytes count as
  consumed when parsed, but bytes aioquic's HTTP/3 layer still holds (a HEADERS frame not yet
  complete) do not, so a header block can never take more than one window: a stream whose
  window is full of an unfinished frame is reset with H3_EXCESSIVE_LOAD. Unidirectional
  streams (control, QPACK) keep aioquic's rule: it consumes them as they arrive. The
  connection-wide MAX_DATA starts at ``max_concurrent_streams * stream_window_size`` and is
  left to aioquic: every request stream is bounded, and so is their number.
* **Send buffers are bounded.** aioquic keeps every byte written to a stream until it is
  acknowledged. :meth:`H3Connection.send_window` reports the room left below
  ``send_buffer_size`` unacknowledged bytes, :meth:`H3Connection.send_data` queues at most that
  much, and a :class:`WindowUpdated` event says when a stream that was full has room again.
* **Streams are limited.** The peer may open ``max_concurrent_streams`` request streams
  (the QUIC MAX_STREAMS limit); a stream also counts until the I/O layer says its application
  task finished (:meth:`H3Connection.stream_done`), and streams past the limit are rejected
  with H3_REQUEST_REJECTED. A budget of stream resets guards against rapid reset.
* **Graceful shutdown** sends GOAWAY (RFC 9114 §5.2) naming the first request stream that
  will not be processed; streams in flight finish; the I/O layer then calls :meth:`close`.

aioquic's public API has no hook for the first point, nor a GOAWAY sender, nor a view of a
stream's send buffer: those reads and writes of aioquic internals live in
:mod:`._aioquic_compat` only. No aioquic exception leaves this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aioquic.h3 import connection as h3c
from aioquic.h3 import events as h3e
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration

from ._aioquic_compat import (
    ServerH3,
    ServerQuic,
    h3_end_sending,
    h3_pending,
    responses_acknowledged,
    send_goaway,
    send_room,
    tls_cipher_suite,
)
from ._events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    Data,
    EndOfMessage,
    H3Event,
    Headers,
    Request,
    StreamClosed,
    StreamReset,
    WindowUpdated,
)
from ._fields import NOT_IN_RESPONSES, response_fields
from ._limits import RequestHead, ServerNames, refusal_status

__all__ = [
    "H3_EXCESSIVE_LOAD",
    "H3_INTERNAL_ERROR",
    "H3_NO_ERROR",
    "H3_REQUEST_CANCELLED",
    "H3_REQUEST_REJECTED",
    "ConnectionIdIssued",
    "ConnectionIdRetired",
    "H3Connection",
    "H3Event",
    "StreamClosed",
]

_E = h3c.ErrorCode
H3_NO_ERROR = int(_E.H3_NO_ERROR)
H3_INTERNAL_ERROR = int(_E.H3_INTERNAL_ERROR)
H3_EXCESSIVE_LOAD = int(_E.H3_EXCESSIVE_LOAD)
H3_REQUEST_REJECTED = int(_E.H3_REQUEST_REJECTED)
H3_REQUEST_CANCELLED = int(_E.H3_REQUEST_CANCELLED)

_STATUS = {s: str(s).encode() for s in range(100, 600)}

NetworkAddress = Any


class _Stream:
    """Our bookkeeping for one request stream, in QUIC stream offsets (bytes)."""

    __slots__ = (
        "active", "answered", "body", "head", "headers_sent", "peer_reset", "received",
        "recv_done", "trailers", "unconsumed",
    )

    def __init__(self) -> None:
        self.received = 0  # bytes of the QUIC stream delivered in order
        self.unconsumed = 0  # body bytes handed out as Data and not yet acknowledged
        self.active = False  # a Request was emitted and the app task has not finished
        self.recv_done = False  # FIN or RESET_STREAM seen
        self.peer_reset = False  # RESET_STREAM or STOP_SENDING seen
        self.head = False  # a HEAD request: the response carries no content
        self.headers_sent = False  # a response head has gone out on this stream
        self.answered = False  # we ended the stream early with a complete error response
        self.body = 0  # request body bytes received (counted against max_request_body_size)
        self.trailers: Headers = []


class H3Connection:
    """One HTTP/3 server connection.

    ``configuration`` is aioquic's server :class:`QuicConfiguration` (certificate, ALPN
    ``h3``, ``idle_timeout`` in seconds); its ``max_stream_data`` and ``max_data`` are set
    here from ``stream_window_size`` (bytes of request body a stream may buffer) and
    ``max_concurrent_streams`` (request streams). ``send_buffer_size`` bounds the
    unacknowledged response bytes per stream. The request limits (``max_request_*``,
    ``server_names``) refuse one stream, as :func:`._limits.refusal_status` says.
    ``original_destination_connection_id`` and
    ``retry_source_connection_id`` come from the client's Initial packet (RFC 9000 §7.3).

    Input methods return events and never raise for anything the peer sends: errors close
    the connection, and :class:`ConnectionTerminated` comes once it is over (after the
    closing or draining period).
    """

    def __init__(
        self,
        configuration: QuicConfiguration,
        *,
        original_destination_connection_id: bytes,
        retry_source_connection_id: bytes | None = None,
        max_concurrent_streams: int = 100,
        stream_window_size: int = 262144,
        send_buffer_size: int = 262144,
        reset_budget: int = 200,
        max_request_header_count: int = 100,
        max_request_line_size: int = 8192,
        max_request_body_size: int | None = None,
        server_names: ServerNames | None = None,
    ) -> None:
        self._max_fields = max_request_header_count
        self._max_line = max_request_line_size
        self._max_body = max_request_body_size
        self._server_names = server_names
        configuration.max_stream_data = stream_window_size
        configuration.max_data = max(max_concurrent_streams * stream_window_size, 1 << 20)
        self._quic = ServerQuic(
            max_streams=max_concurrent_streams,
            configuration=configuration,
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
        )
        self._h3: ServerH3 | None = None
        self.max_concurrent_streams = max_concurrent_streams
        self._window = stream_window_size
        self._send_buffer = send_buffer_size
        self._streams: dict[int, _Stream] = {}
        #: Streams whose application task has not finished (counted against the limit).
        self.active: set[int] = set()
        self._send_blocked: set[int] = set()
        self._highest_stream = -4
        self._goaway_at: int | None = None
        self._resets = 0
        self._completed = 0
        self._reset_budget = reset_budget
        self._closed_by_us = False
        self.handshake_complete = False
        self.terminated = False

    # --- identity and timers ----------------------------------------------------------
    @property
    def host_cid(self) -> bytes:
        """The connection ID we chose; datagrams addressed to it belong here."""
        return bytes(self._quic.host_cid)

    @property
    def cipher_suite(self) -> int | None:
        """The TLS cipher suite (IANA value) once the handshake has chosen it, else ``None``."""
        return tls_cipher_suite(self._quic)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is due, in the clock of ``now``; ``None`` for never."""
        if self.terminated:
            return None
        timer: float | None = self._quic.get_timer()
        return timer

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, NetworkAddress]]:
        """Take the datagrams to send now, each with its destination address."""
        if self.terminated:
            return []
        try:
            out: list[tuple[bytes, NetworkAddress]] = self._quic.datagrams_to_send(now=now)
        except Exception:  # an aioquic bug must end this connection only
            self.terminated = True
            return []
        return out

    # --- input -----------------------------------------------------------------------
    def receive_datagram(self, data: bytes, addr: NetworkAddress, now: float) -> list[H3Event]:
        """Process one UDP datagram from ``addr``; return the events it produced."""
        if self.terminated:
            return []
        try:
            self._quic.receive_datagram(data, addr, now=now)
        except Exception as exc:
            return [self._fail(f"{type(exc).__name__}: {exc}")]
        return self._drain()

    def handle_timer(self, now: float) -> list[H3Event]:
        """The timer from :meth:`get_timer` expired: retransmit, time out, or end."""
        if self.terminated:
            return []
        try:
            self._quic.handle_timer(now=now)
        except Exception as exc:
            return [self._fail(f"{type(exc).__name__}: {exc}")]
        return self._drain()

    def _fail(self, reason: str) -> ConnectionTerminated:
        self.terminated = True
        return ConnectionTerminated(H3_INTERNAL_ERROR, None, by_peer=False,
                                    reason=f"internal error: {reason}")

    def _drain(self) -> list[H3Event]:
        out: list[H3Event] = []
        quic = self._quic
        # aioquic's event classes share no typed base with the attributes read below.
        next_event: Any = quic.next_event
        try:
            while (ev := next_event()) is not None:
                t = type(ev)
                if t is qe.StreamDataReceived:
                    self._on_stream_data(ev, out)
                elif t is qe.StreamReset or t is qe.StopSendingReceived:
                    sid = ev.stream_id
                    if self._h3 is not None:
                        self._h3.handle_event(ev)
                        if t is qe.StreamReset:
                            self._h3.forget(sid)
                    st = self._streams.get(sid)
                    if st is not None:
                        st.peer_reset = True
                        if t is qe.StreamReset:
                            st.recv_done = True
                        if st.active:
                            self._resets += 1
                            out.append(StreamReset(sid, ev.error_code))
                            if self._resets > self._completed + self._reset_budget:
                                self.close(H3_EXCESSIVE_LOAD, "too many stream resets")
                        self._forget(sid, st)
                elif t is qe.ProtocolNegotiated:
                    if self._h3 is None:
                        self._h3 = ServerH3(quic)
                elif t is qe.HandshakeCompleted:
                    self.handshake_complete = True
                elif t is qe.ConnectionIdIssued:
                    out.append(ConnectionIdIssued(bytes(ev.connection_id)))
                elif t is qe.ConnectionIdRetired:
                    out.append(ConnectionIdRetired(bytes(ev.connection_id)))
                elif t is qe.ConnectionTerminated:
                    self.terminated = True
                    last = self._goaway_at - 4 if self._goaway_at is not None else None
                    out.append(ConnectionTerminated(
                        ev.error_code, last, by_peer=not self._closed_by_us,
                        reason=ev.reason_phrase or "connection closed",
                    ))
                    break
        except Exception as exc:  # aioquic's H3 layer raises only for our bugs or its own
            quic.close(error_code=H3_INTERNAL_ERROR, reason_phrase="internal error")
            self._closed_by_us = True
            out.append(ConnectionTerminated(H3_INTERNAL_ERROR, None, by_peer=False,
                                            reason=f"internal error: {type(exc).__name__}: {exc}"))
        if self._send_blocked:
            for sid in list(self._send_blocked):
                if self._room(sid) != 0:
                    self._send_blocked.discard(sid)
                    out.append(WindowUpdated(sid))
        return out

    def _on_stream_data(self, ev: Any, out: list[H3Event]) -> None:
        sid = ev.stream_id
        st = None
        if not sid & 3:
            st = self._streams.get(sid)
            if st is None:
                st = self._streams[sid] = _Stream()
                self._highest_stream = max(self._highest_stream, sid)
            st.received += len(ev.data)
            if ev.end_stream:
                st.recv_done = True
        if self._h3 is None:
            return
        h: Any
        malformed = self._h3.malformed
        for h in self._h3.handle_event(ev):
            t = type(h)
            if t is h3e.DataReceived:
                hst = self._streams.get(h.stream_id)
                if hst is not None and hst.active:
                    if hst.answered:
                        continue  # refused already: the rest of the body goes unread
                    if h.data and self._max_body is not None:
                        hst.body += len(h.data)
                        if hst.body > self._max_body:
                            # The same limit as HTTP/1.1 and HTTP/2: 413 if no response has
                            # started, else a reset; either way the app sees a disconnect.
                            self._resets += 1
                            self._abort_request(h.stream_id, hst, 413)
                            out.append(StreamReset(h.stream_id, H3_REQUEST_CANCELLED))
                            continue
                    if h.data:
                        hst.unconsumed += len(h.data)
                        out.append(Data(h.stream_id, h.data, len(h.data)))
                    if h.stream_ended:
                        out.append(EndOfMessage(h.stream_id, hst.trailers))
            elif t is h3e.HeadersReceived:
                self._on_headers(h, out)
        if self._h3.malformed != malformed:
            # Malformed request heads, reset by ServerH3: streams that do no work, counted.
            self._resets += self._h3.malformed - malformed
            if self._resets > self._completed + self._reset_budget:
                self.close(H3_EXCESSIVE_LOAD, "too many malformed requests")
        if st is not None:
            if st.active:
                self._update_credit(sid, st)
            elif st.recv_done:
                self._forget(sid, st)
            else:  # no request yet: its first window is all the header block may take
                self._check_stuck(sid, st)

    def _on_headers(self, h: Any, out: list[H3Event]) -> None:
        sid = h.stream_id
        st = self._streams.get(sid)
        if st is None:
            return  # a stream we already finished with
        if st.active:  # trailers (RFC 9114 §4.1)
            st.trailers = list(h.headers)
            if h.stream_ended:
                out.append(EndOfMessage(sid, st.trailers))
            return
        if (
            len(self.active) >= self.max_concurrent_streams
            or (self._goaway_at is not None and sid >= self._goaway_at)
        ):
            self._refuse(sid, H3_REQUEST_REJECTED)
            return
        head = RequestHead.from_fields(h.headers)
        method, target, authority = head.method, head.target, head.authority
        scheme, protocol, headers = head.scheme, head.protocol, head.headers
        if method == b"CONNECT" and protocol is None:
            # Plain CONNECT asks for a tunnel, which we do not serve; nothing was processed.
            self._refuse(sid, H3_REQUEST_REJECTED)
            return
        status = refusal_status(
            method, target, headers,
            max_fields=self._max_fields, max_line=self._max_line, max_body=self._max_body,
            server_names=self._server_names, authority=authority,
        )
        if status:
            self._resets += 1  # a stream that does no work, at the peer's choice
            self._answer_early(sid, st, status, request_ended=h.stream_ended)
            return
        st.active = True
        st.head = method == b"HEAD"
        self.active.add(sid)
        out.append(Request(
            stream_id=sid,
            method=method,
            target=target or b"/",
            headers=headers,
            http_version="3",
            scheme=scheme,
            authority=authority,
            protocol=protocol,
            end_stream=h.stream_ended,
        ))
        if h.stream_ended:
            out.append(EndOfMessage(sid, []))

    def _answer_early(self, sid: int, st: _Stream, status: int, *, request_ended: bool) -> None:
        # A complete bodiless response before the request is over, then STOP_SENDING with
        # H3_NO_ERROR so the client stops sending the body (RFC 9114 §4.1.1).
        if self._h3 is None:
            return
        try:
            self._h3.send_headers(
                sid, [(b":status", str(status).encode()), (b"content-length", b"0")],
                end_stream=True,
            )
        except Exception:  # aioquic refuses a stream it considers finished
            self._abort(sid, H3_REQUEST_CANCELLED, H3_REQUEST_CANCELLED)
        else:
            st.headers_sent = st.answered = True
            if not request_ended:
                self._abort(sid, None, H3_NO_ERROR)
        st.recv_done = st.recv_done or not request_ended
        self._forget(sid, st)

    def _abort_request(self, sid: int, st: _Stream, status: int) -> None:
        if st.headers_sent:
            self._abort(sid, H3_REQUEST_CANCELLED, H3_REQUEST_CANCELLED)
        else:
            self._answer_early(sid, st, status, request_ended=st.recv_done)

    def abort_request(self, stream_id: int, status: int) -> None:
        """End ``stream_id`` early from our side (408 after ``body_read_timeout``...): a
        bodiless ``status`` response if none has started, else a reset."""
        st = self._streams.get(stream_id)
        if st is not None and not self.terminated:
            self._abort_request(stream_id, st, status)

    def _refuse(self, sid: int, code: int) -> None:
        self._abort(sid, code, code)
        st = self._streams.get(sid)
        if st is not None:
            self._forget(sid, st)

    def _forget(self, sid: int, st: _Stream) -> None:
        if not st.active and st.recv_done:
            self._streams.pop(sid, None)
            self._quic.credit.pop(sid, None)

    def _update_credit(self, sid: int, st: _Stream) -> None:
        pending = h3_pending(self._h3, sid) if self._h3 is not None else None
        held = st.unconsumed + (pending[0] if pending is not None else 0)
        target = st.received - held + self._window  # consumed offset + window
        limit = self._quic.receive_limit(sid)
        if limit is None:
            return
        # Batch credit like WINDOW_UPDATE: announce once half a window is free again, or
        # whatever is free when the peer has used all it had.
        if target - limit >= self._window // 2 or (st.received >= limit and target > limit):
            self._quic.credit[sid] = target
        else:
            self._check_stuck(sid, st)

    def _check_stuck(self, sid: int, st: _Stream) -> None:
        if self._h3 is None or st.unconsumed or st.recv_done:
            return
        limit = self._quic.receive_limit(sid)
        pending = h3_pending(self._h3, sid)
        if limit is not None and st.received >= limit and pending is not None and not pending[1]:
            # The peer used all its credit on a frame HTTP/3 cannot parse until it is
            # complete (a huge header block): no credit will come back, so end the stream.
            self._abort(sid, H3_EXCESSIVE_LOAD, H3_EXCESSIVE_LOAD)
            st.recv_done = True
            self._forget(sid, st)

    # --- flow control ------------------------------------------------------------------
    def acknowledge_data(self, stream_id: int, n: int) -> None:
        """The application consumed ``n`` body bytes of ``stream_id``: return the credit
        (MAX_STREAM_DATA, RFC 9000 §4.1) once half a window has been consumed."""
        st = self._streams.get(stream_id)
        if st is not None and n:
            st.unconsumed = max(0, st.unconsumed - n)
            if st.active and not st.recv_done:
                self._update_credit(stream_id, st)

    def _room(self, stream_id: int) -> int:
        """Bytes ``stream_id`` may queue now, or -1 when it cannot send at all."""
        if self.terminated:
            return -1
        return send_room(self._quic, stream_id, self._send_buffer)

    def send_window(self, stream_id: int) -> int:
        """Bytes ``stream_id`` may queue now (room below ``send_buffer_size`` unacknowledged
        bytes). Raises :class:`StreamClosed` when the stream cannot send."""
        room = self._room(stream_id)
        if room < 0:
            raise StreamClosed(stream_id)
        if room == 0:
            self._send_blocked.add(stream_id)
        return room

    # --- output ------------------------------------------------------------------------
    def send_response(
        self,
        stream_id: int,
        status: int,
        headers: Iterable[Sequence[bytes]],
        *,
        end_stream: bool = False,
        defaults: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """Queue a response (or 1xx) HEADERS frame: ``headers`` as the application gave them,
        then each of ``defaults`` whose name it did not use (see
        :func:`~._fields.response_fields`); connection-specific fields are left out
        (RFC 9114 §4.2). Raises :class:`StreamClosed` if the stream cannot send,
        :class:`ValueError` (or :class:`TypeError`) for fields that are not valid (an
        application error)."""
        block: Headers = [(b":status", _STATUS.get(status) or str(status).encode())]
        response_fields(block, headers, defaults, NOT_IN_RESPONSES)
        self._send(stream_id, lambda h3: h3.send_headers(stream_id, block, end_stream=end_stream))
        st = self._streams.get(stream_id)
        if st is not None and status >= 200:
            st.headers_sent = True

    def _send(self, stream_id: int, op: Any) -> None:
        if self._h3 is None or self._room(stream_id) < 0:
            raise StreamClosed(stream_id)
        try:
            op(self._h3)
        except (h3c.ProtocolError, RuntimeError, ValueError, AssertionError):
            raise StreamClosed(stream_id) from None

    def send_data(
        self, stream_id: int, data: bytes | memoryview, *, end_stream: bool = False
    ) -> int:
        """Queue as much of ``data`` as :meth:`send_window` allows, in one DATA frame; end
        the stream when all of it went and ``end_stream``. Returns the bytes queued.
        Raises :class:`StreamClosed`. For a HEAD request the bytes are counted as queued
        and dropped (RFC 9110 §9.3.2)."""
        st = self._streams.get(stream_id)
        if st is not None and st.head:
            if end_stream:
                self._send(stream_id, lambda h3: h3.send_data(stream_id, b"", end_stream=True))
            return len(data)
        n = min(self.send_window(stream_id), len(data))
        last = end_stream and n == len(data)
        if n or last:
            chunk = bytes(data[:n])
            self._send(stream_id, lambda h3: h3.send_data(stream_id, chunk, end_stream=last))
        if n < len(data):
            self._send_blocked.add(stream_id)
        return n

    def end_stream(self, stream_id: int, trailers: Headers | None = None) -> None:
        """End the response, on a trailers HEADERS frame when ``trailers``. Raises
        :class:`StreamClosed`."""
        if trailers:
            self._send(stream_id, lambda h3: h3.send_headers(stream_id, trailers, end_stream=True))
        else:
            self._send(stream_id, lambda h3: h3.send_data(stream_id, b"", end_stream=True))

    def _abort(self, stream_id: int, reset_code: int | None, stop_code: int | None) -> None:
        quic = self._quic
        stream = quic._streams.get(stream_id)
        if stream is None or self.terminated:
            return
        try:
            if reset_code is not None and not stream.sender.is_finished:
                quic.reset_stream(stream_id, reset_code)
            if stop_code is not None and not stream.receiver.is_finished:
                quic.stop_stream(stream_id, stop_code)
        except (ValueError, RuntimeError):
            return
        if self._h3 is not None and reset_code is not None:
            h3_end_sending(self._h3, stream_id)
        self._send_blocked.discard(stream_id)

    def reset_stream(self, stream_id: int, error_code: int = H3_REQUEST_CANCELLED) -> None:
        """Abort the response with RESET_STREAM and stop the request body with STOP_SENDING
        (RFC 9114 §4.1.1)."""
        self._abort(stream_id, error_code, error_code)

    def stream_done(self, stream_id: int, *, completed: bool) -> None:
        """The application task of ``stream_id`` has finished: the stream stops counting
        against the limit. A request body still arriving is stopped with H3_NO_ERROR after
        a complete response (RFC 9114 §4.1); an incomplete response is reset with
        H3_INTERNAL_ERROR (H3_REQUEST_CANCELLED when the peer gave up on it first)."""
        self.active.discard(stream_id)
        self._send_blocked.discard(stream_id)
        st = self._streams.get(stream_id)
        if completed or (st is not None and st.answered):
            # (An early 413/408 is a complete response: resetting now would destroy it.)
            self._completed += completed
            self._abort(stream_id, None, H3_NO_ERROR)
        elif st is not None and st.peer_reset:
            self._abort(stream_id, H3_REQUEST_CANCELLED, H3_REQUEST_CANCELLED)
        else:
            self._abort(stream_id, H3_INTERNAL_ERROR, H3_REQUEST_CANCELLED)
        if st is not None:
            st.active = False
            self._quic.credit.pop(stream_id, None)
            # Whatever the peer still sends is discarded as it arrives (and STOP_SENDING
            # asks it to stop); the entry goes once its side of the stream has ended.
            st.unconsumed = 0
            self._forget(stream_id, st)

    def start_shutdown(self) -> None:
        """Queue GOAWAY (RFC 9114 §5.2) naming the first request stream we will not process;
        streams in flight continue, newer ones are rejected."""
        if self._goaway_at is not None or self.terminated:
            return
        self._goaway_at = self._highest_stream + 4
        if self._h3 is not None:
            send_goaway(self._quic, self._h3, self._goaway_at)

    def close(self, error_code: int = H3_NO_ERROR, reason: str = "") -> None:
        """Queue CONNECTION_CLOSE; :class:`ConnectionTerminated` follows after the closing
        period (RFC 9000 §10.2)."""
        if not self.terminated:
            self._closed_by_us = True
            self._quic.close(error_code=error_code, reason_phrase=reason)

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called or the connection ended."""
        return self._closed_by_us or self.terminated

    def responses_acknowledged(self) -> bool:
        """True when no request stream holds response bytes (or a FIN) the peer has not
        acknowledged: closing now loses nothing."""
        return responses_acknowledged(self._quic)

    def statistics(self) -> dict[str, int]:
        """Streams tracked and active, and body bytes buffered for the application."""
        return {
            "streams_tracked": len(self._streams),
            "streams_active": len(self.active),
            "buffered_bytes": sum(st.unconsumed for st in self._streams.values()),
        }
