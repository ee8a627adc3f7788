"""The pure WebSocket layer (trio_http._sansio._websocket) on arbitrary input: it never raises
for what a peer sends, and how the bytes are split into reads does not change what it sees."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_http._sansio._websocket import (
    BUSY,
    CloseReceived,
    ConnectionLost,
    Message,
    PongReceived,
    ProtocolFailure,
    WebSocketProtocol,
    negotiate_deflate,
)

from .apps.ws_peers import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, frame


def run(chunks: list[bytes], *, deflate: bool = False, limit: int = 4096) -> list[Any]:
    extensions = negotiate_deflate(["permessage-deflate"])[1] if deflate else []
    proto = WebSocketProtocol(extensions, max_message_size=limit)
    events: list[Any] = []
    for chunk in [*chunks, None]:
        if chunk is None:
            proto.receive_eof()
        else:
            proto.receive_data(chunk)
        while (ev := proto.next_event()) is not None:
            if ev is not BUSY:
                events.append(ev)
        proto.data_to_send()
    return events


frames = st.builds(
    frame,
    st.sampled_from([OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, 3, 11]),
    st.binary(max_size=200),
    fin=st.booleans(),
    rsv=st.sampled_from([0, 0, 0, 1, 4]),
    masked=st.sampled_from([True, True, True, False]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, max_size=12), st.binary(max_size=64), st.booleans(), st.data())
def test_any_input_gives_events_never_exceptions(
    wire: list[bytes], junk: bytes, deflate: bool, data: st.DataObject
) -> None:
    raw = b"".join(wire) + junk
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    events = run(chunks, deflate=deflate)
    kinds = (Message, PongReceived, CloseReceived, ProtocolFailure, ConnectionLost)
    assert all(isinstance(e, kinds) for e in events)
    # Nothing follows the end of the connection.
    for i, e in enumerate(events):
        if isinstance(e, (CloseReceived, ProtocolFailure, ConnectionLost)):
            assert i == len(events) - 1
    # The split does not matter (but for the wording of a failure's reason, which may say at
    # which offset of the chunk a decoder failed).
    assert _codes(events) == _codes(run([raw], deflate=deflate))


def _codes(events: list[Any]) -> list[Any]:
    return [ProtocolFailure(e.code, "") if isinstance(e, ProtocolFailure) else e for e in events]


def test_ping_is_answered_and_close_echoed() -> None:
    proto = WebSocketProtocol([], max_message_size=100)
    proto.receive_data(frame(OP_PING, b"abc") + frame(OP_CLOSE, b"\x0f\xa0bye"))
    assert proto.next_event() == CloseReceived(4000, "bye")
    assert proto.data_to_send() == b"\x8a\x03abc" + b"\x88\x05\x0f\xa0bye"
    assert proto.finished and not proto.open


def test_budget_yields_during_a_flood() -> None:
    proto = WebSocketProtocol([], max_message_size=1 << 20)
    proto.receive_data(b"".join(frame(OP_TEXT if i == 0 else OP_CONT, b"x", fin=i == 999)
                                for i in range(1000)))
    seen = []
    while (ev := proto.next_event()) is not None:
        seen.append(ev)
    assert seen.count(BUSY) >= 3 and seen[-1] == Message("x" * 1000)
