"""Config validation and bind parsing (pure, no sockets except the listener round trips)."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest
import trio

from trio_http import Bind, BindError, Config, ConfigError, open_http_listeners, parse_bind


def test_defaults_match_the_documented_http2_settings():
    c = Config()
    assert c.h2_max_concurrent_streams == 100
    assert c.h2_initial_window_size == 65535
    assert c.h2_max_frame_size == 16384
    assert c.h2_max_header_list_size == 65536
    assert c.tls_enabled is False
    assert c.alpn_protocols == ("h2", "http/1.1")


def test_config_is_frozen():
    c = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.graceful_timeout = 1  # type: ignore[misc]
    assert dataclasses.replace(c, graceful_timeout=1).graceful_timeout == 1


@pytest.mark.parametrize(("field", "value"), [
    ("graceful_timeout", 0),
    ("graceful_timeout", -1),
    ("graceful_timeout", None),
    ("keep_alive_timeout", 0),
    ("tls_handshake_timeout", "5"),
    ("startup_timeout", True),
    ("write_timeout", 0),
    ("tcp_notsent_lowat", 0),
    ("tcp_notsent_lowat", 2**31),
    ("read_size", 0),
    ("read_size", 1.5),
    ("backlog", -1),
    ("max_request_header_size", 0),
    ("max_connections", 0),
    ("h2_max_concurrent_streams", 0),
    ("h2_initial_window_size", 0),
    ("h2_initial_window_size", 2**31),
    ("h2_max_frame_size", 16383),
    ("h2_max_frame_size", 2**24),
    ("h2_max_header_list_size", 0),
    ("h2_write_buffer_size", 0),
    ("lifespan", "maybe"),
])
def test_invalid_values_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        Config(**{field: value})


@pytest.mark.parametrize(("field", "value"), [
    ("write_timeout", None),
    ("max_connections", None),
    ("max_connections", 1),
    ("h2_initial_window_size", 2**31 - 1),
    ("h2_max_frame_size", 2**24 - 1),
    ("graceful_timeout", 0.01),
    ("lifespan", "off"),
])
def test_valid_edge_values_are_accepted(field, value):
    assert getattr(Config(**{field: value}), field) == value


def test_root_path_trailing_slash_is_dropped():
    assert Config(root_path="/api/").root_path == "/api"


def test_keyfile_needs_certfile():
    with pytest.raises(ConfigError, match="certfile"):
        Config(keyfile="key.pem")


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        Config(backlog=0)


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:8000", Bind("tcp", host="127.0.0.1", port=8000)),
    ("localhost:0", Bind("tcp", host="localhost", port=0)),
    ("0.0.0.0:65535", Bind("tcp", host="0.0.0.0", port=65535)),
    (":8080", Bind("tcp", host="0.0.0.0", port=8080)),
    ("example.org", Bind("tcp", host="example.org", port=8000)),
    ("[::1]:8443", Bind("tcp", host="::1", port=8443)),
    ("[::]:0", Bind("tcp", host="::", port=0)),
    ("[fe80::1%eth0]:80", Bind("tcp", host="fe80::1%eth0", port=80)),
    ("unix:/run/app.sock", Bind("unix", path="/run/app.sock")),
    ("unix:relative.sock", Bind("unix", path="relative.sock")),
    ("fd://3", Bind("fd", fd=3)),
])
def test_parse_bind(text, expected):
    assert parse_bind(text) == expected


@pytest.mark.parametrize("text", [
    "127.0.0.1:http", "127.0.0.1:-1", "127.0.0.1:65536", "::1:80", "unix:", "fd://", "fd://x",
    "fd://-2", "[::1]:", "host:",
])
def test_parse_bind_refuses(text):
    with pytest.raises(ConfigError):
        parse_bind(text)


def test_parse_bind_tls_flag():
    assert parse_bind("127.0.0.1:1", tls=True).tls is True
    b = Bind("tcp", host="h", port=1)
    assert parse_bind(b) is b
    assert parse_bind(b, tls=False).tls is False
    explicit = Bind("tcp", host="h", port=1, tls=True)
    assert parse_bind(explicit, tls=False).tls is True


@pytest.mark.parametrize("text", ["127.0.0.1:8000", "[::1]:8443", "unix:/run/x.sock", "fd://7"])
def test_bind_str_round_trips(text):
    assert str(parse_bind(text)) == text


async def test_listeners_for_tcp_unix_and_fd(tmp_path: Path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    fd_port = sock.getsockname()[1]
    path = tmp_path / "s.sock"
    listeners = await open_http_listeners(
        ["127.0.0.1:0", f"unix:{path}", f"fd://{sock.fileno()}"]
    )
    try:
        assert [lst.bind.kind for lst in listeners] == ["tcp", "unix", "fd"]
        host, port = listeners[0].address  # type: ignore[misc]
        assert host == "127.0.0.1" and port > 0
        assert listeners[0].url == f"http://127.0.0.1:{port}"
        assert listeners[1].address == str(path)
        assert listeners[1].url == f"http+unix://{path}"
        assert listeners[2].address == ("127.0.0.1", fd_port)
    finally:
        for lst in listeners:
            lst.listener.socket.close()
        sock.detach()


async def test_busy_port_is_bind_error_and_nothing_stays_open():
    taken = trio.socket.socket()
    await taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    fds_before = len(os.listdir("/proc/self/fd"))
    try:
        with pytest.raises(BindError, match="already in use"):
            await open_http_listeners(["127.0.0.1:0", f"127.0.0.1:{port}"])
        # The first listener, opened before the failure, was closed again.
        assert len(os.listdir("/proc/self/fd")) == fds_before
    finally:
        taken.close()
