"""``--dev-tls``: a development certificate for ``localhost``, ``127.0.0.1`` and ``::1``, signed
by a local CA that nothing trusts until you tell a client to (``curl --cacert``), made with
trustme so that HTTP/2 over TLS and HTTP/3 work with one flag. Never for production.

The files live in ``$TRIO_HTTP_STATE_DIR`` or ``$XDG_STATE_HOME/trio_http/dev-tls`` (default
``~/.local/state/trio_http/dev-tls``) and are reused across runs, so a client told to trust
the CA once keeps trusting it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import ConfigError

__all__ = ["DevCertificate", "dev_tls_dir", "ensure_dev_certificate"]


class DevCertificate:
    """Paths of the PEM files: ``ca_path`` (trust this), ``certfile``, ``keyfile``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca_path = str(directory / "ca.pem")
        self.ca_key_path = str(directory / "ca-key.pem")
        self.certfile = str(directory / "cert.pem")
        self.keyfile = str(directory / "key.pem")

    def complete(self) -> bool:
        return all(os.path.isfile(p) for p in
                   (self.ca_path, self.ca_key_path, self.certfile, self.keyfile))


def dev_tls_dir() -> Path:
    explicit = os.environ.get("TRIO_HTTP_STATE_DIR")
    if explicit:
        return Path(explicit) / "dev-tls"
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "trio_http" / "dev-tls"


def ensure_dev_certificate(directory: Path | None = None) -> DevCertificate:
    """Create (or reuse) the development CA and localhost certificate. Raises
    :class:`ConfigError` when trustme is not installed or the directory is not writable."""
    dev = DevCertificate(directory or dev_tls_dir())
    if dev.complete():
        return dev
    try:
        import trustme
    except ImportError:
        raise ConfigError(
            "--dev-tls needs trustme: pip install 'trio_http[dev-tls]'"
        ) from None
    try:
        dev.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.path.isfile(dev.ca_path) and os.path.isfile(dev.ca_key_path):
            with open(dev.ca_path, "rb") as c, open(dev.ca_key_path, "rb") as k:
                ca = trustme.CA.from_pem(cert_bytes=c.read(), private_key_bytes=k.read())
        else:
            ca = trustme.CA(organization_name="trio_http development CA")
            ca.cert_pem.write_to_path(dev.ca_path)
            ca.private_key_pem.write_to_path(dev.ca_key_path)
        leaf = ca.issue_cert("localhost", "127.0.0.1", "::1")
        cert_path = Path(dev.certfile)
        cert_path.unlink(missing_ok=True)
        for blob in leaf.cert_chain_pems:
            blob.write_to_path(dev.certfile, append=True)
        leaf.private_key_pem.write_to_path(dev.keyfile)
        os.chmod(dev.keyfile, 0o600)
        os.chmod(dev.ca_key_path, 0o600)
    except OSError as exc:
        raise ConfigError(f"--dev-tls: cannot write {dev.directory}: {exc}") from None
    return dev
