"""The aioquic internals the HTTP/3 layer (:mod:`._http3`) depends on, in one place.

aioquic's public API lacks three things a server with visible backpressure needs:

* a receive window that follows consumption: aioquic raises a stream's MAX_STREAM_DATA as soon
  as the peer has *sent* half of it (``QuicConnection._write_stream_limits``), so
  :class:`ServerQuic` overrides that method for request streams and takes the limit from
  ``credit`` instead;
* a view of a stream's send buffer (bytes written and not yet acknowledged), and of what
  aioquic's HTTP/3 layer still holds unparsed for a stream;
* a way to send GOAWAY (RFC 9114 §5.2) on the HTTP/3 control stream;
* the negotiated TLS cipher suite (for the ASGI ``tls`` extension);
* a malformed request treated as a stream error: aioquic closes the whole connection with
  H3_MESSAGE_ERROR, where RFC 9114 §4.1.2 asks for a stream error (:class:`ServerH3`).

Everything here reads or writes attributes aioquic 1.x keeps private; :func:`_check` verifies
at import that the methods overridden exist, and this module is what to revisit when aioquic
changes. Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import Any

from aioquic.buffer import encode_uint_var
from aioquic.h3 import connection as h3c
from aioquic.quic.connection import MAX_STREAM_DATA_FRAME_CAPACITY, QuicConnection
from aioquic.quic.packet import QuicFrameType

__all__ = [
    "ServerH3",
    "ServerQuic",
    "h3_end_sending",
    "h3_pending",
    "responses_acknowledged",
    "send_goaway",
    "send_room",
    "tls_cipher_suite",
]


def _check() -> None:
    for name in ("_write_stream_limits", "_on_max_stream_data_delivery"):
        if not callable(getattr(QuicConnection, name, None)):  # pragma: no cover
            raise ImportError(f"trio_http needs aioquic 1.x: QuicConnection.{name} is missing")
    if not callable(getattr(h3c.H3Connection, "_handle_request_or_push_frame", None)):
        raise ImportError(  # pragma: no cover
            "trio_http needs aioquic 1.x: H3Connection._handle_request_or_push_frame is missing"
        )


_check()


_H3_MESSAGE_ERROR = int(h3c.ErrorCode.H3_MESSAGE_ERROR)


def _host_disagrees(fields: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request head carries several Host fields, or one that differs from
    ``:authority``: malformed (RFC 9114 §4.3.1), and a check aioquic does not make. Left
    alone, the app would read one host while routing and ``server_names`` used the other."""
    authority = host = None
    for name, value in fields:
        if name == b"host":
            if host is not None:
                return True
            host = value
        elif name == b":authority":
            authority = value
    return host is not None and authority is not None and host != authority


class ServerH3(h3c.H3Connection):
    """aioquic's HTTP/3 connection, with a malformed request head (aioquic's
    ``MessageError`` while it validates the first HEADERS frame of a request stream, or a Host
    field that disagrees with ``:authority``) made a stream error of type H3_MESSAGE_ERROR
    (RFC 9114 §4.1.2): the stream is reset and asked to stop, the rest of it is dropped, and
    the connection carries on. ``malformed`` counts them, for the reset budget. Errors after
    a request was accepted (a body that does not match its content-length...) stay
    connection errors, as aioquic makes them."""

    def __init__(self, quic: QuicConnection) -> None:
        super().__init__(quic)
        self.malformed = 0
        self._refused: set[int] = set()  # streams refused, until the peer ends or resets them

    def _handle_request_or_push_frame(
        self, frame_type: int, frame_data: bytes | None, stream: Any, stream_ended: bool
    ) -> list[Any]:
        sid = stream.stream_id
        if sid in self._refused:
            if stream_ended:
                self._refused.discard(sid)
            return []
        head = (frame_type == h3c.FrameType.HEADERS
                and stream.headers_recv_state == h3c.HeadersState.INITIAL)
        try:
            events: list[Any] = super()._handle_request_or_push_frame(
                frame_type, frame_data, stream, stream_ended
            )
        except h3c.MessageError:
            if not head:
                raise
            self._refuse_malformed(sid, stream_ended)
            return []
        if head and events and _host_disagrees(events[0].headers):
            self._refuse_malformed(sid, stream_ended)
            return []
        return events

    def _refuse_malformed(self, sid: int, stream_ended: bool) -> None:
        self.malformed += 1
        if not stream_ended:
            self._refused.add(sid)
        quic = self._quic
        quic.stop_stream(sid, _H3_MESSAGE_ERROR)
        quic.reset_stream(sid, _H3_MESSAGE_ERROR)

    def forget(self, stream_id: int) -> None:
        """The peer reset ``stream_id``: nothing more will come on it."""
        self._refused.discard(stream_id)


class ServerQuic(QuicConnection):
    """aioquic's server connection, with MAX_STREAM_DATA for request streams (client-initiated
    bidirectional) taken from ``credit`` (stream id -> highest offset the peer may send; never
    lowered) instead of aioquic's doubling, and MAX_STREAMS for them set to ``max_streams``."""

    def __init__(self, *, max_streams: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.credit: dict[int, int] = {}
        limit = self._local_max_streams_bidi
        limit.value = limit.sent = max_streams

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        sid = stream.stream_id
        if sid & 3:  # control, QPACK and other unidirectional streams: aioquic's rule
            super()._write_stream_limits(builder, space, stream)
            return
        target = self.credit.get(sid)
        if target is not None and target > stream.max_stream_data_local:
            stream.max_stream_data_local = target
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(sid)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local

    def receive_limit(self, stream_id: int) -> int | None:
        """The highest offset the peer may send on ``stream_id`` (announced or about to be),
        or ``None`` when aioquic no longer tracks the stream."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return None
        return max(self.credit.get(stream_id, 0), int(stream.max_stream_data_local))


def send_room(quic: QuicConnection, stream_id: int, capacity: int) -> int:
    """Bytes ``stream_id`` may still write while keeping at most ``capacity`` bytes
    unacknowledged, or -1 when it cannot send (unknown, reset, or FIN already written)."""
    stream = quic._streams.get(stream_id)
    if stream is None:
        return -1
    sender = stream.sender
    if sender.is_finished or sender._reset_error_code is not None or sender._buffer_fin is not None:
        return -1
    return max(0, capacity - len(sender._buffer))


def responses_acknowledged(quic: QuicConnection) -> bool:
    """True when no request stream holds written bytes (or a FIN) the peer has not
    acknowledged."""
    for sid, stream in quic._streams.items():
        if sid & 3:
            continue
        sender = stream.sender
        if sender.is_finished or sender._reset_error_code is not None:
            continue
        if sender._buffer or sender._buffer_fin is not None:
            return False
    return True


def h3_pending(h3: h3c.H3Connection, stream_id: int) -> tuple[int, bool] | None:
    """``(bytes held unparsed, blocked on QPACK)`` for ``stream_id`` in aioquic's HTTP/3
    layer, or ``None`` when it does not track the stream."""
    stream = h3._stream.get(stream_id)
    if stream is None:
        return None
    return len(stream.buffer), bool(stream.blocked)


def h3_end_sending(h3: h3c.H3Connection, stream_id: int) -> None:
    """We reset ``stream_id``: let aioquic's HTTP/3 layer forget it once both halves ended
    (it only does so by itself for streams it ended)."""
    stream = h3._stream.get(stream_id)
    if stream is not None:
        stream.sending_ended = True
        if stream.receiving_ended:
            h3._stream.pop(stream_id, None)


def send_goaway(quic: QuicConnection, h3: h3c.H3Connection, stream_id: int) -> None:
    """Queue GOAWAY(``stream_id``) on our HTTP/3 control stream."""
    control = h3._local_control_stream_id
    if control is None:
        return
    frame = h3c.encode_frame(h3c.FrameType.GOAWAY, encode_uint_var(stream_id))
    try:
        quic.send_stream_data(control, frame)
    except (ValueError, RuntimeError):
        pass


def tls_cipher_suite(quic: QuicConnection) -> int | None:
    """The IANA value of the TLS 1.3 cipher suite negotiated, or ``None`` before that."""
    schedule = getattr(getattr(quic, "tls", None), "key_schedule", None)
    suite = getattr(schedule, "cipher_suite", None)
    return int(suite) if suite is not None else None
