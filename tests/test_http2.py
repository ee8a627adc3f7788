"""HTTP/2 with a raw h2 client on a real socket: concurrency, flow control as backpressure,
resets, the stream limit, per-stream send windows, settings, and bad input."""

from __future__ import annotations

from typing import Any

import h2.errors
import h2.events
import h2.settings
import pytest
import trio
from hyperframe.frame import (
    DataFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from trio_http import Config
from trio_http._sansio._select import H2_PREFACE

from .apps.peers import (
    H1Client,
    H2Client,
    StreamState,
    connect,
    goaway_of,
    parse_frames,
    read_until,
    read_until_eof,
    receive_some,
)
from .conftest import echo_app

SC = h2.settings.SettingCodes
ERR = h2.errors.ErrorCodes


async def read_body(receive: Any) -> bytes:
    body = bytearray()
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise OSError("disconnected")
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return bytes(body)


async def respond(send: Any, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_many_concurrent_streams_run_at_once(start_server):
    n = 60
    arrived = 0
    all_in = trio.Event()

    async def app(scope, receive, send):
        nonlocal arrived
        if scope["type"] != "http":
            return
        arrived += 1
        if arrived == n:
            all_in.set()
        # Every stream waits for every other: only concurrent stream tasks get past this.
        await all_in.wait()
        await respond(send, scope["path"].encode())

    server = await start_server(app)
    client = await H2Client.open(server.port)
    sids = [await client.request("GET", f"/s{i}") for i in range(n)]
    with trio.fail_after(10):
        await client.wait_done(*sids)
    for i, sid in enumerate(sids):
        st = client.streams[sid]
        assert st.status == 200
        assert bytes(st.data) == f"/s{i}".encode()
        names = [n for n, _ in st.headers or ()]
        assert b"date" in names and b"server" in names
    assert server.statistics()["connections_total"] == 1
    await client.aclose()


async def test_default_settings_are_advertised(start_server):
    server = await start_server(echo_app)
    stream = await connect(server.port)
    await stream.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
    data = b""
    while len(data) < 9 or len(data) < 9 + int.from_bytes(data[:3], "big"):
        data += await stream.receive_some(65536)
    frame = parse_frames(data)[0]
    assert isinstance(frame, SettingsFrame)
    assert frame.settings[SC.MAX_CONCURRENT_STREAMS] == 100
    assert frame.settings.get(SC.INITIAL_WINDOW_SIZE, 65535) == 65535
    assert frame.settings.get(SC.MAX_FRAME_SIZE, 16384) == 16384
    assert frame.settings[SC.MAX_HEADER_LIST_SIZE] == 65536
    await stream.aclose()


async def test_settings_come_from_config(start_server):
    cfg = Config(h2_max_concurrent_streams=7, h2_initial_window_size=1000,
                 h2_max_frame_size=32768, h2_max_header_list_size=4096)
    server = await start_server(echo_app, config=cfg)
    client = await H2Client.open(server.port)
    with trio.fail_after(5):
        await client.wait(lambda: client.remote_settings_seen)
    rs = client.conn.remote_settings
    assert rs.max_concurrent_streams == 7
    assert rs.initial_window_size == 1000
    assert rs.max_frame_size == 32768
    assert rs.max_header_list_size == 4096
    # A body larger than the 1000-byte stream window still arrives: credit is returned as the
    # app consumes it.
    body = bytes(range(256)) * 40
    sid = await client.request("POST", "/", end_stream=False)
    with trio.fail_after(5):
        await client.send_body(sid, body)
        await client.wait_done(sid)
    assert bytes(client.streams[sid].data) == body
    await client.aclose()


async def test_unread_body_does_not_stall_other_streams_or_ping(start_server):
    stall_started = trio.Event()
    release = trio.Event()
    stall_got: list[bytes] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/stall":
            stall_started.set()
            await release.wait()  # never reads its body until released
            stall_got.append(await read_body(receive))
            await respond(send, b"stalled")
            return
        await respond(send, b"echo:" + await read_body(receive))

    server = await start_server(app)
    client = await H2Client.open(server.port)
    with trio.fail_after(5):
        await client.wait(lambda: client.remote_settings_seen)
    window = client.conn.remote_settings.initial_window_size
    assert window == 65535
    stall = await client.request("POST", "/stall", end_stream=False)
    # The whole stream window, never read by the app.
    await client.send_body(stall, b"x" * window, end_stream=False)
    with trio.fail_after(5):
        await stall_started.wait()
        others = [await client.request("POST", f"/o{i}", body=b"y" * 30000) for i in range(6)]
        await client.wait_done(*others)
        await client.ping(b"pingpong")
    for sid in others:
        assert bytes(client.streams[sid].data) == b"echo:" + b"y" * 30000
    # No credit came back for the unread body: the peer would be blocked on this stream.
    assert client.conn.local_flow_control_window(stall) == 0
    assert not client.streams[stall].done
    release.set()
    with trio.fail_after(5):
        await client.wait(lambda: client.conn.local_flow_control_window(stall) > 0)
        client.conn.send_data(stall, b"z", end_stream=True)
        await client.flush()
        await client.wait_done(stall)
    assert stall_got == [b"x" * window + b"z"]
    assert bytes(client.streams[stall].data) == b"stalled"
    await client.aclose()


async def test_large_body_both_ways(start_server):
    server = await start_server(echo_app)
    client = await H2Client.open(server.port)
    with trio.fail_after(5):
        await client.wait(lambda: client.remote_settings_seen)
    body = b"0123456789" * 50_000  # 500 kB: many times every window
    sid = await client.request("POST", "/", end_stream=False)
    with trio.fail_after(10):
        await client.send_body(sid, body)
        await client.wait_done(sid)
    assert bytes(client.streams[sid].data) == body
    await client.aclose()


async def test_peer_reset_cancels_only_that_stream(start_server):
    entered = trio.Event()
    cancelled = trio.Event()
    finished = trio.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/victim":
            try:
                entered.set()
                await trio.sleep_forever()
            except trio.Cancelled:
                cancelled.set()
                raise
            finally:
                finished.set()
        await respond(send, b"ok " + scope["path"].encode())

    server = await start_server(app)
    client = await H2Client.open(server.port)
    victim = await client.request("GET", "/victim")
    with trio.fail_after(5):
        await entered.wait()
    before = await client.request("GET", "/before")
    client.conn.reset_stream(victim, ERR.CANCEL)
    await client.flush()
    with trio.fail_after(5):
        await cancelled.wait()
        await finished.wait()
        after = await client.request("GET", "/after")
        await client.wait_done(before, after)
    assert bytes(client.streams[before].data) == b"ok /before"
    assert bytes(client.streams[after].data) == b"ok /after"
    assert server.statistics()["streams_open"] == 0
    await client.aclose()


async def test_reset_stream_receive_gives_disconnect(start_server):
    got: list[str] = []
    done = trio.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            with trio.CancelScope(shield=True):
                # Shielded so that the app sees what receive() reports after the reset.
                while True:
                    msg = await receive()
                    got.append(msg["type"])
                    if msg["type"] == "http.disconnect":
                        break
        finally:
            done.set()

    server = await start_server(app)
    client = await H2Client.open(server.port)
    sid = await client.request("POST", "/", body=b"part", end_stream=False)
    with trio.fail_after(5):
        await client.wait(lambda: client.remote_settings_seen)
        await trio.testing.wait_all_tasks_blocked()
        client.conn.reset_stream(sid, ERR.CANCEL)
        await client.flush()
        await done.wait()
    assert got == ["http.request", "http.disconnect"]
    await client.aclose()


async def test_streams_beyond_limit_are_refused(start_server):
    release = trio.Event()
    running = 0

    async def app(scope, receive, send):
        nonlocal running
        if scope["type"] != "http":
            return
        running += 1
        await release.wait()
        await respond(send, scope["path"].encode())

    server = await start_server(app, config=Config(h2_max_concurrent_streams=2))
    client = await H2Client.open(server.port)
    # Sent before the server's SETTINGS is read, as a racing client would: h2 would otherwise
    # refuse to open the third stream itself.
    a = await client.request("GET", "/a")
    b = await client.request("GET", "/b")
    c = await client.request("GET", "/c")
    with trio.fail_after(5):
        await client.wait(lambda: client.streams[c].done)
    assert client.streams[c].reset == ERR.REFUSED_STREAM
    assert not client.streams[a].done and not client.streams[b].done
    assert running == 2
    release.set()
    with trio.fail_after(5):
        await client.wait_done(a, b)
        assert bytes(client.streams[a].data) == b"/a"
        assert bytes(client.streams[b].data) == b"/b"
        # The slots are free again.
        d = await client.request("GET", "/d")
        await client.wait_done(d)
    assert bytes(client.streams[d].data) == b"/d"
    assert client.goaway is None
    await client.aclose()


async def test_response_waits_only_on_its_own_stream_window(start_server):
    size = 50_000

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await respond(send, scope["path"].encode() * (size // len(scope["path"])))

    server = await start_server(app)
    # A tiny initial window for every stream; the test opens one stream wide by hand.
    client = await H2Client.open(server.port, settings={SC.INITIAL_WINDOW_SIZE: 100,
                                                        SC.ENABLE_PUSH: 0})
    client.conn.increment_flow_control_window(10_000_000)
    await client.flush()
    slow = await client.request("GET", "/slow")
    client.hold_credit.add(slow)
    with trio.fail_after(5):
        await client.wait(lambda: len(client.streams[slow].data) == 100)
        fast = await client.request("GET", "/fast")
        client.conn.increment_flow_control_window(1_000_000, stream_id=fast)
        await client.flush()
        await client.wait_done(fast)
    assert len(client.streams[fast].data) == size
    assert len(client.streams[slow].data) == 100
    assert not client.streams[slow].done
    client.conn.increment_flow_control_window(1_000_000, stream_id=slow)
    await client.flush()
    with trio.fail_after(5):
        await client.wait_done(slow)
    assert len(client.streams[slow].data) == size
    await client.aclose()


async def test_app_exception_is_500_then_reset_after_start(start_server):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/late":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("boom")

    server = await start_server(app)
    client = await H2Client.open(server.port)
    early = await client.request("GET", "/early")
    late = await client.request("GET", "/late")
    with trio.fail_after(5):
        await client.wait_done(early, late)
        ok = await client.request("GET", "/early")
        await client.wait_done(ok)
    assert client.streams[early].status == 500
    assert client.streams[early].ended
    assert client.streams[late].status == 200
    assert bytes(client.streams[late].data) == b"part"
    assert client.streams[late].reset == ERR.INTERNAL_ERROR
    assert client.streams[ok].status == 500  # the connection is still serving
    assert server.statistics()["app_errors"] == 3
    await client.aclose()


async def test_idle_connection_gets_goaway(start_server, autojump_clock):
    server = await start_server(echo_app, config=Config(keep_alive_timeout=4))
    client = await H2Client.open(server.port)
    start = trio.current_time()
    with trio.fail_after(30):
        await client.drain_until_closed()
    assert client.goaway is not None
    assert client.goaway.error_code == ERR.NO_ERROR
    assert 4 <= trio.current_time() - start < 4.5


async def test_connection_specific_response_fields_are_left_out(start_server):
    # Malformed in HTTP/2 (RFC 9113 §8.2.2), whatever case the app used; te too, which only
    # a request may carry.
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"Connection", b"keep-alive"), (b"keep-alive", b"timeout=5"), (b"TE", b"x"),
                (b"upgrade", b"h2c"), (b"proxy-connection", b"close"), (b"x-ok", b"1")]})
            await send({"type": "http.response.body", "body": b"ok"})

    server = await start_server(app)
    with trio.fail_after(10):
        client = await H2Client.open(server.port)
        sid = await client.request()
        await client.wait_done(sid)
        await client.aclose()
    names = [n for n, _ in client.streams[sid].headers or ()]
    assert b"x-ok" in names
    assert not {b"connection", b"keep-alive", b"te", b"upgrade", b"proxy-connection"} & set(names)


def long_poll_app(disconnected: list[float]) -> Any:
    """Starts a response, then waits for the client to go (a long-poll, or server-sent events
    with nothing to send yet); notes when it learnt of the disconnect."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.append(trio.current_time())
    return app


@pytest.mark.parametrize("interval", [None, 10])
async def test_keepalive_pings_are_answered_and_the_stream_lives_on(start_server,
                                                                    autojump_clock, interval):
    disconnected: list[float] = []
    config = Config(h2_ping_interval=interval, h2_ping_timeout=5)
    server = await start_server(long_poll_app(disconnected), config=config)
    client = await H2Client.open(server.port)
    sid = await client.request()
    with trio.move_on_after(105):
        await client.drain_until_closed()  # h2 answers each PING with its ACK
    pings = [ev for ev in client.events if isinstance(ev, h2.events.PingReceived)]
    assert len(pings) == (0 if interval is None else 10)  # at 10, 20, ... 100 s
    assert not client.closed and client.streams[sid].data == b"waiting"
    assert not client.streams[sid].done and disconnected == []
    await client.aclose()


async def test_keepalive_ping_unanswered_drops_the_connection(start_server, autojump_clock):
    disconnected: list[float] = []
    config = Config(h2_ping_interval=10, h2_ping_timeout=5)
    server = await start_server(long_poll_app(disconnected), config=config)
    client = await H2Client.open(server.port)
    start = trio.current_time()
    await client.request()
    with trio.fail_after(60):
        await client.wait(lambda: client.remote_settings_seen)
        while not disconnected:  # noqa: ASYNC110  (virtual time; the client reads nothing)
            await trio.sleep(1)
        data = await read_until_eof(client.stream)  # the server closed the connection
    assert 15 <= disconnected[0] - start < 16  # a PING at 10 s, 5 s for its ACK
    assert parse_frames(data)[-1].type == 0x6 and "ACK" not in parse_frames(data)[-1].flags


# --- bad input ---------------------------------------------------------------------------


async def good_client_check(port: int, h1: H1Client) -> None:
    r = await h1.request("POST", "/", body=b"still fine")
    assert r.body == b"still fine"


async def test_garbage_preface_gets_goaway_protocol_error(start_server):
    server = await start_server(echo_app)
    good = await H1Client.open(server.port)
    await good_client_check(server.port, good)
    stream = await connect(server.port)
    await stream.send_all(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    with trio.fail_after(5):
        data = await read_until_eof(stream)
    assert b"HTTP/1.1" not in data
    goaway = goaway_of(parse_frames(data))
    assert goaway is not None
    assert goaway.error_code == ERR.PROTOCOL_ERROR
    await good_client_check(server.port, good)
    await good.aclose()


@pytest.mark.parametrize("garbage", [
    pytest.param(b"\x00" * 30, id="zeros"),
    pytest.param(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x01", id="wu-before-settings"),
    pytest.param(b"\xff" * 40, id="huge-frame"),
])
async def test_garbage_after_good_preface_gets_goaway(start_server, garbage):
    server = await start_server(echo_app)
    good = await H2Client.open(server.port)
    stream = await connect(server.port)
    await stream.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + garbage)
    with trio.fail_after(5):
        data = await read_until_eof(stream)
    goaway = goaway_of(parse_frames(data))
    assert goaway is not None
    assert goaway.error_code != ERR.NO_ERROR
    with trio.fail_after(5):
        sid = await good.request("POST", "/", body=b"fine")
        await good.wait_done(sid)
    assert bytes(good.streams[sid].data) == b"fine"
    await good.aclose()


async def test_frames_on_closed_streams(start_server):
    server = await start_server(echo_app)
    good = await H2Client.open(server.port)
    bad = await H2Client.open(server.port)
    with trio.fail_after(5):
        sid = await bad.request("POST", "/", body=b"one")
        await bad.wait_done(sid)
    assert bytes(bad.streams[sid].data) == b"one"
    # DATA on the closed stream: a stream error STREAM_CLOSED (RFC 9113 §5.1).
    frame = DataFrame(sid)
    frame.data = b"late"
    await bad.send_raw(frame)
    wu = WindowUpdateFrame(sid)
    wu.window_increment = 10  # allowed on a closed stream, must be ignored (§6.9)
    await bad.send_raw(wu)
    def stream_closed_reset() -> bool:
        return any(isinstance(f, RstStreamFrame) and f.stream_id == sid
                   and f.error_code == ERR.STREAM_CLOSED for f in parse_frames(bad.received))

    with trio.fail_after(5):
        await bad.wait(stream_closed_reset)
        gsid = await good.request("POST", "/", body=b"good")
        await good.wait_done(gsid)
        # Only the stream failed: the connection keeps serving.
        again = await bad.request("POST", "/", body=b"two")
        await bad.wait_done(again)
    assert bytes(good.streams[gsid].data) == b"good"
    assert bytes(bad.streams[again].data) == b"two"
    assert bad.goaway is None
    await good.aclose()
    await bad.aclose()


async def test_headers_reusing_a_closed_stream_id_is_connection_error(start_server):
    server = await start_server(echo_app)
    client = await H2Client.open(server.port)
    with trio.fail_after(5):
        sid = await client.request("GET", "/")
        await client.wait_done(sid)
    block = client.conn.encoder.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                        (b":authority", b"a"), (b":path", b"/")])
    frame = HeadersFrame(sid)
    frame.data = block
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    await client.send_raw(frame)
    with trio.fail_after(5):
        await client.drain_until_closed()
    assert client.goaway is not None
    assert client.goaway.error_code in (ERR.STREAM_CLOSED, ERR.PROTOCOL_ERROR)


async def still_serves(client: H2Client) -> None:
    """After a stream error: no GOAWAY, and a new request on the connection is answered."""
    good = await client.request("GET", "/after")
    await client.wait_done(good)
    assert client.streams[good].status == 200
    assert client.goaway is None
    await client.aclose()


_GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]


@pytest.mark.parametrize("fields", [
    pytest.param([*_GET, (b"X-Upper", b"1")], id="uppercase-name"),
    pytest.param([*_GET, (b"x-nul", b"a\x00b")], id="nul-in-value"),
    pytest.param([*_GET, (b"x-lf", b"a\nb")], id="lf-in-value"),
    pytest.param([*_GET, (b"x-space", b" padded")], id="leading-whitespace"),
    pytest.param([*_GET, (b"x-tab", b"padded\t")], id="trailing-whitespace"),
    pytest.param([*_GET, (b"x:colon", b"1")], id="colon-in-name"),
    pytest.param([*_GET, (b"", b"1")], id="empty-name"),
    pytest.param([*_GET, (b"connection", b"close")], id="connection-specific"),
    pytest.param([*_GET, (b"transfer-encoding", b"chunked")], id="transfer-encoding"),
    pytest.param([*_GET, (b"te", b"gzip")], id="te-not-trailers"),
    pytest.param([*_GET, (b"host", b"b")], id="host-differs-from-authority"),
    pytest.param([*_GET, (b"host", b"a"), (b"host", b"a")], id="two-hosts"),
    pytest.param([(b":method", b"GET"), (b"x", b"1"), (b":scheme", b"http"),
                  (b":authority", b"a"), (b":path", b"/")], id="pseudo-after-regular"),
    pytest.param([*_GET, (b":method", b"GET")], id="duplicate-pseudo"),
    pytest.param([*_GET[:3], (b":path", b"/"), (b":status", b"200")], id="status-in-request"),
    pytest.param([*_GET, (b":custom", b"1")], id="unknown-pseudo"),
    pytest.param(_GET[1:], id="no-method"),
    pytest.param(_GET[:3], id="no-path"),
    pytest.param([*_GET[:3], (b":path", b"")], id="empty-path"),
    pytest.param([*_GET, (b":protocol", b"websocket")], id="protocol-without-connect"),
    pytest.param([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")],
                 id="no-authority-no-host"),
])
async def test_malformed_request_resets_only_its_stream(start_server, fields):
    # RFC 9113 §8.1.1: a malformed request is a stream error (PROTOCOL_ERROR); the
    # connection and its other streams go on.
    server = await start_server(echo_app)
    client = await H2Client.open(server.port)
    with trio.fail_after(5):
        await client.wait(lambda: client.remote_settings_seen)
        bad = await client.request_fields(fields)
        await client.wait_done(bad)
        assert client.streams[bad].reset == ERR.PROTOCOL_ERROR
        assert client.streams[bad].headers is None  # the app never ran
        await still_serves(client)


async def test_malformed_trailers_reset_the_stream(start_server):
    server = await start_server(echo_app)
    client = await H2Client.open(server.port)
    with trio.fail_after(5):
        sid = await client.request("POST", "/", body=b"x", end_stream=False)
        client.conn.config.validate_outbound_headers = False
        client.conn.send_headers(sid, [(b":path", b"/")], end_stream=True)  # pseudo in trailers
        await client.flush()
        await client.wait_done(sid)
        assert client.streams[sid].reset == ERR.PROTOCOL_ERROR
        await still_serves(client)


async def test_split_cookie_fields_reach_the_app_joined(start_server):
    # RFC 9113 §8.2.3: a client may split cookie into several fields; they are joined with
    # "; " before the app sees them.
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        seen.append(scope["headers"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    server = await start_server(app)
    client = await H2Client.open(server.port)
    with trio.fail_after(5):
        sid = await client.request_fields([*_GET, (b"cookie", b"a=1"), (b"x", b"y"),
                                           (b"cookie", b"b=2")])
        await client.wait_done(sid)
    assert client.streams[sid].status == 204
    assert seen == [[(b"host", b"a"), (b"x", b"y"), (b"cookie", b"a=1; b=2")]]
    await client.aclose()


# --- h2c upgrade (RFC 7540 §3.2) with a raw peer --------------------------------------------


async def h2c_upgrade(port: int, request_head: bytes, body: bytes = b"") -> H2Client:
    """Send an HTTP/1.1 request with ``Upgrade: h2c``; after the 101, continue as HTTP/2."""
    stream = await connect(port)
    client = H2Client(stream)
    settings = client.conn.initiate_upgrade_connection()
    await stream.send_all(
        request_head + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: " + settings + b"\r\n\r\n" + body
    )
    buf = bytearray()
    head = await read_until(stream, buf, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head
    client.streams[1] = StreamState()
    await client.flush()  # the client preface
    if buf:
        await client.process(bytes(buf))
    return client


@pytest.mark.parametrize("mode", ["both", "prior-knowledge", "upgrade", "off"])
async def test_h2c_modes(start_server, mode):
    server = await start_server(echo_app, config=Config(h2c=mode))
    with trio.fail_after(10):
        # Prior knowledge: the preface and SETTINGS, then read what comes back.
        stream = await connect(server.port)
        async with stream:
            await stream.send_all(H2_PREFACE + SettingsFrame(0).serialize())
            reply = await receive_some(stream)
        # Upgrade: h2c on a GET.
        stream = await connect(server.port)
        async with stream:
            await stream.send_all(
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
            upgraded = await read_until(stream, bytearray(), b"\r\n\r\n")
    if mode in ("both", "prior-knowledge"):
        assert reply[3] == 0x4  # the server's SETTINGS frame
    else:
        # HTTP/1.1 answers "PRI * HTTP/2.0" as a version it does not serve.
        assert reply.startswith((b"HTTP/1.1 505 ", b"HTTP/1.1 400 ")), reply[:40]
    status = upgraded.split(b" ", 2)[1]
    assert status == (b"101" if mode in ("both", "upgrade") else b"200")


async def test_h2c_upgrade_get(start_server):
    server = await start_server(echo_app)
    with trio.fail_after(5):
        client = await h2c_upgrade(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n")
        await client.wait_done(1)
        sid = await client.request("POST", "/", body=b"second stream")
        await client.wait_done(sid)
    assert client.streams[1].status == 200
    assert bytes(client.streams[sid].data) == b"second stream"
    await client.aclose()


async def test_h2c_upgrade_post_body_reaches_the_app(start_server):
    seen: list[tuple[str, bytes]] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        seen.append((scope["http_version"], body))
        await respond(send, b"got %d" % len(body))

    server = await start_server(app)
    body = b"upgrade body " * 1000
    with trio.fail_after(5):
        client = await h2c_upgrade(
            server.port,
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n" % len(body), body,
        )
        await client.wait_done(1)
    assert seen == [("2", body)]
    assert bytes(client.streams[1].data) == b"got %d" % len(body)
    await client.aclose()


async def test_h2c_upgrade_chunked_body_over_limit_is_413(start_server):
    server = await start_server(echo_app, config=Config(h2_initial_window_size=100))
    stream = await connect(server.port)
    await stream.send_all(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n" + b"c8\r\n" + b"x" * 200 + b"\r\n0\r\n\r\n"
    )
    with trio.fail_after(5):
        raw = await read_until_eof(stream)
    assert raw.startswith(b"HTTP/1.1 413 ")


async def test_h2c_upgrade_refused_over_tls(start_server, client_ssl_context):
    # Upgrade: h2c is for cleartext only (RFC 7540 §3.2): over TLS it is ignored.
    server = await start_server(echo_app, tls=True)
    ctx = client_ssl_context
    ctx.set_alpn_protocols(["http/1.1"])
    stream = await connect(server.port, ssl_context=ctx)
    await stream.send_all(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings, close\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
    with trio.fail_after(5):
        raw = await read_until_eof(stream)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
