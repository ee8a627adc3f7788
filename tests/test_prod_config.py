"""Settings from every source with the documented precedence (command line > TRIO_HTTP_*
environment > --config file > [tool.trio_http] in pyproject.toml > defaults), --print-config,
--factory and --app-dir, and logging (--log-config, access log atoms, escaping)."""

from __future__ import annotations

import json
import logging
import sys
import tomllib
from pathlib import Path

import pytest
import trio

from trio_http import Config, ConfigError
from trio_http._asgi import AccessLogAtoms, _escape
from trio_http._cli import build_parser
from trio_http._config_sources import env_name, resolve_settings, setting_actions

from .conftest import run_tool
from .prod_helpers import REPO, http_get, run_cli


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_precedence_cli_env_file_pyproject_defaults(tmp_path):
    _write(tmp_path / "pyproject.toml", """
[tool.trio_http]
workers = 2
graceful_timeout = 1
keep_alive = 7
log-level = "debug"
""")
    config = _write(tmp_path / "prod.toml", """
graceful_timeout = 2.5
keep_alive = 8
bind = ["127.0.0.1:1"]
proxy_headers = true
""")
    env = {"TRIO_HTTP_KEEP_ALIVE": "9", "TRIO_HTTP_BIND": "127.0.0.1:2, 127.0.0.1:3",
           "TRIO_HTTP_PROXY_HEADERS": "no", "TRIO_HTTP_CONFIG": config, "HOME": "/x"}
    s = resolve_settings(build_parser(), ["--bind", "127.0.0.1:4", "--ciphers", "ECDHE"],
                         env, str(tmp_path))
    v = s.values
    assert v["workers"] == 2 and s.sources["workers"] == "pyproject.toml"
    assert v["log_level"] == "debug"
    assert v["graceful_timeout"] == 2.5 and s.sources["graceful_timeout"] == config
    assert v["keep_alive"] == 9.0 and s.sources["keep_alive"] == "env TRIO_HTTP_KEEP_ALIVE"
    assert v["proxy_headers"] is False
    assert v["bind"] == ["127.0.0.1:4"] and s.sources["bind"] == "command line"
    assert v["ciphers"] == "ECDHE"
    assert v["lifespan"] == "auto" and s.sources["lifespan"] == "default"
    # Without the flag the environment's list wins over the file's.
    s = resolve_settings(build_parser(), [], env, str(tmp_path))
    assert s.values["bind"] == ["127.0.0.1:2", "127.0.0.1:3"]
    # --config on the command line beats TRIO_HTTP_CONFIG.
    other = _write(tmp_path / "other.toml", "graceful_timeout = 4\n")
    s = resolve_settings(build_parser(), ["--config", other], env, str(tmp_path))
    assert s.values["graceful_timeout"] == 4.0


@pytest.mark.parametrize(("text", "message"), [
    ("no_such_setting = 1\n", "unknown setting 'no_such_setting'"),
    ("workers = 'many'\n", "workers"),
    ("workers = 1.5\n", "expected an integer"),
    ("lifespan = 'sometimes'\n", "not one of"),
    ("reload = 'maybe'\n", "expected true or false"),
    ("bind = 3\n", "expected a list"),
    ("graceful_timeout = [\n", "config file"),
])
def test_bad_config_file_values_are_config_errors(tmp_path, text, message):
    path = _write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError, match=message):
        resolve_settings(build_parser(), ["--config", path], {}, str(tmp_path))


def test_environment_values_are_typed_and_unknown_ones_warned(tmp_path, capsys):
    env = {"TRIO_HTTP_MAX_CONNECTIONS": "10", "TRIO_HTTP_WS_PING_INTERVAL": "none",
           "TRIO_HTTP_RELOAD": "on", "TRIO_HTTP_UDS_MODE": "660", "TRIO_HTTP_BOGUS": "1",
           "TRIO_HTTP_REQUIRE_TOOLS": "1"}
    v = resolve_settings(build_parser(), [], env, str(tmp_path)).values
    assert (v["max_connections"], v["ws_ping_interval"], v["reload"], v["uds_mode"]) == (
        10, None, True, 0o660)
    err = capsys.readouterr().err
    assert "TRIO_HTTP_BOGUS" in err and "REQUIRE_TOOLS" not in err
    with pytest.raises(ConfigError, match="TRIO_HTTP_WORKERS"):
        resolve_settings(build_parser(), [], {"TRIO_HTTP_WORKERS": "two"}, str(tmp_path))


def test_every_option_has_an_environment_variable():
    actions = setting_actions(build_parser())
    assert env_name("graceful_timeout") == "TRIO_HTTP_GRACEFUL_TIMEOUT"
    for dest in ("bind", "workers", "proxy_headers", "metrics_bind", "verify_mode", "app"):
        assert dest in actions
    assert "print_config" not in actions and "config" not in actions


async def test_print_config_round_trips_through_config(tmp_path):
    env_args = ["--workers", "3", "--bind", "unix:/tmp/x.sock", "--uds-mode", "0o660",
                "--forwarded-allow-ips", "10.0.0.0/8,127.0.0.1", "--keep-alive", "inf"]
    first = await run_tool(sys.executable, "-m", "trio_http", *env_args, "--print-config",
                           timeout=30)
    assert first.returncode == 0, first.stderr
    text = first.stdout.decode()
    data = tomllib.loads(text)
    assert data["workers"] == 3 and data["bind"] == ["unix:/tmp/x.sock"]
    assert data["uds_mode"] == 0o660 and data["keep_alive"] == float("inf")
    assert "workers = 3  # command line" in text
    path = _write(tmp_path / "effective.toml", text)
    second = await run_tool(sys.executable, "-m", "trio_http", "--config", path,
                            "--print-config", timeout=30)
    assert tomllib.loads(second.stdout.decode()) == data


async def test_factory_and_app_dir(tmp_path):
    appdir = tmp_path / "src"
    appdir.mkdir()
    (appdir / "factory_mod.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'made by factory'})\n"
        "def create():\n    return app\n"
    )
    async with run_cli("factory_mod:create", "--factory", "--app-dir", str(appdir),
                       "--bind", "127.0.0.1:0", cwd=str(tmp_path)) as server:
        status, body = await trio.to_thread.run_sync(http_get, server.port)
        assert (status, body) == (200, b"made by factory")
    # Without --factory the factory itself is not an ASGI app: the request fails with 500.
    async with run_cli("factory_mod:create", "--app-dir", str(appdir), "--interface", "asgi",
                       "--bind", "127.0.0.1:0", "--lifespan", "off",
                       cwd=str(tmp_path)) as server:
        status, _ = await trio.to_thread.run_sync(http_get, server.port)
        assert status == 500


def test_env_file_gives_settings_and_variables(tmp_path):
    path = _write(tmp_path / ".env", "TRIO_HTTP_KEEP_ALIVE=9\nAPP_GREETING='hello from .env'\n"
                                     "ALREADY=file\nBARE\n")
    s = resolve_settings(build_parser(), ["--env-file", path], {"ALREADY": "process"},
                         str(tmp_path))
    assert s.values["keep_alive"] == 9.0 and s.sources["keep_alive"] == "env TRIO_HTTP_KEEP_ALIVE"
    # What the environment already has wins; a name without a value is left out.
    assert s.env_file_values == {"TRIO_HTTP_KEEP_ALIVE": "9", "APP_GREETING": "hello from .env"}
    s = resolve_settings(build_parser(), ["--keep-alive", "3"], {"TRIO_HTTP_ENV_FILE": path},
                         str(tmp_path))
    assert s.values["keep_alive"] == 3.0  # the command line still wins
    with pytest.raises(ConfigError, match="not found"):
        resolve_settings(build_parser(), ["--env-file", str(tmp_path / "none")], {},
                         str(tmp_path))


async def test_env_file_reaches_the_app(tmp_path):
    (tmp_path / "env_mod.py").write_text(
        "import os\n"
        "GREETING = os.environ['APP_GREETING'].encode()  # read at import\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': GREETING})\n"
    )
    _write(tmp_path / "prod.env", "APP_GREETING=hello from the env file\n")
    async with run_cli("env_mod:app", "--env-file", "prod.env", "--app-dir", str(tmp_path),
                       "--bind", "127.0.0.1:0", cwd=str(tmp_path)) as server:
        status, body = await trio.to_thread.run_sync(http_get, server.port)
    assert (status, body) == (200, b"hello from the env file")


async def test_log_config_json_and_escaped_access_log(tmp_path):
    access = tmp_path / "access.log"
    log_config = _write(tmp_path / "logging.json", json.dumps({
        "version": 1,
        "formatters": {"plain": {"format": "ACCESS %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(access),
                              "formatter": "plain"}},
        "loggers": {"trio_http.access": {"handlers": ["file"], "level": "INFO",
                                         "propagate": False}},
    }))
    fmt = '%(h)s "%(r)s" %(s)s %(b)s %({user-agent}i)s %({x-missing}i)s'
    async with run_cli("tests.apps.prod_apps:info_app", "--bind", "127.0.0.1:0",
                       "--log-config", log_config, "--access-logformat", fmt) as server:
        def raw() -> bytes:
            import socket
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(b"GET /p?q=1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
                          b"user-agent: evil\x85FORGED \"quote\"\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                return data

        assert (await trio.to_thread.run_sync(raw)).startswith(b"HTTP/1.1 200")
    line = access.read_text(encoding="utf-8").strip()
    assert line.startswith('ACCESS 127.0.0.1 "GET /p?q=1 HTTP/1.1" 200 ')
    # NEL (U+0085) would start a new line in some viewers: it is escaped.
    assert "evil\\x85FORGED" in line and "\x85" not in line
    assert line.endswith(" -")


async def test_log_config_ini_and_error_logfile(tmp_path):
    errors = tmp_path / "error.log"
    ini = _write(tmp_path / "logging.ini", f"""
[loggers]
keys=root,trio_http
[handlers]
keys=file
[formatters]
keys=plain
[logger_root]
level=WARNING
handlers=
[logger_trio_http]
level=INFO
handlers=file
qualname=trio_http
propagate=0
[handler_file]
class=FileHandler
args=({str(errors)!r},)
formatter=plain
[formatter_plain]
format=INI %(levelname)s %(message)s
""")
    async with run_cli("tests.apps.prod_apps:info_app", "--bind", "127.0.0.1:0",
                       "--log-config", ini, ready=None) as server:
        with trio.fail_after(20):
            # Another process writes the file: poll it.
            while "Serving on" not in (errors.read_text() if errors.exists() else ""):  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert server.process.returncode is None
    assert "INI INFO Serving on http://127.0.0.1:" in errors.read_text()
    status, err = await _run("--log-config", str(tmp_path / "missing.yaml"))
    assert status == 2 and "log config" in err


async def _run(*args: str) -> tuple[int, str]:
    proc = await run_tool(sys.executable, "-m", "trio_http", *args, "--bind", "127.0.0.1:0",
                          timeout=30)
    return proc.returncode, proc.stderr.decode()


def test_startup_line_names_the_protocols_served():
    from trio_http._runner import describe_url

    assert describe_url("https://h:1", "off") == "https://h:1 (HTTP/1.1, HTTP/2 over TLS with ALPN)"
    assert describe_url("http://h:1") == (
        "http://h:1 (HTTP/1.1, HTTP/2 cleartext: prior knowledge and Upgrade: h2c)")
    assert describe_url("http://h:1", "upgrade") == (
        "http://h:1 (HTTP/1.1, HTTP/2 cleartext: Upgrade: h2c)")
    assert describe_url("http://h:1", "off") == "http://h:1 (HTTP/1.1)"
    with pytest.raises(ConfigError, match="h2c"):
        Config(h2c="sometimes")  # type: ignore[arg-type]


def test_escape_and_request_header_atoms():
    assert _escape("plain text") == "plain text"
    assert _escape("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    scope = {"client": ("10.0.0.1", 5), "method": "GET", "raw_path": b"/a\x7f",
             "query_string": b"", "http_version": "2",
             "headers": [(b"referer", b"http://x/\x00")]}
    atoms = AccessLogAtoms(scope, 404, 0, 0.5)
    assert atoms["r"] == "GET /a\\x7f HTTP/2"
    assert atoms["{Referer}i"] == "http://x/\\x00"
    assert atoms["b"] == "-" and atoms["D"] == "500000" and atoms["s"] == "404"


def test_repo_pyproject_has_no_trio_http_table():
    # Keeps the CLI tests, which run from the repository, on the defaults.
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "trio_http" not in data.get("tool", {})


async def test_help_lists_the_production_options():
    proc = await run_tool(sys.executable, "-m", "trio_http", "--help", timeout=30)
    assert proc.returncode == 0
    out = proc.stdout.decode()
    for flag in ("--config", "--print-config", "--workers", "--reload", "--proxy-protocol",
                 "--verify-mode", "--metrics-bind", "--interface", "--uds-mode"):
        assert flag in out


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2"])
async def test_response_header_atoms_in_access_log(start_server, caplog, http2):
    import httpx

    from trio_http import Config

    from .conftest import hello_app

    config = Config(access_logfile="-",
                    access_log_format="%(s)s %({content-type}o)s %({x-missing}o)s %(H)s")
    server = await start_server(hello_app, config=config)
    with caplog.at_level(logging.INFO, logger="trio_http.access"):
        async with httpx.AsyncClient(http1=not http2, http2=http2) as client:
            r = await client.get(server.urls[0])
    assert r.status_code == 200
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "trio_http.access"]
    assert lines == [f"200 text/plain - HTTP/{'2' if http2 else '1.1'}"]
