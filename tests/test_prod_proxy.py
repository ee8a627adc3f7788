"""Behind proxies: Forwarded / X-Forwarded-* honoured from trusted peers only, and the PROXY
protocol v1 and v2 (plain and under TLS) from trusted peers only. Real sockets on 127.0.0.1;
the server's scope comes back as JSON from ``info_app``."""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_http import Config
from trio_http._proxy import TrustedPeers, parse_forwarded
from trio_http._sansio._proxy_protocol import (
    ProxyProtocolError,
    build_v1,
    build_v2,
    looks_like_proxy_header,
    parse_proxy_header,
)

from .apps.prod_apps import info_app


async def _get(server: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        r = await client.get(server.urls[0] + "/p", headers=headers)
    assert r.status_code == 200
    return dict(r.json())


XFF = {"x-forwarded-for": "203.0.113.7, 10.1.1.1", "x-forwarded-proto": "https",
       "x-forwarded-host": "example.com"}


async def test_x_forwarded_from_trusted_peer(start_server):
    server = await start_server(info_app, config=Config(
        proxy_headers=True, forwarded_allow_ips=("127.0.0.1", "10.0.0.0/8")))
    seen = await _get(server, XFF)
    # 10.1.1.1 is a trusted proxy too, so the client is the hop before it.
    assert seen["client"] == ["203.0.113.7", 0]
    assert seen["scheme"] == "https"
    assert seen["host"] == "example.com"
    # Only our own peer trusted: the rightmost hop is the client.
    server2 = await start_server(info_app, config=Config(proxy_headers=True))
    assert (await _get(server2, XFF))["client"] == ["10.1.1.1", 0]


async def test_forwarded_rfc7239_preferred(start_server):
    server = await start_server(info_app, config=Config(
        proxy_headers=True, forwarded_allow_ips=("*",)))
    seen = await _get(server, {
        "forwarded": 'for="[2001:db8::1]:4711";proto=https;host="api.example", for=10.0.0.2',
        "x-forwarded-for": "192.0.2.99",
    })
    assert seen["client"] == ["2001:db8::1", 4711]
    assert seen["scheme"] == "https" and seen["host"] == "api.example"


async def test_proxy_headers_ignored_from_untrusted_peer(start_server):
    # 127.0.0.1 (the test client) is not in the list: the headers could be forged.
    server = await start_server(info_app, config=Config(
        proxy_headers=True, forwarded_allow_ips=("10.0.0.0/8",)))
    seen = await _get(server, {**XFF, "forwarded": "for=198.51.100.1;proto=https"})
    assert seen["client"][0] == "127.0.0.1"
    assert seen["scheme"] == "http" and seen["host"].startswith("127.0.0.1:")
    # And with the feature off nothing is rewritten either.
    plain = await start_server(info_app)
    assert (await _get(plain, XFF))["scheme"] == "http"


async def _raw_request(port: int, prefix: bytes, *, tls: ssl.SSLContext | None = None) -> bytes:
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(prefix)
    if tls is not None:
        stream = trio.SSLStream(stream, tls, server_hostname="localhost")
    await stream.send_all(b"GET /x HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n")
    data = b""
    with trio.fail_after(10):
        try:
            while chunk := await stream.receive_some():
                data += chunk
        except trio.BrokenResourceError:
            pass
    return data


def _body(response: bytes) -> dict[str, Any]:
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    return dict(json.loads(response.partition(b"\r\n\r\n")[2]))


@pytest.mark.parametrize("version", [1, 2])
async def test_proxy_protocol_from_trusted_peer(start_server, version):
    server = await start_server(info_app, config=Config(proxy_protocol=True))
    build = build_v1 if version == 1 else build_v2
    header = build(("192.0.2.10", 40000), ("198.51.100.20", 443))
    seen = _body(await _raw_request(server.port, header))
    assert seen["client"] == ["192.0.2.10", 40000]
    assert seen["server"] == ["198.51.100.20", 443]
    # IPv6 and v2 LOCAL (health checks): LOCAL keeps the real addresses.
    seen = _body(await _raw_request(server.port, build(("2001:db8::5", 1), ("2001:db8::6", 2))))
    assert seen["client"] == ["2001:db8::5", 1]
    seen = _body(await _raw_request(server.port, build_v2(None, None)))
    assert seen["client"][0] == "127.0.0.1"
    # A trusted peer that sends no header at all is served as itself.
    assert _body(await _raw_request(server.port, b""))["client"][0] == "127.0.0.1"


async def test_proxy_protocol_under_tls(start_server, client_ssl_context):
    server = await start_server(info_app, tls=True, config=Config(proxy_protocol=True))
    client_ssl_context.set_alpn_protocols(["http/1.1"])
    seen = _body(await _raw_request(server.port, build_v2(("192.0.2.1", 7), ("192.0.2.2", 8)),
                                    tls=client_ssl_context))
    assert seen["client"] == ["192.0.2.1", 7] and seen["scheme"] == "https"
    assert seen["tls"]["tls_version"] in (0x0303, 0x0304)


async def test_proxy_protocol_not_accepted_from_untrusted_peer(start_server):
    server = await start_server(info_app, config=Config(
        proxy_protocol=True, forwarded_allow_ips=("10.0.0.0/8",)))
    response = await _raw_request(server.port, build_v1(("192.0.2.10", 1), ("192.0.2.11", 2)))
    # The header is taken for a malformed request: the client cannot pick its address.
    assert response.startswith(b"HTTP/1.1 400")


async def test_malformed_proxy_header_drops_connection(start_server):
    server = await start_server(info_app, config=Config(proxy_protocol=True))
    assert await _raw_request(server.port, b"PROXY TCP4 nonsense\r\n") == b""
    assert server.statistics()["requests_total"] == 0


# --- the pure parts ------------------------------------------------------------------------

def test_parse_v1_and_v2_incrementally():
    for header in (build_v1(("192.0.2.1", 80), ("192.0.2.2", 8080)),
                   build_v2(("2001:db8::1", 1), ("2001:db8::2", 2), tlvs=b"\x04\x00\x01x")):
        data = header + b"GET / HTTP/1.1\r\n"
        for cut in range(len(header)):
            assert parse_proxy_header(data[:cut]) is None
        parsed = parse_proxy_header(data)
        assert parsed is not None and parsed.length == len(header)
    assert parse_proxy_header(b"PROXY UNKNOWN whatever\r\n") is not None
    assert looks_like_proxy_header(b"GET /") is False
    assert looks_like_proxy_header(b"PRO") is None


@pytest.mark.parametrize("bad", [
    b"PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n",
    b"PROXY TCP4 1.2.3.999 5.6.7.8 80 81\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 080 81\r\n",
    b"PROXY TCP6 1.2.3.4 5.6.7.8 80 81\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 80 70000\r\n",
    b"PROXY " + b"A" * 120,
    b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + bytes(12),  # version 3
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04" + bytes(4),  # IPv4 block too short
])
def test_malformed_headers_raise(bad):
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(bad)


@given(st.binary(max_size=300))
def test_parser_never_crashes(data):
    try:
        parse_proxy_header(data)
    except ProxyProtocolError:
        pass


def test_parse_forwarded():
    assert parse_forwarded('for=192.0.2.60;proto=http;by=203.0.113.43') == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}]
    assert parse_forwarded('For="[2001:db8:cafe::17]:4711", for=198.51.100.17;host="a,b"') == [
        {"for": "[2001:db8:cafe::17]:4711"}, {"for": "198.51.100.17", "host": "a,b"}]
    assert parse_forwarded("garbage, for=1.2.3.4") == [{"for": "1.2.3.4"}]


def test_trusted_peers():
    peers = TrustedPeers(["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"])
    assert "10.2.3.4" in peers and "127.0.0.1" in peers and "2001:db8::9" in peers
    assert "::ffff:10.0.0.1" in peers  # IPv4-mapped
    assert "11.0.0.1" not in peers and "not-an-ip" not in peers
    assert None in peers  # unix socket peer
    assert "8.8.8.8" in TrustedPeers(["*"])
    with pytest.raises(ValueError):
        TrustedPeers(["10.0.0.0/33"])


async def test_unix_socket_peer_is_trusted(start_server, tmp_path):
    from .prod_helpers import fetch

    path = str(tmp_path / "p.sock")
    await start_server(info_app, binds=[f"unix:{path}"], config=Config(
        proxy_headers=True, forwarded_allow_ips=("10.9.9.9",)))
    status, body = await fetch(unix=path, headers={"x-forwarded-for": "198.51.100.4",
                                                   "x-forwarded-proto": "https"})
    assert status == 200
    assert b'"client": ["198.51.100.4", 0]' in body and b'"scheme": "https"' in body
