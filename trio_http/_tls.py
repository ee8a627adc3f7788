"""TLS for TCP binds: the server ``SSLContext`` (ALPN ``h2``/``http/1.1``, RFC 7301; TLS >= 1.2
and no compression, as RFC 9113 §9.2 requires for HTTP/2) and the handshake, run in the
connection's own task under ``tls_handshake_timeout``."""

from __future__ import annotations

import ssl

import trio

from ._config import Config
from ._errors import ConfigError

__all__ = ["create_ssl_context", "tls_handshake"]


_VERIFY_MODES = {
    "none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED,
}


def create_ssl_context(config: Config) -> ssl.SSLContext:
    """Build the server context from ``certfile``/``keyfile``/``keyfile_password``/``ca_certs``,
    ``verify_mode`` (client certificates: ``CERT_NONE``/``OPTIONAL``/``REQUIRED``) and
    ``ciphers``. Raises :class:`ConfigError` when the files cannot be loaded."""
    if config.certfile is None:
        raise ConfigError("TLS needs certfile (and keyfile)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    try:
        ctx.load_cert_chain(config.certfile, config.keyfile, password=config.keyfile_password)
        if config.ca_certs:
            ctx.load_verify_locations(cafile=config.ca_certs)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate or key: {exc}") from exc
    ctx.verify_mode = _VERIFY_MODES[config.verify_mode]
    if config.ciphers:
        try:
            ctx.set_ciphers(config.ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(f"ciphers {config.ciphers!r}: {exc}") from exc
    ctx.set_alpn_protocols(list(config.alpn_protocols))
    # Keep the name the client asked for (SNI, RFC 6066 §3) where the tls scope extension
    # can read it: on our own SSLObject class (SSLContext.sslobject_class is the documented
    # hook), exposed as server_hostname, which a server-side object otherwise leaves None.
    ctx.sslobject_class = _SNIRecordingSSLObject
    ctx.sni_callback = _record_sni
    return ctx


class _SNIRecordingSSLObject(ssl.SSLObject):
    _sni: str | None = None

    @property
    def server_hostname(self) -> str | None:
        name = super().server_hostname
        return name if name is not None else self._sni


def _record_sni(obj: object, server_name: str | None, _ctx: ssl.SSLContext) -> None:
    if isinstance(obj, _SNIRecordingSSLObject):
        obj._sni = server_name


async def tls_handshake(
    stream: trio.SSLStream[trio.abc.Stream], timeout: float  # noqa: ASYNC109
) -> str | None:
    """Run the server handshake within ``timeout`` seconds; return the ALPN protocol chosen
    (or ``None``). Raises :class:`trio.TooSlowError` on timeout and
    :class:`trio.BrokenResourceError` on a failed handshake."""
    with trio.fail_after(timeout):
        await stream.do_handshake()
    alpn: str | None = stream.selected_alpn_protocol()
    return alpn
