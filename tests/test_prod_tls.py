"""TLS for production: client certificates (mTLS) verified against --ca-certs and visible in
the ``tls`` scope extension, --verify-mode required refusing certificate-less clients,
--ciphers, and --dev-tls serving HTTP/2 with a generated localhost certificate."""

from __future__ import annotations

import re
import ssl
from dataclasses import replace
from typing import Any

import httpx
import pytest
import trio
import trustme

from trio_http import Config, ConfigError
from trio_http._tls import create_ssl_context
from trio_http._tls_extension import rfc4514_name

from .apps.prod_apps import info_app
from .prod_helpers import run_cli


def _mtls_config(cert_files: dict[str, str], mode: str) -> Config:
    return Config(ca_certs=cert_files["cafile"], verify_mode=mode)  # type: ignore[arg-type]


def _client_context(ca: trustme.CA, client_cert: trustme.LeafCert | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if client_cert is not None:
        client_cert.configure_cert(ctx)
    return ctx


async def _get(url: str, ctx: ssl.SSLContext, http2: bool) -> dict[str, Any]:
    async with httpx.AsyncClient(verify=ctx, http2=http2) as client:
        r = await client.get(url + "/mtls")
    assert r.status_code == 200
    assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    return dict(r.json())


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2"])
async def test_client_certificate_in_tls_extension(start_server, ca, cert_files, http2):
    server = await start_server(info_app, tls=True, config=_mtls_config(cert_files, "required"))
    client_cert = ca.issue_cert("alice@example.com", common_name="Alice, Ltd.")
    tls = (await _get(server.urls[0], _client_context(ca, client_cert), http2))["tls"]
    assert tls["client_cert_chain"] and tls["client_cert_chain"][0].startswith(
        "-----BEGIN CERTIFICATE-----")
    assert tls["client_cert_chain"][0] == client_cert.cert_chain_pems[0].bytes().decode()
    # RFC 4514: the last RDN first, specials escaped.
    assert tls["client_cert_name"].startswith("CN=Alice\\, Ltd.,")
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert isinstance(tls["cipher_suite"], int) and 0 < tls["cipher_suite"] <= 0xFFFF
    certfile = await trio.Path(cert_files["certfile"]).read_text()
    assert certfile.startswith(tls["server_cert"].strip())
    assert tls["server_name"] is None  # an IP address in the URL: no SNI (RFC 6066 §3)


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2"])
async def test_sni_server_name_in_tls_extension(start_server, ca, cert_files, http2):
    server = await start_server(info_app, tls=True)
    url = server.urls[0].replace("127.0.0.1", "localhost")
    tls = (await _get(url, _client_context(ca, None), http2))["tls"]
    assert tls["server_name"] == "localhost"


async def test_required_mode_refuses_clients_without_certificate(start_server, ca, cert_files):
    server = await start_server(info_app, tls=True, config=_mtls_config(cert_files, "required"))
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        await _get(server.urls[0], _client_context(ca, None), http2=False)
    # A certificate from another CA is refused as well.
    other = trustme.CA().issue_cert("mallory@example.com")
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        await _get(server.urls[0], _client_context(ca, other), http2=False)
    assert server.statistics()["tls_handshake_failures"] >= 1


async def test_optional_mode_and_plain_tls_extension(start_server, ca, cert_files):
    server = await start_server(info_app, tls=True, config=_mtls_config(cert_files, "optional"))
    tls = (await _get(server.urls[0], _client_context(ca, None), http2=True))["tls"]
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
    plain = await start_server(info_app)
    async with httpx.AsyncClient() as client:
        assert (await client.get(plain.urls[0])).json()["tls"] is None


def test_ciphers_and_verify_mode_validation(cert_files):
    base = Config(certfile=cert_files["certfile"], keyfile=cert_files["keyfile"])
    ctx = create_ssl_context(replace(base, ciphers="ECDHE+AESGCM"))
    names = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names and all("GCM" in n for n in names)
    with pytest.raises(ConfigError, match="ciphers"):
        create_ssl_context(replace(base, ciphers="NO-SUCH-CIPHER"))
    with pytest.raises(ConfigError, match="needs ca_certs"):
        Config(verify_mode="required")
    assert create_ssl_context(
        replace(base, ca_certs=cert_files["cafile"], verify_mode="required")
    ).verify_mode == ssl.CERT_REQUIRED


def test_rfc4514_name():
    subject = ((("countryName", "US"),), (("organizationName", "A+B"),),
               (("commonName", " x#"), ("userId", "7")))
    assert rfc4514_name(subject) == "CN=\\ x#+UID=7,O=A\\+B,C=US"
    assert rfc4514_name(()) is None


async def test_dev_tls_serves_http2_with_a_generated_certificate(tmp_path):
    env = {"TRIO_HTTP_STATE_DIR": str(tmp_path)}
    async with run_cli("tests.apps.prod_apps:info_app", "--dev-tls", "--bind", "127.0.0.1:0",
                       env=env) as server:
        ca_path = re.search(r"trust its CA: (\S+)", server.text)
        assert ca_path is not None
        assert server.urls[0].startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=ca_path.group(1))
        port = server.port
        async with httpx.AsyncClient(verify=ctx, http2=True) as client:
            r = await client.get(f"https://localhost:{port}/")
        assert r.http_version == "HTTP/2" and r.json()["scheme"] == "https"


async def test_dev_tls_ca_is_reused(tmp_path):
    from trio_http._dev_tls import ensure_dev_certificate

    first = await trio.to_thread.run_sync(ensure_dev_certificate, tmp_path)
    ca_pem = (tmp_path / "ca.pem").read_bytes()
    (tmp_path / "old-ca.pem").write_bytes(ca_pem)
    (tmp_path / "cert.pem").unlink()  # force a new leaf, signed by the same CA
    again = await trio.to_thread.run_sync(ensure_dev_certificate, tmp_path)
    assert (tmp_path / "ca.pem").read_bytes() == ca_pem
    assert again.certfile == first.certfile
    _memory_handshake(ssl.create_default_context(cafile=str(tmp_path / "old-ca.pem")),
                      again.certfile, again.keyfile)


def _memory_handshake(client: ssl.SSLContext, certfile: str, keyfile: str) -> None:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certfile, keyfile)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    done = [False, False]
    for _ in range(10):
        for i, obj in enumerate((c, srv)):
            if not done[i]:
                try:
                    obj.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done):
            return
    raise AssertionError("handshake did not complete")
