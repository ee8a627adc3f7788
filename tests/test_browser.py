"""The demo page in a real browser: Debian's Chromium, headless, driven by playwright (with the
system browser: ``playwright install`` is never run).

The page is loaded over HTTP/2 (TLS, ALPN ``h2``), over HTTP/1.1 (TLS with ALPN offering only
``http/1.1``) and over cleartext HTTP/1.1. The server's certificate comes from a trustme CA;
Chromium trusts it through ``--ignore-certificate-errors-spki-list``, which pins the server
key's SPKI hash (every other certificate is still checked, unlike ``ignore_https_errors``).
On each load the test reads the protocol the page shows (and the browser's own
``nextHopProtocol``), completes a WebSocket echo typed into the page's form, and waits for a
server-sent statistics event to fill the page's table.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from trio_http import Config
from trio_http.demo import app as demo_app
from trio_http.testing import serve_in_thread

from .conftest import REQUIRE_TOOLS, require_tool

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Milliseconds playwright waits for each step (page load, an element, a condition).
STEP_TIMEOUT_MS = 15_000


def spki_hash(certfile: str) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of the first certificate in ``certfile``, the form
    Chromium's --ignore-certificate-errors-spki-list takes."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    with open(certfile, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def sync_playwright() -> Iterator[Any]:
    require_tool("chromium")
    if REQUIRE_TOOLS:
        from playwright.sync_api import sync_playwright as start
    else:
        start = pytest.importorskip("playwright.sync_api").sync_playwright
    with start() as pw:
        yield pw


def executable() -> str:
    # Debian's /usr/bin/chromium is a wrapper script that sets flags and execs the binary.
    return os.environ.get("TRIO_HTTP_CHROMIUM", "/usr/bin/chromium")


@pytest.mark.parametrize(("tls", "alpn", "protocol", "next_hop"), [
    (True, ("h2", "http/1.1"), "HTTP/2", "h2"),
    (True, ("http/1.1",), "HTTP/1.1", "http/1.1"),
    (False, None, "HTTP/1.1", "http/1.1"),
], ids=["h2-tls", "http1.1-tls", "http1.1-cleartext"])
def test_demo_page_in_chromium(
    sync_playwright: Any, tls: bool, alpn: tuple[str, ...] | None, protocol: str,
    next_hop: str, tmp_path: Any,
) -> None:
    config = Config(graceful_timeout=2.0, **({"alpn_protocols": alpn} if alpn else {}))
    with serve_in_thread(demo_app, tls=tls, config=config) as server:
        args = list(CHROMIUM_ARGS)
        if tls:
            args.append(f"--ignore-certificate-errors-spki-list={spki_hash(server.certfile)}")
        browser = sync_playwright.chromium.launch(executable_path=executable(), args=args)
        try:
            page = browser.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            response = page.goto(server.url + "/")
            assert response is not None and response.status == 200
            assert page.inner_text("#protocol") == protocol
            assert page.inner_text("#next-hop") == next_hop
            assert page.inner_text("#transport").startswith("https, TLS 1." if tls else "http")

            # The page's WebSocket connects by itself and is greeted by the server.
            # Over HTTP/2 Chromium opens it as an extended CONNECT stream (RFC 8441) on the
            # page's connection, so the greeting names HTTP/2.
            page.wait_for_function(
                "(p) => document.getElementById('ws-log').textContent"
                ".includes('< welcome: a WebSocket over ' + p)",
                arg=protocol,
            )
            message = f"hello from chromium over {protocol}"
            page.fill("#ws-text", message)
            page.click("#ws-send")
            page.wait_for_function(
                "(m) => document.getElementById('ws-log').textContent.includes('< ' + m)",
                arg=message,
            )
            log = page.inner_text("#ws-log")
            assert f"> {message}" in log

            # Server-sent events fill the statistics table.
            page.wait_for_function(
                "document.getElementById('stats').textContent.includes('requests_total')"
            )
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
        finally:
            browser.close()  # closes the SSE stream, so the server stops at once
        stats = server.statistics()
    assert stats["websockets_total"] >= 1
    assert stats["requests_by_http_version"].get(protocol.removeprefix("HTTP/"), 0) >= 3
