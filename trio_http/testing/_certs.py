"""Certificates for test servers: one trustme CA per process (created on first use), and per CA
a leaf certificate for ``localhost``, ``127.0.0.1`` and ``::1`` written once to PEM files.

trustme is imported here lazily: it pulls in ``cryptography``, which plugin import must not pay.
"""

from __future__ import annotations

import atexit
import os
import shutil
import ssl
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import trustme

__all__ = ["CertBundle", "cert_bundle", "client_ssl_context", "default_ca"]

# serve_in_thread may be entered from several threads at once; the caches below are shared.
_lock = threading.Lock()
_default_ca: trustme.CA | None = None
# Keyed by id(ca); the CA itself is kept alive alongside so that the id cannot be reused.
_bundles: dict[int, tuple[trustme.CA, CertBundle]] = {}
_tmpdir: str | None = None


@dataclass(frozen=True)
class CertBundle:
    """A CA and the PEM files of the server certificate it issued (paths on disk)."""

    ca: trustme.CA
    #: The CA certificate (PEM), for clients: ``requests.get(url, verify=ca_file)``.
    ca_file: str
    #: The leaf certificate followed by its chain (PEM).
    certfile: str
    #: The leaf's private key (PEM, unencrypted).
    keyfile: str


def default_ca() -> trustme.CA:
    """The process-wide test CA, created on first use (the same object on every call)."""
    global _default_ca
    with _lock:
        if _default_ca is None:
            import trustme

            _default_ca = trustme.CA()
        return _default_ca


def _cleanup() -> None:
    if _tmpdir is not None:
        shutil.rmtree(_tmpdir, ignore_errors=True)


def cert_bundle(ca: trustme.CA | None = None) -> CertBundle:
    """The certificate files for ``ca`` (the default CA when ``None``), written on first use
    into a temporary directory removed at interpreter exit."""
    if ca is None:
        ca = default_ca()
    global _tmpdir
    with _lock:
        cached = _bundles.get(id(ca))
        if cached is not None:
            return cached[1]
        if _tmpdir is None:
            _tmpdir = tempfile.mkdtemp(prefix="trio_http_testing_")
            atexit.register(_cleanup)
        d = os.path.join(_tmpdir, str(len(_bundles)))
        os.mkdir(d)
        leaf = ca.issue_cert("localhost", "127.0.0.1", "::1")
        bundle = CertBundle(
            ca=ca,
            ca_file=os.path.join(d, "ca.pem"),
            certfile=os.path.join(d, "cert.pem"),
            keyfile=os.path.join(d, "key.pem"),
        )
        ca.cert_pem.write_to_path(bundle.ca_file)
        for blob in leaf.cert_chain_pems:
            blob.write_to_path(bundle.certfile, append=True)
        leaf.private_key_pem.write_to_path(bundle.keyfile)
        _bundles[id(ca)] = (ca, bundle)
        return bundle


def client_ssl_context(
    ca: trustme.CA, alpn: Sequence[str] | None = ("h2", "http/1.1")
) -> ssl.SSLContext:
    """A client context that trusts ``ca`` (and nothing else) and offers ``alpn``."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca.cert_pem.bytes().decode())
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx
