"""The fields a server adds to every response (``server``, ``date``, ``--header``), and that
the app's own fields take their place, on HTTP/1.1 (both parsers), HTTP/2 and HTTP/3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from trio_http import Config, ConfigError
from trio_http._cli import build_parser, config_from_args
from trio_http._config_sources import resolve_settings

from .h3_client import open_h3_client

CUSTOM = (("X-Frame-Options", " DENY "), ("server", "edge"))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/plain")]
    if scope["path"] == "/own":  # the app's fields win over the server's
        headers += [(b"X-Frame-Options", b"SAMEORIGIN"), (b"Server", b"app")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def fields(pairs: Any) -> list[tuple[bytes, bytes]]:
    return [(bytes(n).lower(), bytes(v)) for n, v in pairs]


async def get_both(url: str, **client: Any) -> tuple[list[tuple[bytes, bytes]], ...]:
    async with httpx.AsyncClient(**client) as c:
        plain, own = await c.get(f"{url}/"), await c.get(f"{url}/own")
    assert plain.status_code == own.status_code == 200
    return fields(plain.headers.raw), fields(own.headers.raw)


def check(plain: list[tuple[bytes, bytes]], own: list[tuple[bytes, bytes]],
          *, date: bool) -> None:
    assert (b"x-frame-options", b"DENY") in plain
    assert [v for n, v in plain if n == b"server"] == [b"edge"]  # in place of trio_http
    assert any(n == b"date" for n, _ in plain) is date
    assert [v for n, v in own if n == b"x-frame-options"] == [b"SAMEORIGIN"]
    assert [v for n, v in own if n == b"server"] == [b"app"]


@pytest.mark.parametrize("parser", ["h11", "httptools"])
async def test_http1(start_server, parser):
    config = Config(response_headers=CUSTOM, date_header=False, h1_parser=parser)
    server = await start_server(app, config=config)
    with trio.fail_after(10):
        plain, own = await get_both(server.urls[0])
    check(plain, own, date=False)


async def test_http2(start_server, client_ssl_context):
    server = await start_server(app, tls=True, config=Config(response_headers=CUSTOM))
    with trio.fail_after(10):
        plain, own = await get_both(server.urls[0], verify=client_ssl_context, http2=True)
    check(plain, own, date=True)


async def test_http3(start_server, cert_files):
    config = Config(response_headers=CUSTOM, quic_binds=("127.0.0.1:0",),
                    certfile=cert_files["certfile"], keyfile=cert_files["keyfile"])
    server = await start_server(app, config=config)
    with trio.fail_after(10):
        async with open_h3_client(server.quic_addresses[0], cert_files["cafile"]) as h3:
            plain, own = await h3.get("/"), await h3.get("/own")
    check(fields(plain.headers), fields(own.headers), date=True)


async def test_server_and_date_can_be_turned_off(start_server):
    server = await start_server(app, config=Config(server_header=False, date_header=False))
    with trio.fail_after(10):
        plain, _ = await get_both(server.urls[0])
    assert [n for n, _ in plain] == [b"content-type", b"content-length"]


@pytest.mark.parametrize(("pair", "message"), [
    (("bad name", "x"), "invalid header name"),
    (("x-a", "one\r\nx-b: two"), "invalid header value"),
    (("x-a", "caf\u00e9\u2603"), "x-a"),  # not latin-1
    (("Content-Length", "5"), "cannot be set for every response"),
    (("transfer-encoding", "chunked"), "cannot be set"),
    (("connection", "close"), "cannot be set"),
    (("date", "Mon, 01 Jan 2024 00:00:00 GMT"), "cannot be set"),
    ((":status", "200"), "invalid header name"),
])
def test_invalid_fields_are_config_errors(pair, message):
    with pytest.raises(ConfigError, match=message):
        Config(response_headers=(pair,))


@pytest.mark.parametrize("value", [
    ("x-a: 1",), ("ab",), (("x-a", "1", "2"),), (("x-a", b"1"),), "x-a: 1",
])
def test_response_headers_must_be_pairs(value):
    with pytest.raises(ConfigError, match="pairs"):
        Config(response_headers=value)


def test_flags_file_and_environment(tmp_path: Path):
    args = build_parser().parse_args([
        "--header", "X-Frame-Options: DENY", "--header", "x-empty:", "--no-server-header",
        "--no-date-header",
    ])
    config = config_from_args(args)
    assert config.response_headers == (("x-frame-options", "DENY"), ("x-empty", ""))
    assert config.server_header is False and config.date_header is False
    defaults = config_from_args(build_parser().parse_args([]))
    assert defaults.response_headers == () and defaults.server_header and defaults.date_header

    path = tmp_path / "prod.toml"
    path.write_text('response_headers = ["cache-control: no-store, private"]\n'
                    "server_header = false\n")
    settings = resolve_settings(build_parser(), ["--config", str(path)], {}, str(tmp_path))
    config = config_from_args(settings.namespace())
    assert config.response_headers == (("cache-control", "no-store, private"),)
    assert config.server_header is False

    env = {"TRIO_HTTP_RESPONSE_HEADERS": "x-a: 1, x-b: 2"}
    settings = resolve_settings(build_parser(), [], env, str(tmp_path))
    assert config_from_args(settings.namespace()).response_headers == (("x-a", "1"),
                                                                       ("x-b", "2"))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--header", "no colon"])
