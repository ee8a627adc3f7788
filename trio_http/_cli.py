"""The command line: ``python -m trio_http [APP] --bind HOST:PORT ...``.

Flags follow Hypercorn's names where it has them (``--bind``, ``--insecure-bind``,
``--certfile``, ``--keyfile``, ``--graceful-timeout``, ``--keep-alive``, ``--root-path``,
``--access-logfile``, ``--log-level``). Exit status: 0 after a graceful shutdown on SIGINT or
SIGTERM; 1 when a bind cannot be opened; 2 for bad arguments or an app that cannot be
imported; 3 when lifespan startup fails.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

import trio

from ._config import Bind, Config, parse_bind
from ._errors import BindError, ConfigError, LifespanFailure
from ._serve import RunningServer, serve_asgi

__all__ = ["build_parser", "import_app", "main"]

logger = logging.getLogger("trio_http.error")

DEMO_APP = "trio_http.demo:app"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also the source of the CLI reference in the docs)."""
    d = Config()
    p = argparse.ArgumentParser(
        prog="python -m trio_http",
        description="Serve an ASGI application over HTTP/1.1, HTTP/2 (TLS with ALPN, h2c) "
                    "and HTTP/3 (QUIC).",
    )
    p.add_argument("app", nargs="?", default=DEMO_APP,
                   help=f"the ASGI app as module:attribute (default: the demo, {DEMO_APP})")
    p.add_argument("-b", "--bind", action="append", metavar="ADDR",
                   help="HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N; repeatable; TLS when a "
                        "certificate is given (default 127.0.0.1:8000)")
    p.add_argument("--insecure-bind", action="append", default=[], metavar="ADDR",
                   help="a plain-text bind served beside TLS binds; repeatable")
    p.add_argument("--certfile", help="PEM certificate chain: serve TLS with ALPN h2, http/1.1")
    p.add_argument("--keyfile", help="PEM private key")
    p.add_argument("--keyfile-password", help="password of an encrypted keyfile")
    p.add_argument("--ca-certs", help="PEM CA bundle for client certificates")
    p.add_argument("--root-path", default=d.root_path, help="ASGI root_path (mount point)")
    p.add_argument("--graceful-timeout", type=float, default=d.graceful_timeout, metavar="S",
                   help="seconds in-flight requests get at shutdown (default %(default)s)")
    p.add_argument("--keep-alive", type=float, default=d.keep_alive_timeout, metavar="S",
                   help="seconds an idle connection is kept open (default %(default)s)")
    p.add_argument("--tls-handshake-timeout", type=float, default=d.tls_handshake_timeout,
                   metavar="S", help="seconds a TLS handshake may take (default %(default)s)")
    p.add_argument("--max-connections", type=int, default=None, metavar="N",
                   help="connections served at once; past it accept() waits (default: no limit)")
    p.add_argument("--lifespan", choices=("auto", "on", "off"), default=d.lifespan,
                   help="ASGI lifespan protocol (default %(default)s)")
    p.add_argument("--h2-max-concurrent-streams", type=int, default=d.h2_max_concurrent_streams,
                   metavar="N", help="HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (default %(default)s)")
    p.add_argument("--h2-initial-window-size", type=int, default=d.h2_initial_window_size,
                   metavar="BYTES", help="HTTP/2 SETTINGS_INITIAL_WINDOW_SIZE (default %(default)s)")
    p.add_argument("--h2-max-frame-size", type=int, default=d.h2_max_frame_size, metavar="BYTES",
                   help="HTTP/2 SETTINGS_MAX_FRAME_SIZE (default %(default)s)")
    p.add_argument("--h2-max-header-list-size", type=int, default=d.h2_max_header_list_size,
                   metavar="BYTES",
                   help="HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE (default %(default)s)")
    p.add_argument("--max-request-header-size", type=int, default=d.max_request_header_size,
                   metavar="BYTES",
                   help="HTTP/1.1 request head limit, 431 past it (default %(default)s)")
    p.add_argument("--ws-max-message-size", type=int, default=d.websocket_max_message_size,
                   metavar="BYTES",
                   help="largest incoming WebSocket message; larger ones close with 1009 "
                        "(default %(default)s)")
    p.add_argument("--ws-max-queue", type=int, default=d.websocket_max_queue, metavar="N",
                   help="incoming WebSocket messages queued for the app before reading stops "
                        "(default %(default)s)")
    p.add_argument("--ws-ping-interval", type=float, default=d.websocket_ping_interval,
                   metavar="S", help="seconds between WebSocket keepalive PINGs (default: off)")
    p.add_argument("--ws-ping-timeout", type=float, default=d.websocket_ping_timeout,
                   metavar="S",
                   help="seconds to wait for a PONG before closing with 1011 (default %(default)s)")
    p.add_argument("--no-ws-per-message-deflate", dest="ws_per_message_deflate",
                   action="store_false",
                   help="do not negotiate WebSocket permessage-deflate (RFC 7692)")
    p.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"),
                   help="log level of the trio_http loggers (default %(default)s)")
    p.add_argument("--access-logfile", metavar="PATH",
                   help="write the access log here; '-' for stdout (default: off)")
    p.add_argument("--access-logformat", default=d.access_log_format, metavar="FORMAT",
                   help="access log format with Gunicorn-style atoms (default %(default)r)")
    p.add_argument("--quic-bind", action="append", default=[], metavar="ADDR",
                   help="HOST:PORT or [IPv6]:PORT (UDP) served with HTTP/3 over QUIC; "
                        "repeatable; needs --certfile")
    p.add_argument("--no-alt-svc", dest="alt_svc", action="store_false",
                   help="do not advertise HTTP/3 with alt-svc on TCP responses")
    return p


def import_app(spec: str) -> Any:
    """Import ``module:attribute`` (attribute may be dotted). Raises :class:`ConfigError`."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"APP must look like module:attribute, not {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(f"cannot import module {module_name!r}: {exc}") from exc
        raise
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _configure_logging(level: str, access_logfile: str | None) -> None:
    root = logging.getLogger("trio_http")
    root.setLevel(level.upper())
    if not any(isinstance(h, logging.StreamHandler) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname)s] %(message)s"))
        root.addHandler(handler)
    access = logging.getLogger("trio_http.access")
    access.propagate = False
    access.setLevel(logging.INFO)
    if access_logfile is not None:
        out = (logging.StreamHandler(sys.stdout) if access_logfile == "-"
               else logging.FileHandler(access_logfile))
        out.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(out)


def _describe(url: str) -> str:
    if url.startswith("https"):
        return f"{url} (HTTP/1.1, HTTP/2 over TLS with ALPN)"
    return f"{url} (HTTP/1.1, HTTP/2 cleartext: prior knowledge and Upgrade: h2c)"


async def _serve(app: Any, binds: list[Bind], config: Config) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server: RunningServer = await nursery.start(
                partial(serve_asgi, app, binds=binds, config=config)
            )
            for url in server.urls:
                logger.info("Serving on %s", _describe(url))
            for url in server.http3_urls:
                logger.info("Serving on %s (HTTP/3 over QUIC, UDP)", url)
            logger.info("Press CTRL+C to stop")
            async for signum in signals:
                logger.info("Received %s: shutting down gracefully (at most %s s)",
                            signal.Signals(signum).name, config.graceful_timeout)
                nursery.cancel_scope.cancel()
                break


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server from command-line arguments; return the exit status."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level, args.access_logfile)
    try:
        config = Config(
            certfile=args.certfile,
            keyfile=args.keyfile,
            keyfile_password=args.keyfile_password,
            ca_certs=args.ca_certs,
            root_path=args.root_path,
            graceful_timeout=args.graceful_timeout,
            keep_alive_timeout=args.keep_alive,
            tls_handshake_timeout=args.tls_handshake_timeout,
            max_connections=args.max_connections,
            lifespan=args.lifespan,
            h2_max_concurrent_streams=args.h2_max_concurrent_streams,
            h2_initial_window_size=args.h2_initial_window_size,
            h2_max_frame_size=args.h2_max_frame_size,
            h2_max_header_list_size=args.h2_max_header_list_size,
            max_request_header_size=args.max_request_header_size,
            websocket_max_message_size=args.ws_max_message_size,
            websocket_max_queue=args.ws_max_queue,
            websocket_ping_interval=args.ws_ping_interval,
            websocket_ping_timeout=args.ws_ping_timeout,
            websocket_per_message_deflate=args.ws_per_message_deflate,
            access_logfile=args.access_logfile,
            access_log_format=args.access_logformat,
            quic_binds=tuple(args.quic_bind),
            alt_svc=args.alt_svc,
        )
        tls = config.tls_enabled
        binds = [parse_bind(b, tls=tls) for b in (args.bind or ["127.0.0.1:8000"])]
        binds += [parse_bind(b, tls=False) for b in args.insecure_bind]
        app = import_app(args.app)
    except ConfigError as exc:
        print(f"trio_http: error: {exc}", file=sys.stderr)
        return 2
    status = 0
    try:
        trio.run(_serve, app, binds, config)
    except* BindError as group:
        print(f"trio_http: error: {_first(group)}", file=sys.stderr)
        status = 1
    except* ConfigError as group:
        print(f"trio_http: error: {_first(group)}", file=sys.stderr)
        status = 2
    except* LifespanFailure as group:
        print(f"trio_http: error: {_first(group)}", file=sys.stderr)
        status = 3
    except* KeyboardInterrupt:
        pass
    return status


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
