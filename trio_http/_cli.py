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
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

from ._cli_limits import add_limit_arguments, limit_settings
from ._config import Bind, Config, parse_bind, split_header
from ._config_sources import resolve_settings, settings_to_toml
from ._dev_tls import ensure_dev_certificate
from ._errors import ConfigError
from ._logging import configure_logging
from ._runner import exit_status, remove_pid_file, run_server, systemd_binds, write_pid_file
from ._workers import SPEC_ENV, supervise, worker_main
from ._wsgi import WSGIMiddleware, is_wsgi_app

__all__ = ["build_parser", "config_from_args", "import_app", "load_app", "main"]

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
    p.add_argument("--server-name", dest="server_names", action="append", default=[],
                   metavar="HOST",
                   help="a host served: HOST, HOST:PORT or *.DOMAIN; requests for other hosts "
                        "get 421; repeatable (default: every host)")
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
                   metavar="BYTES",
                   help="HTTP/2 SETTINGS_INITIAL_WINDOW_SIZE (default %(default)s)")
    p.add_argument("--h2-max-frame-size", type=int, default=d.h2_max_frame_size, metavar="BYTES",
                   help="HTTP/2 SETTINGS_MAX_FRAME_SIZE (default %(default)s)")
    p.add_argument("--h2-max-header-list-size", type=int, default=d.h2_max_header_list_size,
                   metavar="BYTES",
                   help="HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE (default %(default)s)")
    p.add_argument("--h2c", choices=("both", "prior-knowledge", "upgrade", "off"),
                   default=d.h2c,
                   help="HTTP/2 on cleartext binds: prior knowledge, Upgrade: h2c, both, or "
                        "off (default %(default)s)")
    p.add_argument("--h2-ping-interval", type=float, default=d.h2_ping_interval, metavar="S",
                   help="seconds between HTTP/2 keepalive PINGs (default: off)")
    p.add_argument("--h2-ping-timeout", type=float, default=d.h2_ping_timeout, metavar="S",
                   help="seconds to wait for a PING's ACK before dropping the connection "
                        "(default %(default)s)")
    p.add_argument("--max-request-header-size", type=int, default=d.max_request_header_size,
                   metavar="BYTES",
                   help="HTTP/1.1 request head limit, 431 past it (default %(default)s)")
    p.add_argument("--h1-parser", choices=("auto", "h11", "httptools"), default=d.h1_parser,
                   help="HTTP/1.1 parser; auto = httptools if installed (default %(default)s)")
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
    p.add_argument("--no-server-header", dest="server_header", action="store_false",
                   help="do not add 'server: trio_http' to responses")
    p.add_argument("--no-date-header", dest="date_header", action="store_false",
                   help="do not add a date field (RFC 9110 §6.6.1) to responses")
    p.add_argument("--header", dest="response_headers", action="append", default=[],
                   type=_header, metavar="NAME:VALUE",
                   help="a field every response gets unless the app set one of that name "
                        "(a server field replaces trio_http's); repeatable")
    _add_production_arguments(p, d)
    add_limit_arguments(p, d)
    return p


def _header(text: str) -> str:
    try:
        name, value = split_header(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"{name}: {value}"


def _octal(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode like 0o660") from None


def _add_production_arguments(p: argparse.ArgumentParser, d: Config) -> None:
    g = p.add_argument_group("configuration sources")
    g.add_argument("--config", metavar="FILE",
                   help="TOML file of settings (keys as the options' names: bind = [...], "
                        "workers = 4); precedence: command line > TRIO_HTTP_* environment > "
                        "this file > [tool.trio_http] in ./pyproject.toml > defaults")
    g.add_argument("--env-file", metavar="FILE",
                   help="dotenv file of environment variables (NAME=value lines) for the app "
                        "and for TRIO_HTTP_* settings; variables already set win "
                        "(needs python-dotenv)")
    g.add_argument("--print-config", action="store_true",
                   help="print the effective settings as TOML and exit")
    g = p.add_argument_group("application")
    g.add_argument("--factory", action="store_true",
                   help="APP is a callable returning the application")
    g.add_argument("--app-dir", metavar="DIR", help="import APP from this directory")
    g.add_argument("--interface", choices=("auto", "asgi", "wsgi"), default="auto",
                   help="ASGI (2 or 3) or WSGI (PEP 3333, run in worker threads); "
                        "auto guesses (default %(default)s)")
    g.add_argument("--wsgi-max-threads", type=int, default=d.wsgi_max_threads, metavar="N",
                   help="WSGI requests running at once (default %(default)s)")
    g = p.add_argument_group("processes")
    g.add_argument("--workers", type=int, metavar="N",
                   help="run N worker processes under a supervisor sharing the sockets "
                        "(default: serve in this process)")
    g.add_argument("--max-requests", type=int, metavar="N",
                   help="a worker is replaced after about N requests (default: never)")
    g.add_argument("--max-requests-jitter", type=int, default=0, metavar="N",
                   help="add 0..N at random to --max-requests per worker (default 0)")
    g.add_argument("--pid", metavar="FILE", help="write the (supervisor's) process id here")
    g.add_argument("--reload", action="store_true",
                   help="development: restart the worker when source files change "
                        "(needs watchfiles)")
    g.add_argument("--reload-dir", action="append", default=[], metavar="DIR",
                   help="directory to watch with --reload; repeatable (default: the "
                        "app directory)")
    g = p.add_argument_group("sockets")
    g.add_argument("--backlog", type=int, default=d.backlog, metavar="N",
                   help="listen(2) backlog (default %(default)s)")
    g.add_argument("--umask", type=_octal, metavar="MODE",
                   help="process umask, e.g. 0o077 (default: inherited)")
    g.add_argument("--uds-mode", type=_octal, metavar="MODE",
                   help="permissions of unix socket files, e.g. 0o660")
    g = p.add_argument_group("logging")
    g.add_argument("--log-config", metavar="FILE",
                   help="logging configuration: dictConfig from .json/.toml, fileConfig "
                        "from .ini/.conf")
    g.add_argument("--error-logfile", metavar="PATH",
                   help="write the error log here; '-' for stderr (default)")
    g = p.add_argument_group("proxies")
    g.add_argument("--proxy-headers", action="store_true",
                   help="trust Forwarded / X-Forwarded-For, -Proto, -Host from "
                        "--forwarded-allow-ips")
    g.add_argument("--forwarded-allow-ips", default=",".join(d.forwarded_allow_ips),
                   metavar="LIST",
                   help="comma-separated IPs and CIDRs of trusted proxies, '*' for all "
                        "(default %(default)s); unix socket peers are trusted")
    g.add_argument("--proxy-protocol", action="store_true",
                   help="accept a PROXY protocol v1/v2 header (HAProxy) from trusted peers "
                        "on every bind")
    g = p.add_argument_group("TLS")
    g.add_argument("--verify-mode", choices=("none", "optional", "required"),
                   default=d.verify_mode,
                   help="ask for client certificates, verified against --ca-certs "
                        "(default %(default)s)")
    g.add_argument("--ciphers", help="OpenSSL cipher list for TLS 1.2")
    g.add_argument("--dev-tls", action="store_true",
                   help="development: serve TLS with a generated localhost certificate and "
                        "print the CA to trust")
    g = p.add_argument_group("metrics")
    g.add_argument("--metrics-bind", metavar="ADDR",
                   help="serve statistics in the Prometheus text format at "
                        "http://ADDR/metrics")


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



def load_app(args: argparse.Namespace, config: Config) -> Any:
    """Import ``args.app`` (from ``--app-dir``), call it under ``--factory``, and wrap a WSGI
    app (``--interface``) for serving. Raises :class:`ConfigError`."""
    if args.app_dir:
        sys.path.insert(0, os.path.abspath(args.app_dir))
    app = import_app(args.app)
    if args.factory:
        if not callable(app):
            raise ConfigError(f"--factory: {args.app!r} is not callable")
        app = app()
        if inspect.isawaitable(app):
            raise ConfigError(f"--factory: {args.app!r} must return the app, not a coroutine")
    interface = args.interface
    if interface == "auto":
        interface = "wsgi" if is_wsgi_app(app) else "asgi"
    if interface == "wsgi":
        app = WSGIMiddleware(app, max_threads=config.wsgi_max_threads)
    return app


def configure_from_args(args: argparse.Namespace) -> None:
    """Set up logging from the logging settings. Raises :class:`ConfigError`."""
    configure_logging(level=args.log_level, log_config=args.log_config,
                      error_logfile=args.error_logfile, access_logfile=args.access_logfile)


def config_from_args(args: argparse.Namespace) -> Config:
    """The :class:`Config` for the settings in ``args``. Raises :class:`ConfigError`."""
    access_logfile = args.access_logfile
    if access_logfile is None and args.log_config:
        # A --log-config that gives the access logger handlers turns access logging on.
        access = logging.getLogger("trio_http.access")
        if access.handlers and access.isEnabledFor(logging.INFO):
            access_logfile = "-"
    return Config(
        certfile=args.certfile,
        keyfile=args.keyfile,
        keyfile_password=args.keyfile_password,
        ca_certs=args.ca_certs,
        root_path=args.root_path,
        server_names=tuple(args.server_names),
        graceful_timeout=args.graceful_timeout,
        keep_alive_timeout=args.keep_alive,
        tls_handshake_timeout=args.tls_handshake_timeout,
        max_connections=args.max_connections,
        lifespan=args.lifespan,
        h2_max_concurrent_streams=args.h2_max_concurrent_streams,
        h2_initial_window_size=args.h2_initial_window_size,
        h2_max_frame_size=args.h2_max_frame_size,
        h2_max_header_list_size=args.h2_max_header_list_size,
        h2c=args.h2c,
        h2_ping_interval=args.h2_ping_interval,
        h2_ping_timeout=args.h2_ping_timeout,
        max_request_header_size=args.max_request_header_size,
        h1_parser=args.h1_parser,
        websocket_max_message_size=args.ws_max_message_size,
        websocket_max_queue=args.ws_max_queue,
        websocket_ping_interval=args.ws_ping_interval,
        websocket_ping_timeout=args.ws_ping_timeout,
        websocket_per_message_deflate=args.ws_per_message_deflate,
        access_logfile=access_logfile,
        access_log_format=args.access_logformat,
        quic_binds=tuple(args.quic_bind),
        alt_svc=args.alt_svc,
        server_header=args.server_header,
        date_header=args.date_header,
        response_headers=tuple(split_header(h) for h in args.response_headers),
        backlog=args.backlog,
        unix_socket_mode=args.uds_mode,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        proxy_protocol=args.proxy_protocol,
        verify_mode=args.verify_mode,
        ciphers=args.ciphers,
        wsgi_max_threads=args.wsgi_max_threads,
        **limit_settings(args),
    )


def _binds(args: argparse.Namespace, config: Config) -> list[Bind]:
    tls = config.tls_enabled
    activated = systemd_binds()
    explicit = args.bind or ([] if activated else ["127.0.0.1:8000"])
    binds = [parse_bind(b, tls=tls) for b in [*activated, *explicit]]
    binds += [parse_bind(b, tls=False) for b in args.insecure_bind]
    return binds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server from command-line arguments; return the exit status."""
    spec = os.environ.pop(SPEC_ENV, None)
    if spec is not None:
        return worker_main(spec)
    parser = build_parser()
    try:
        settings = resolve_settings(parser, argv)
        for name, value in settings.env_file_values.items():
            os.environ.setdefault(name, value)  # before the app is imported
        if settings.print_config:
            sys.stdout.write(settings_to_toml(settings, parser))
            return 0
        args = settings.namespace()
        configure_from_args(args)
        if args.umask is not None:
            os.umask(args.umask)
        if args.dev_tls and not args.certfile:
            dev = ensure_dev_certificate()
            args.certfile, args.keyfile = dev.certfile, dev.keyfile
            logger.info("Development TLS certificate for localhost; trust its CA: %s",
                        dev.ca_path)
        config = config_from_args(args)
        binds = _binds(args, config)
        supervised = args.workers is not None or args.reload or args.max_requests is not None
        if supervised:
            _check_supervised(args, config)
        else:
            app = load_app(args, config)
    except ConfigError as exc:
        print(f"trio_http: error: {exc}", file=sys.stderr)
        return 2
    if args.pid:
        write_pid_file(args.pid)
    try:
        if supervised:
            reload_dirs = None
            if args.reload:
                reload_dirs = args.reload_dir or [os.path.abspath(args.app_dir or os.getcwd())]
            return exit_status(partial(
                supervise, vars(args), binds, config,
                workers=args.workers or 1, reload_dirs=reload_dirs,
                max_requests=args.max_requests, max_requests_jitter=args.max_requests_jitter,
                metrics_bind=args.metrics_bind,
            ))
        return exit_status(partial(run_server, app, binds, config,
                                   metrics_bind=args.metrics_bind))
    finally:
        if args.pid:
            remove_pid_file(args.pid)


def _check_supervised(args: argparse.Namespace, config: Config) -> None:
    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.max_requests is not None and args.max_requests < 1:
        raise ConfigError("--max-requests must be at least 1")
    if args.reload:
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--reload needs watchfiles: pip install 'trio_http[reload]'"
            ) from None
    elif config.quic_binds:
        raise ConfigError("--quic-bind cannot be shared by worker processes: serve HTTP/3 "
                          "without --workers/--max-requests")
