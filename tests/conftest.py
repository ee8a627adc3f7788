"""Shared fixtures: trustme certificates, a server started in the test's nursery, and helpers
for driving external clients (curl, h2load). Everything talks to 127.0.0.1 on port 0."""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from trio_http import Config, RunningServer, serve_asgi

REQUIRE_TOOLS = os.environ.get("TRIO_HTTP_REQUIRE_TOOLS") == "1"


def require_tool(name: str) -> str:
    """The path of an external tool; skip the test when it is missing (fail in CI, where
    ``.ci/run`` installs it and sets TRIO_HTTP_REQUIRE_TOOLS=1)."""
    path = shutil.which(name)
    if path is None:
        if REQUIRE_TOOLS:
            pytest.fail(f"{name} is required (TRIO_HTTP_REQUIRE_TOOLS=1) but not installed")
        pytest.skip(f"{name} is not installed")
    return path


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PEM files: ``certfile`` (chain + key), ``keyfile``, ``cafile``; for localhost and
    127.0.0.1."""
    d = tmp_path_factory.mktemp("certs")
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    certfile, keyfile, cafile = d / "cert.pem", d / "key.pem", d / "ca.pem"
    for blob in cert.cert_chain_pems:
        blob.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return {"certfile": str(certfile), "keyfile": str(keyfile), "cafile": str(cafile)}


@pytest.fixture(scope="module", params=["h11", "httptools"])
def h1_parser(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a module's tests once per HTTP/1.1 parser (``pytestmark =
    pytest.mark.usefixtures("h1_parser")``): servers configured with ``h1_parser="auto"`` and
    the module's own ``H1Connection`` name get the parser of the current pass."""
    from trio_http._sansio import _h1_parser

    if request.param == "httptools" and not _h1_parser.HTTPTOOLS_AVAILABLE:
        pytest.skip("httptools is not installed")
    saved_auto = _h1_parser.AUTO_PARSER
    module = request.module
    saved_cls = getattr(module, "H1Connection", None)
    _h1_parser.AUTO_PARSER = request.param
    if saved_cls is not None and request.param == "httptools":
        module.H1Connection = _h1_parser.HttptoolsH1Connection
    try:
        yield request.param
    finally:
        _h1_parser.AUTO_PARSER = saved_auto
        if saved_cls is not None:
            module.H1Connection = saved_cls


@pytest.fixture
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


StartServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start_server(
    nursery: trio.Nursery, cert_files: dict[str, str]
) -> AsyncIterator[StartServer]:
    """``server = await start_server(app, tls=False, config=None, binds=None)``: a real server
    on 127.0.0.1 port 0 in the test's nursery, shut down when the test ends."""

    async def start(
        app: Any, *, tls: bool = False, config: Config | None = None,
        binds: list[str] | None = None,
    ) -> RunningServer:
        cfg = config or Config()
        if tls:
            cfg = replace(cfg, certfile=cert_files["certfile"], keyfile=cert_files["keyfile"])
        server: RunningServer = await nursery.start(
            lambda task_status: serve_asgi(
                app, binds=binds or ["127.0.0.1:0"], config=cfg, task_status=task_status
            )
        )
        return server

    yield start


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A minimal app: 200 with ``hello`` and the HTTP version."""
    if scope["type"] != "http":
        return
    body = f"hello over {scope['http_version']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo the request body back, streaming."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return
        await send({"type": "http.response.body", "body": msg.get("body", b""),
                    "more_body": True})
        if not msg.get("more_body"):
            break
    await send({"type": "http.response.body", "body": b""})


# A deadline for an external process, not for trio code: hence the timeout parameter.
async def run_tool(
    *argv: str, timeout: float = 30  # noqa: ASYNC109
) -> trio.CompletedProcess[bytes]:
    """Run an external client under a deadline; return the completed process."""
    with trio.fail_after(timeout):
        return await trio.run_process(list(argv), capture_stdout=True, capture_stderr=True,
                                      check=False)


TESTS_DIR = Path(__file__).parent
