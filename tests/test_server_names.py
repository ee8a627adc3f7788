"""Config.server_names: requests for hosts the server does not serve get 421 Misdirected
Request (RFC 9110 §15.5.20) before their app runs, on every protocol; the matching itself is
tested synchronously."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_http import Config, ConfigError
from trio_http._cli import build_parser, config_from_args
from trio_http._sansio._limits import ServerNames

from .apps.peers import H2Client, connect, read_until_eof
from .h3_client import open_h3_client

NAMES = ("example.com", "api.example.com:8443", "*.internal.test", "[::1]")


# --- matching (sans-io) ---------------------------------------------------------------------
@pytest.mark.parametrize(("host", "allowed"), [
    (b"example.com", True),
    (b"example.com:8000", True),  # a name without a port matches any port
    (b"EXAMPLE.com:80", True),  # case does not matter
    (b"api.example.com:8443", True),
    (b"api.example.com", False),  # a name with a port matches that port only
    (b"api.example.com:443", False),
    (b"a.internal.test", True),
    (b"a.b.internal.test:9000", True),
    (b"internal.test", False),  # *.domain: the names below it, not the domain
    (b"evilinternal.test", False),
    (b"[::1]", True),
    (b"[::1]:8000", True),
    (b"[::2]", False),
    (b"example.com.evil.net", False),
    (b"evil.net", False),
    (b"", False),  # no Host at all
    (b":8000", False),
])
def test_matching(host, allowed):
    assert ServerNames(NAMES).allows(host) is allowed


@pytest.mark.parametrize("name", [
    "", "exa mple.com", "*", "*.", "a.*.com", "*.example.com:80", "example.com:http",
    "caf\u00e9.com", "[::1",
])
def test_names_that_cannot_be_hosts(name):
    with pytest.raises(ValueError, match="not a host"):
        ServerNames([name])


labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join)
ports = st.integers(min_value=1, max_value=65535).map(str)


@given(hostnames, ports, ports)
def test_port_rules(name, port, other):
    any_port = ServerNames([name.upper()])
    assert any_port.allows(name.encode()) and any_port.allows(f"{name}:{port}".encode())
    one_port = ServerNames([f"{name}:{port}"])
    assert one_port.allows(f"{name}:{port}".encode())
    assert one_port.allows(f"{name}:{other}".encode()) is (other == port)
    assert not one_port.allows(name.encode())


@given(hostnames, labels, hostnames)
def test_wildcards_cover_exactly_the_names_below(domain, label, other):
    names = ServerNames([f"*.{domain}"])
    assert names.allows(f"{label}.{domain}".encode())
    assert names.allows(f"{label}.{domain}:8080".encode())
    assert not names.allows(domain.encode())
    below = other == domain or other.endswith("." + domain)
    assert names.allows(other.encode()) is (below and other != domain)


# --- configuration ----------------------------------------------------------------------------
def test_config_and_flags():
    with pytest.raises(ConfigError, match="server_names"):
        Config(server_names=("exa mple.com",))
    assert Config(server_names="example.com").server_names == ("example.com",)  # type: ignore[arg-type]
    args = build_parser().parse_args(["--server-name", "example.com", "--server-name",
                                      "*.example.com"])
    assert config_from_args(args).server_names == ("example.com", "*.example.com")
    assert config_from_args(build_parser().parse_args([])).server_names == ()


# --- every protocol ----------------------------------------------------------------------------
def recording_app(seen: list[str]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            seen.append("websocket")
            await receive()
            await send({"type": "websocket.accept"})
            return
        if scope["type"] != "http":
            return
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


async def raw_status(port: int, head: str) -> int:
    """The status of the answer to one request head sent as given (the connection closes)."""
    stream = await connect(port)
    async with stream:
        await stream.send_all(head.encode() + b"Connection: close\r\n\r\n")
        raw = await read_until_eof(stream)
    return int(raw.split(b" ", 2)[1])


@pytest.mark.parametrize("parser", ["h11", "httptools"])
async def test_http1(start_server, parser):
    seen: list[str] = []
    config = Config(server_names=("localhost", "example.com:8080"), h1_parser=parser)
    server = await start_server(recording_app(seen), config=config)
    upgrade = ("Connection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    with trio.fail_after(10):
        statuses = [await raw_status(server.port, head) for head in (
            "GET /ok HTTP/1.1\r\nHost: LOCALHOST:1234\r\n",
            "GET /x HTTP/1.1\r\nHost: evil.example\r\n",
            "GET /x HTTP/1.1\r\nHost: example.com\r\n",
            "GET /x HTTP/1.1\r\nHost: example.com:80\r\n",
            "GET /x HTTP/1.0\r\n",  # no Host: names no host served
            # Absolute-form must name the same host as Host; then that host is checked.
            "GET http://example.com:8080/abs HTTP/1.1\r\nHost: example.com:8080\r\n",
            # A WebSocket upgrade for another host is refused before the app sees it.
            "GET /ws HTTP/1.1\r\nHost: evil.example\r\n" + upgrade,
        )]
    assert statuses == [200, 421, 421, 421, 421, 200, 421]
    assert seen == ["/ok", "/abs"]


async def test_http2(start_server):
    seen: list[str] = []
    server = await start_server(recording_app(seen),
                                config=Config(server_names=("*.example.com",)))
    with trio.fail_after(10):
        client = await H2Client.open(server.port)
        base = [(b":method", b"GET"), (b":scheme", b"http")]
        good = await client.request_fields([*base, (b":authority", b"www.example.com"),
                                            (b":path", b"/good")])
        bad = await client.request_fields([*base, (b":authority", b"example.com"),
                                           (b":path", b"/bad")])
        # No :authority: the Host field decides.
        by_host = await client.request_fields([*base, (b":path", b"/host"),
                                               (b"host", b"a.example.com:99")])
        await client.wait_done(good, bad, by_host)
        after = await client.request(path="/after")  # :authority localhost
        await client.wait_done(after)
        await client.aclose()
    assert client.streams[good].status == 200 and client.streams[by_host].status == 200
    assert client.streams[bad].status == 421 and client.streams[after].status == 421
    assert seen == ["/good", "/host"]  # the connection went on after each 421


async def test_http3(start_server, cert_files):
    seen: list[str] = []
    config = Config(server_names=("localhost",), quic_binds=("127.0.0.1:0",),
                    certfile=cert_files["certfile"], keyfile=cert_files["keyfile"])
    server = await start_server(recording_app(seen), config=config)
    with trio.fail_after(10):
        async with open_h3_client(server.quic_addresses[0], cert_files["cafile"]) as h3:
            good = await h3.get("/good")
            _, bad = h3.start_request("GET", "/bad", authority="evil.example")
            await bad.done.wait()
            again = await h3.get("/again")
    assert good.status == 200 and bad.status == 421 and again.status == 200
    assert seen == ["/good", "/again"]
