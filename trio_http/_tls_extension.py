"""The ``tls`` ASGI extension: what a scope tells the app about the connection's TLS session.

Source: the ASGI TLS extension (https://asgi.readthedocs.io/en/latest/specs/tls.html): keys
``server_cert`` (PEM or ``None``), ``client_cert_chain`` (PEM strings, leaf first),
``client_cert_name`` (RFC 4514 subject or ``None``), ``client_cert_error`` (``None`` once
verified), ``tls_version`` (e.g. ``0x0304``) and ``cipher_suite`` (the IANA 16-bit value);
beyond the spec, ``server_name``: the SNI host name the client sent (RFC 6066 §3), or ``None``.
Computed once per connection, after the handshake.
"""

from __future__ import annotations

import re
import ssl
from functools import lru_cache
from typing import Any

import trio

__all__ = ["quic_tls_extension", "rfc4514_name", "server_cert_pem", "tls_extension"]

_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_PEM_CERT = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
# RFC 4514 §3: the short names it defines; others are written as their OpenSSL long names.
_SHORT = {
    "commonName": "CN", "localityName": "L", "stateOrProvinceName": "ST",
    "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
    "streetAddress": "STREET", "domainComponent": "DC", "userId": "UID",
}


@lru_cache(maxsize=8)
def server_cert_pem(certfile: str | None) -> str | None:
    """The first certificate in ``certfile`` as PEM (the server's own), or ``None``."""
    if certfile is None:
        return None
    try:
        with open(certfile, encoding="ascii", errors="replace") as f:
            match = _PEM_CERT.search(f.read())
    except OSError:
        return None
    return match.group(0) + "\n" if match else None


def _escape(value: str) -> str:
    # RFC 4514 §2.4.
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        elif ch == "\x00":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def rfc4514_name(subject: Any) -> str | None:
    """The RFC 4514 string of a subject from :meth:`ssl.SSLSocket.getpeercert` (a tuple of
    RDNs, each a tuple of ``(name, value)`` pairs); RDNs in reverse order, as §2.1 says."""
    if not subject:
        return None
    rdns = []
    for rdn in reversed(subject):
        rdns.append("+".join(f"{_SHORT.get(k, k)}={_escape(v)}" for k, v in rdn))
    return ",".join(rdns)


@lru_cache(maxsize=1)
def _cipher_ids() -> dict[str, int]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    return {c["name"]: c["id"] & 0xFFFF for c in ctx.get_ciphers()}


def _cipher_id(name: str, context: ssl.SSLContext | None) -> int | None:
    found = _cipher_ids().get(name)
    if found is None and context is not None:
        for c in context.get_ciphers():
            if c["name"] == name:
                return int(c["id"]) & 0xFFFF
    return found


def tls_extension(
    stream: trio.SSLStream[Any], certfile: str | None
) -> dict[str, Any]:
    """The ``tls`` extension dict for a handshaken server-side ``stream``."""
    der = stream.getpeercert(binary_form=True)
    chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
    name = None
    if der:
        # The dict form is filled only for a certificate the context verified.
        info = stream.getpeercert()
        name = rfc4514_name(info.get("subject")) if info else None
    cipher = stream.cipher()
    context = getattr(stream, "context", None)
    version = stream.version()
    return {
        "server_cert": server_cert_pem(certfile),
        "client_cert_chain": chain,
        "client_cert_name": name,
        # The handshake rejects a certificate that fails verification, so one that is here
        # has passed.
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version) if version else None,
        "cipher_suite": _cipher_id(cipher[0], context) if cipher else None,
        # Not in the ASGI TLS extension: the name the client asked for (SNI), or None.
        "server_name": getattr(stream, "server_hostname", None),
    }


def quic_tls_extension(certfile: str | None) -> dict[str, Any]:
    """The ``tls`` extension dict of an HTTP/3 connection: always TLS 1.3 (RFC 9001 §4.2), and
    no client certificate (the QUIC endpoint does not ask for one). ``cipher_suite`` is
    ``None`` until the handshake completes and the caller fills it in."""
    return {
        "server_cert": server_cert_pem(certfile),
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS["TLSv1.3"],
        "cipher_suite": None,
        "server_name": None,
    }
