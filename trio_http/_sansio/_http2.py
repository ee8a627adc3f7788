"""The server side of HTTP/2 (RFC 9113) over h2, in the shared event vocabulary.

h2 frames, validates and keeps the stream state machines; this layer adds the server's policy:

* the concurrent-stream limit is enforced per stream: a stream past it is refused with
  RST_STREAM(REFUSED_STREAM) and the rest of the connection carries on (RFC 9113 §5.1.2;
  h2 itself would end the whole connection). A stream counts against the limit until the I/O
  layer says its application task is finished (:meth:`H2Connection.stream_done`), even if the
  peer or we reset it (MadeYouReset, CVE-2025-8671);
* receive-window credit is returned only when the application consumes the body
  (:meth:`H2Connection.acknowledge_data`), so each stream buffers at most its window. The
  connection window is opened to ``max_concurrent_streams * initial_window_size`` so one stream
  that never reads cannot stall the others;
* graceful shutdown sends GOAWAY with the last stream processed while letting streams in
  flight finish (h2's own GOAWAY closes its state machine at once), then refuses newer streams;
* a reset budget ends the connection with ENHANCE_YOUR_CALM: resets by the peer (rapid reset,
  CVE-2023-44487) and resets we send because of the peer (stream errors h2 detects, streams
  refused past the limit or for their size: MadeYouReset, CVE-2025-8671), beyond the number of
  streams completed;
* a control-frame budget, counted by a frame-header scanner in front of h2 so a flood is refused
  before h2 answers it: PING, SETTINGS, PRIORITY, RST_STREAM, GOAWAY, unknown frames and empty
  DATA/HEADERS/CONTINUATION per 10-second window (CVE-2019-9512, -9515, -9518), ending in
  GOAWAY(ENHANCE_YOUR_CALM);
* header blocks are bounded in bytes (CONTINUATION floods, CVE-2024-27316) and their start time
  is exposed (:attr:`H2Connection.header_block_started`) so the I/O layer can bound it in time;
* request limits: header field count (431), method + ``:path`` length (414), body size (413 from
  ``content-length``, or 413 / RST_STREAM once a streamed body crosses it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
from hyperframe.frame import GoAwayFrame

from .._errors import ProtocolError
from ._events import (
    ConnectionTerminated,
    Data,
    EndOfMessage,
    Event,
    Headers,
    Request,
    StreamClosed,
    StreamReset,
    WindowUpdated,
)
from ._fields import NOT_IN_RESPONSES, check_field, response_fields
from ._h2_fields import MalformedFields, check_trailer_fields, parse_request_fields
from ._h2_frames import FLOOD_WINDOW, FrameScanner
from ._limits import ServerNames, refusal_status

__all__ = ["FLOOD_WINDOW", "H2Connection", "StreamClosed"]


_SC = h2.settings.SettingCodes
PROTOCOL_ERROR = h2.errors.ErrorCodes.PROTOCOL_ERROR
REFUSED_STREAM = h2.errors.ErrorCodes.REFUSED_STREAM
ENHANCE_YOUR_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
FRAME_SIZE_ERROR = h2.errors.ErrorCodes.FRAME_SIZE_ERROR
NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
INTERNAL_ERROR = h2.errors.ErrorCodes.INTERNAL_ERROR
CANCEL = h2.errors.ErrorCodes.CANCEL

_STATUS = {s: str(s).encode() for s in range(100, 600)}
#: The opaque data of our keepalive PINGs, so their ACKs are told from the peer's own.
_PING_DATA = b"trio_htp"


class H2Connection:
    """One HTTP/2 server connection.

    Call :meth:`initiate` (or :meth:`initiate_upgrade` after ``Upgrade: h2c``) first, then feed
    bytes to :meth:`receive_data`, which returns events and never raises for peer input: a
    connection error becomes :class:`ConnectionTerminated` with GOAWAY queued. Write what
    :meth:`data_to_send` returns.

    ``max_concurrent_streams`` (streams), ``initial_window_size`` (bytes),
    ``max_frame_size`` (bytes) and ``max_header_list_size`` (bytes) are advertised in SETTINGS
    (RFC 9113 §6.5.2). ``reset_budget`` is how many resets of streams whose response was
    not complete (by the peer, or by us because of the peer) are tolerated beyond the number
    of completed streams; ``control_frame_budget`` how many frames without request work per
    :data:`FLOOD_WINDOW` seconds. Both end the connection with GOAWAY(ENHANCE_YOUR_CALM).
    ``max_request_header_count`` (fields, 431), ``max_request_line_size`` (bytes of method and
    ``:path``, 414), ``max_request_body_size`` (bytes or ``None``, 413) and ``server_names``
    (421 for other hosts; ``None``: any) refuse one stream. Time comes in as ``now``
    (seconds, any monotonic origin) to :meth:`receive_data`.
    """

    def __init__(
        self,
        *,
        max_concurrent_streams: int = 100,
        initial_window_size: int = 65535,
        max_frame_size: int = 16384,
        max_header_list_size: int = 65536,
        enable_connect_protocol: bool = True,
        reset_budget: int = 200,
        control_frame_budget: int = 1000,
        max_request_header_count: int = 100,
        max_request_line_size: int = 8192,
        max_request_body_size: int | None = None,
        server_names: ServerNames | None = None,
    ) -> None:
        # h2's field checks are off both ways: outbound fields are checked once by
        # check_field() (h2's checks cost a fifth of a small response), inbound ones (and
        # split cookies joined) in one pass by _h2_fields.py, with h2's rules (CVE-2025-57804
        # included) at an eighth of the cost.
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None,
            validate_inbound_headers=False, normalize_inbound_headers=False,
            validate_outbound_headers=False, normalize_outbound_headers=False,
        )
        self._h2 = h2.connection.H2Connection(config=config)
        self._settings = {
            _SC.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
            _SC.INITIAL_WINDOW_SIZE: initial_window_size,
            _SC.MAX_FRAME_SIZE: max_frame_size,
            _SC.MAX_HEADER_LIST_SIZE: max_header_list_size,
            _SC.ENABLE_PUSH: 0,
        }
        if enable_connect_protocol:
            self._settings[_SC.ENABLE_CONNECT_PROTOCOL] = 1
        self._h2.local_settings = h2.settings.Settings(client=False, initial_values=self._settings)
        self.max_concurrent_streams = max_concurrent_streams
        self._window = initial_window_size
        #: Streams whose application task has not finished (counted against the limit).
        self.active: set[int] = set()
        self._trailers: dict[int, Headers] = {}
        self._prefix = b""
        self._goaway_sent_at: int | None = None
        self._highest_stream = 0
        self._resets = 0
        self._completed = 0
        self._reset_budget = reset_budget
        self.terminated = False
        #: A keepalive PING of ours awaits its ACK (:meth:`send_ping`).
        self.ping_outstanding = False
        self._peer_settings_seen = False
        self._max_fields = max_request_header_count
        self._max_line = max_request_line_size
        self._max_body = max_request_body_size
        self._server_names = server_names
        self._body: dict[int, int] = {}  # body bytes per stream, when _max_body is set
        # Counts and times frames before h2 parses them (see FrameScanner); batch HEADERS
        # frames handed to h2 at once so it never holds more streams open than we can refuse.
        self._scanner = FrameScanner(
            control_frame_budget=control_frame_budget,
            max_header_block_size=max_header_list_size + max_frame_size,
            headers_batch=max(1, max_concurrent_streams // 2),
        )

    # --- set-up ------------------------------------------------------------------------
    def _after_initiate(self) -> None:
        # h2 enforces local MAX_CONCURRENT_STREAMS by ending the connection; we enforce it
        # per stream in _on_request. Past the preface, its own cap only needs to be loose.
        loose = dict(self._settings)
        loose[_SC.MAX_CONCURRENT_STREAMS] = 2 * self.max_concurrent_streams + 16
        self._h2.local_settings = h2.settings.Settings(client=False, initial_values=loose)
        extra = self.max_concurrent_streams * self._window - 65535
        if extra > 0:
            self._h2.increment_flow_control_window(min(extra, 2**31 - 1 - 65535))

    def initiate(self) -> None:
        """Queue the server connection preface (SETTINGS, RFC 9113 §3.4)."""
        self._h2.initiate_connection()
        self._after_initiate()

    def initiate_upgrade(self, settings_header: bytes, request: Request) -> None:
        """Take over after ``101 Switching Protocols`` (RFC 7540 §3.2): apply the client's
        ``HTTP2-Settings`` and adopt ``request`` as stream 1, half-closed (remote). Raises
        :class:`ProtocolError` for a malformed settings header."""
        try:
            self._h2.initiate_upgrade_connection(settings_header)
        except Exception as exc:  # base64 or frame errors from h2/hyperframe
            raise ProtocolError(f"bad HTTP2-Settings: {exc}") from None
        self._after_initiate()
        self.active.add(1)
        self._highest_stream = 1

    # --- input -------------------------------------------------------------------------
    @property
    def header_block_started(self) -> float | None:
        """``now`` when the header block being received began (HEADERS seen, its END_HEADERS
        frame not yet complete), or ``None``: for a deadline on slow header blocks."""
        return self._scanner.block_since

    @property
    def pending_output(self) -> int:
        """Bytes queued for the peer and not yet taken by :meth:`data_to_send`."""
        return len(self._prefix) + len(self._h2._data_to_send)

    def _over_reset_budget(self) -> bool:
        return self._resets > self._completed + self._reset_budget

    def receive_data(self, data: bytes, now: float = 0.0) -> list[Event]:
        """Process bytes from the peer; return the events they carry. ``now`` is the current
        time in seconds (for the control-frame window and header-block timing)."""
        if self.terminated:
            return []
        flood = self._scanner.scan(data, now)
        if flood is not None:
            # Refused before h2 processes (and answers) any of it.
            return [self._terminate(ENHANCE_YOUR_CALM, flood)]
        cuts = self._scanner.cuts
        if not cuts:
            return self._process(data)
        # Many requests in one read: hand them to h2 a batch at a time, so that the streams it
        # holds open before we can refuse any stay under its own (loose) limit.
        out: list[Event] = []
        last = 0
        for cut in [*cuts, len(data)]:
            out += self._process(data[last:cut])
            last = cut
            if self.terminated:
                break
        return out

    def _process(self, data: bytes) -> list[Event]:
        try:
            h2_events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            return [self._terminate(getattr(exc, "error_code", PROTOCOL_ERROR), str(exc))]
        except Exception as exc:  # hpack/hyperframe decoding errors surface as plain errors
            return [self._terminate(PROTOCOL_ERROR, f"{type(exc).__name__}: {exc}")]
        if not self._peer_settings_seen and h2_events:
            # RFC 9113 §3.4: the client preface ends with a SETTINGS frame; h2 does not check.
            if type(h2_events[0]) is not h2.events.RemoteSettingsChanged:
                return [self._terminate(PROTOCOL_ERROR, "preface not followed by SETTINGS")]
            self._peer_settings_seen = True
        out: list[Event] = []
        ev: Any  # h2's event classes share no typed base with these attributes
        for ev in h2_events:
            t = type(ev)
            if t is h2.events.DataReceived:
                sid = ev.stream_id
                if sid in self.active:
                    if not ev.data and ev.stream_ended is None:
                        self._scanner.flood += 1  # padding only: no work either
                    if self._max_body is not None and self._body_too_large(sid, len(ev.data)):
                        self._ack(sid, ev.flow_controlled_length)
                        out.append(StreamReset(sid, CANCEL))
                        if self._over_reset_budget():
                            out.append(self._terminate(ENHANCE_YOUR_CALM, "too many resets"))
                            break
                        continue
                    out.append(Data(sid, ev.data, ev.flow_controlled_length, False))
                else:
                    # Nobody will read it: return the credit now.
                    self._ack(sid, ev.flow_controlled_length)
            elif t is h2.events.RequestReceived:
                req = self._on_request(ev)
                if req is not None:
                    out.append(req)
                elif self._over_reset_budget():
                    out.append(self._terminate(ENHANCE_YOUR_CALM, "too many refused streams"))
                    break
            elif t is h2.events.StreamEnded:
                if ev.stream_id in self.active:
                    out.append(EndOfMessage(ev.stream_id, self._trailers.pop(ev.stream_id, [])))
            elif t is h2.events.WindowUpdated:
                out.append(WindowUpdated(ev.stream_id))
            elif t is h2.events.StreamReset:
                if ev.stream_id in self.active:
                    # A client refusing a push (even stream) is not abuse: it did not ask.
                    self._resets += ev.stream_id & 1
                    out.append(StreamReset(ev.stream_id, ev.error_code))
                    if self._over_reset_budget():
                        out.append(self._terminate(ENHANCE_YOUR_CALM, "too many stream resets"))
                        break
            elif t is h2.events.TrailersReceived:
                try:
                    check_trailer_fields(ev.headers)
                except MalformedFields:
                    self.reset_stream(ev.stream_id, PROTOCOL_ERROR)
                    if ev.stream_id in self.active:
                        self._resets += 1
                        out.append(StreamReset(ev.stream_id, PROTOCOL_ERROR))
                        if self._over_reset_budget():
                            out.append(self._terminate(ENHANCE_YOUR_CALM, "too many resets"))
                            break
                    continue
                self._trailers[ev.stream_id] = list(ev.headers)
            elif t is h2.events.PingAckReceived:
                if ev.ping_data == _PING_DATA and self.ping_outstanding:
                    self.ping_outstanding = False
                    self._scanner.flood -= 1  # an answer we asked for is no flood
            elif t is h2.events.RemoteSettingsChanged:
                changed = ev.changed_settings
                if _SC.INITIAL_WINDOW_SIZE in changed or _SC.MAX_FRAME_SIZE in changed:
                    out.append(WindowUpdated(0))
            elif t is h2.events.ConnectionTerminated:
                out.append(ConnectionTerminated(
                    ev.error_code or 0, ev.last_stream_id, by_peer=True, reason="GOAWAY"
                ))
        if self._scanner.over_budget and not self.terminated:
            out.append(self._terminate(ENHANCE_YOUR_CALM, "too many empty frames"))
        # h2 checks a frame's length only once the whole frame is buffered, so a header
        # announcing 16 MiB would be buffered first: refuse it from the header (§4.2).
        pending = getattr(self._h2.incoming_buffer, "_data", b"")
        if (
            len(pending) >= 9 and not self.terminated
            and int.from_bytes(pending[:3], "big") > self._h2.max_inbound_frame_size
        ):
            out.append(self._terminate(FRAME_SIZE_ERROR, "frame larger than max frame size"))
        return out

    def receive_eof(self) -> list[Event]:
        """The peer closed the TCP connection."""
        self.terminated = True
        return [ConnectionTerminated(0, None, by_peer=True, reason="peer closed the connection")]

    def _terminate(self, error_code: int, reason: str) -> ConnectionTerminated:
        self.terminated = True
        pending = self._h2.data_to_send()
        if self._h2.state_machine.state is not h2.connection.ConnectionState.CLOSED:
            # h2 did not queue a GOAWAY (a bad preface, a decoding error): queue our own.
            frame = GoAwayFrame(0)
            frame.last_stream_id = self._highest_stream
            frame.error_code = error_code
            pending += frame.serialize()
        self._prefix += pending
        return ConnectionTerminated(error_code, self._highest_stream, by_peer=False, reason=reason)

    def _on_request(self, ev: Any) -> Request | None:
        sid = ev.stream_id
        self._highest_stream = max(self._highest_stream, sid)
        if self._goaway_sent_at is not None and sid > self._goaway_sent_at:
            self.reset_stream(sid, REFUSED_STREAM)
            return None
        if len(self.active) >= self.max_concurrent_streams:
            # Counted: a client that ignores our SETTINGS gets its streams refused for free.
            self._resets += 1
            self.reset_stream(sid, REFUSED_STREAM)
            return None
        try:
            head = parse_request_fields(ev.headers)
        except MalformedFields:
            # A stream error, not a connection error (RFC 9113 §8.1.1); counted like any
            # stream that does no work.
            self._resets += 1
            self.reset_stream(sid, PROTOCOL_ERROR)
            return None
        method, target, authority = head.method, head.target, head.authority
        scheme, protocol, headers = head.scheme, head.protocol, head.headers
        if method == b"CONNECT" and protocol is None:
            self.reset_stream(sid, PROTOCOL_ERROR)
            return None
        ended = ev.stream_ended is not None
        status = refusal_status(
            method, target, headers,
            max_fields=self._max_fields, max_line=self._max_line, max_body=self._max_body,
            server_names=self._server_names, authority=authority,
        )
        if status:
            self._resets += 1  # a stream that does no work, at the peer's choice
            self._answer_early(sid, status, request_ended=ended)
            return None
        if self._max_body is not None:
            self._body[sid] = 0
        self.active.add(sid)
        return Request(
            stream_id=sid,
            method=method,
            target=target or b"/",
            headers=headers,
            http_version="2",
            scheme=scheme,
            authority=authority,
            protocol=protocol,
            end_stream=ended,
        )

    def _answer_early(self, stream_id: int, status: int, *, request_ended: bool) -> None:
        # A complete bodiless response before the request is over, then RST_STREAM(NO_ERROR)
        # so the client stops sending the body (RFC 9113 §8.1).
        try:
            self._h2.send_headers(
                stream_id, [(b":status", _STATUS[status]), (b"content-length", b"0")],
                end_stream=True,
            )
            if not request_ended:
                self._h2.reset_stream(stream_id, NO_ERROR)
        except h2.exceptions.ProtocolError:
            self.reset_stream(stream_id, CANCEL)

    def _body_too_large(self, stream_id: int, n: int) -> bool:
        total = self._body.get(stream_id, 0) + n
        self._body[stream_id] = total
        assert self._max_body is not None
        if total <= self._max_body:
            return False
        self._resets += 1
        self.abort_request(stream_id, 413)
        return True

    def abort_request(self, stream_id: int, status: int) -> None:
        """End ``stream_id`` early from our side: a bodiless ``status`` response (408, 413...)
        if none has started, with RST_STREAM(NO_ERROR) if the request is still arriving;
        RST_STREAM(CANCEL) if a response had started. Does nothing on a closed stream."""
        stream = self._h2.streams.get(stream_id)
        if stream is None or stream.closed or self.terminated:
            return
        if stream.state_machine.headers_sent:
            self.reset_stream(stream_id, CANCEL)
        else:
            self._answer_early(
                stream_id, status, request_ended=stream.state_machine.state
                is h2.stream.StreamState.HALF_CLOSED_REMOTE,
            )

    # --- flow control ------------------------------------------------------------------
    def _ack(self, stream_id: int, n: int) -> None:
        if n and not self.terminated:
            try:
                self._h2.acknowledge_received_data(n, stream_id)
            except h2.exceptions.ProtocolError:
                pass

    def acknowledge_data(self, stream_id: int, n: int) -> None:
        """The application consumed ``n`` flow-controlled bytes of ``stream_id``: return the
        credit (WINDOW_UPDATE, RFC 9113 §6.9)."""
        self._ack(stream_id, n)

    def send_window(self, stream_id: int) -> int:
        """Bytes ``stream_id`` may send now (the lesser of its and the connection's window).
        Raises :class:`StreamClosed` when the stream cannot send."""
        try:
            return int(self._h2.local_flow_control_window(stream_id))
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            raise StreamClosed(stream_id) from None

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
        (RFC 9113 §8.2.2). Raises :class:`StreamClosed` if the stream was reset,
        :class:`ValueError` (or :class:`TypeError`) for fields that are not valid (an
        application error)."""
        block = [(b":status", _STATUS.get(status) or str(status).encode())]
        response_fields(block, headers, defaults, NOT_IN_RESPONSES)
        try:
            self._h2.send_headers(stream_id, block, end_stream=end_stream)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            raise StreamClosed(stream_id) from None
        except h2.exceptions.ProtocolError as exc:
            if self._closed_on_our_side(stream_id):
                raise StreamClosed(stream_id) from None
            raise ValueError(f"invalid response headers: {exc}") from None

    def _closed_on_our_side(self, stream_id: int) -> bool:
        # h2 closes its whole state machine on a GOAWAY from the peer, after which nothing can
        # be sent on any stream: for the app that is a disconnect, not an error of its own.
        if self.terminated or self._h2.state_machine.state is h2.connection.ConnectionState.CLOSED:
            return True
        stream = self._h2.streams.get(stream_id)
        return stream is None or stream.closed

    def send_data(
        self, stream_id: int, data: bytes | memoryview, *, end_stream: bool = False
    ) -> int:
        """Queue as much of ``data`` as the send windows allow, in frames of at most the peer's
        SETTINGS_MAX_FRAME_SIZE; end the stream when all of it went and ``end_stream``.
        Returns the number of bytes queued (0 when the window is shut).
        Raises :class:`StreamClosed`."""
        window = self.send_window(stream_id)
        total = len(data)
        n = min(window, total)
        frame = self._h2.max_outbound_frame_size
        sent = 0
        try:
            while sent < n:
                size = min(frame, n - sent)
                last = end_stream and sent + size == total
                self._h2.send_data(stream_id, bytes(data[sent : sent + size]), end_stream=last)
                sent += size
            if end_stream and total == 0:
                self._h2.end_stream(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            raise StreamClosed(stream_id) from None
        return sent

    def end_stream(self, stream_id: int, trailers: Headers | None = None) -> None:
        """Queue END_STREAM (on a trailers HEADERS frame when ``trailers``). Raises
        :class:`StreamClosed`."""
        try:
            if trailers:
                for name, value in trailers:
                    check_field(name, value)
                self._h2.send_headers(stream_id, trailers, end_stream=True)
            else:
                self._h2.end_stream(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            raise StreamClosed(stream_id) from None

    def push(
        self, stream_id: int, path: bytes, headers: Headers, *, authority: bytes, scheme: str
    ) -> Request | None:
        """Promise a GET of ``path`` on ``stream_id`` (PUSH_PROMISE, RFC 9113 §8.4) and return
        the request to serve on the promised stream, which then counts as active; ``None``
        (nothing sent) when the client disabled pushes (SETTINGS_ENABLE_PUSH), has no room
        for another stream of ours, or the stream or connection is closing. Raises
        :class:`ValueError` for an invalid field."""
        h = self._h2
        if (self.terminated or self._goaway_sent_at is not None or not stream_id & 1
                or not h.remote_settings.enable_push
                or h.open_outbound_streams >= h.remote_settings.max_concurrent_streams
                or len(self.active) >= self.max_concurrent_streams):
            return None
        block = [(b":method", b"GET"), (b":scheme", scheme.encode("ascii")),
                 (b":authority", authority), (b":path", path)]
        for name, value in headers:
            check_field(name, value)
            block.append((name, value))
        try:
            promised = h.get_next_available_stream_id()
            h.push_stream(stream_id, promised, block)
        except h2.exceptions.ProtocolError:
            return None
        self.active.add(promised)
        return Request(
            stream_id=promised, method=b"GET", target=path,
            headers=[(b"host", authority), *headers], http_version="2", scheme=scheme,
            authority=authority, end_stream=True,
        )

    def reset_stream(self, stream_id: int, error_code: int = CANCEL) -> None:
        """Queue RST_STREAM for ``stream_id`` if it is still open (RFC 9113 §6.4)."""
        stream = self._h2.streams.get(stream_id)
        if stream is not None and not stream.closed and not self.terminated:
            try:
                self._h2.reset_stream(stream_id, error_code)
            except h2.exceptions.ProtocolError:
                pass

    def refuse_stream(self, stream_id: int) -> None:
        """Refuse a stream the I/O layer will not serve (after GOAWAY): RST_STREAM
        REFUSED_STREAM tells the client it was not processed and may be retried
        (RFC 9113 §8.7)."""
        self.active.discard(stream_id)
        self.reset_stream(stream_id, REFUSED_STREAM)

    def stream_done(self, stream_id: int, *, completed: bool) -> None:
        """The application task of ``stream_id`` has finished: the stream stops counting against
        the concurrency limit. If the request body is still arriving it is reset with NO_ERROR
        (RFC 9113 §8.1); an incomplete response gets INTERNAL_ERROR."""
        self.active.discard(stream_id)
        self._trailers.pop(stream_id, None)
        self._body.pop(stream_id, None)
        if completed:
            self._completed += 1
        stream = self._h2.streams.get(stream_id)
        if stream is None or stream.closed or self.terminated:
            return
        self.reset_stream(stream_id, NO_ERROR if completed else INTERNAL_ERROR)

    def send_ping(self) -> None:
        """Queue a keepalive PING (RFC 9113 §6.7); :attr:`ping_outstanding` is true until
        the peer's ACK arrives. Nothing is queued while one is outstanding or once the
        connection is over."""
        if self.ping_outstanding or self.terminated:
            return
        try:
            self._h2.ping(_PING_DATA)
        except h2.exceptions.ProtocolError:  # h2 already closed its side
            return
        self.ping_outstanding = True

    def start_shutdown(self) -> None:
        """Queue GOAWAY(NO_ERROR) naming the last stream we will process; streams in flight
        continue, newer ones are refused (RFC 9113 §6.8)."""
        if self._goaway_sent_at is not None or self.terminated:
            return
        self._goaway_sent_at = self._highest_stream
        frame = GoAwayFrame(0)
        frame.last_stream_id = self._highest_stream
        frame.error_code = NO_ERROR
        self._prefix += self._h2.data_to_send() + frame.serialize()

    def close(self, error_code: int = NO_ERROR) -> None:
        """Queue the final GOAWAY; nothing more is processed."""
        if not self.terminated:
            self.terminated = True
            self._prefix += self._h2.data_to_send()
            try:
                self._h2.close_connection(error_code, last_stream_id=self._highest_stream)
            except h2.exceptions.ProtocolError:
                pass

    @property
    def shutting_down(self) -> bool:
        """True once GOAWAY was sent."""
        return self._goaway_sent_at is not None or self.terminated

    def data_to_send(self) -> bytes | bytearray:
        """Take the bytes queued for the peer (a buffer the caller now owns)."""
        h = self._h2
        # h2's own buffer rather than its data_to_send() copy, which would copy every
        # response body once more.
        data: bytes | bytearray = h._data_to_send
        h._data_to_send = bytearray()
        if self._prefix:
            data = self._prefix + data
            self._prefix = b""
        return data
