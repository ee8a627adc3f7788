""":func:`open_test_server` and :class:`TestServer`: a real trio_http server on 127.0.0.1 port
0 with a trustme certificate, for tests written in trio.

The app is wrapped in an :class:`_AppTrap` that counts requests per HTTP version and keeps the
exceptions the app raised. The server answers those requests with a 500 as usual; the test
server then re-raises the first of them when it stops, so a broken app fails the test with its
own traceback instead of a bare "500 != 200".
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import ssl
import threading
import traceback
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from trio_http import ClientDisconnected, Config, RunningServer, serve_asgi

from ._certs import CertBundle, cert_bundle, client_ssl_context

if TYPE_CHECKING:
    import trustme

__all__ = ["TestServer", "open_test_server"]

_HOST = "127.0.0.1"
_BIND = f"{_HOST}:0"
# Seconds statistics() waits for a server loop in another thread (it answers at once unless
# it is stuck, which is a bug worth an error).
_CROSS_THREAD_TIMEOUT = 10.0


def _as_asgi3(app: Any) -> Any:
    # The trap below is an ASGI 3 callable, so the server no longer sees the user's app and
    # cannot detect ASGI 2 for us. ASGI 2 apps are classes instantiated per scope.
    if inspect.isclass(app) and not hasattr(app, "__await__"):
        asgi2: Any = app

        async def asgi2_adapter(scope: Any, receive: Any, send: Any) -> None:
            await asgi2(scope)(receive, send)

        return asgi2_adapter
    return app


class _AppTrap:
    """Runs the app; counts ``http``/``websocket`` requests per HTTP version and records every
    exception the app raised while serving one (lifespan is passed through untouched: apps
    that do not support it raise on it, and the server deals with that)."""

    def __init__(self, app: Any) -> None:
        self.app = _as_asgi3(app)
        self.http_versions: collections.Counter[str] = collections.Counter()
        # (exception, "GET '/path'") in the order raised. Appended in the server's trio thread,
        # read from the test's thread: list.append and indexing are atomic under the GIL.
        self.errors: list[tuple[Exception, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self.http_versions[scope.get("http_version", "1.1")] += 1
        try:
            await self.app(scope, receive, send)
        except ClientDisconnected:
            # The client went away (a test that abandons a response): not an app bug.
            raise
        except Exception as exc:
            where = f"{scope.get('method', 'WEBSOCKET')} {scope.get('path', '')!r}"
            self.errors.append((exc, where))
            raise


class TestServer:
    """A running test server (from :func:`open_test_server` or :func:`serve_in_thread`).

    URLs have no trailing slash: ``server.url + "/path"``.

    - ``url``: ``https://127.0.0.1:PORT`` with TLS, else ``http://127.0.0.1:PORT``.
    - ``http1_url``: the URL for HTTP/1.1 (``url``).
    - ``h2_url``: HTTP/2 over TLS, chosen by ALPN (``url``; ``None`` without TLS).
    - ``h2c_url``: cleartext HTTP/2, by prior knowledge or ``Upgrade: h2c`` (``url``; ``None``
      with TLS).
    - ``http3_url``: ``https://127.0.0.1:UDP_PORT`` when started with ``http3=True``, else
      ``None``.
    - ``host``, ``port`` (TCP), ``http3_port`` (UDP or ``None``), ``tls``.
    - ``ca`` (:class:`trustme.CA`), ``ca_file`` (PEM path of the CA, for ``verify=``),
      ``certfile``/``keyfile`` (the server's PEM files).
    - ``running``: the underlying :class:`trio_http.RunningServer`.

    Thread-safe where it matters: :meth:`statistics`, :meth:`ssl_context`, ``app_error`` and
    :meth:`raise_app_error` may be called from any thread.
    """

    __test__ = False  # not a pytest test class, despite the name

    host: str
    port: int
    url: str
    http1_url: str
    h2_url: str | None
    h2c_url: str | None
    http3_url: str | None
    http3_port: int | None

    def __init__(
        self,
        running: RunningServer,
        certs: CertBundle,
        trap: _AppTrap,
        *,
        tls: bool,
        http3_port: int | None,
        raise_app_errors: bool,
    ) -> None:
        self.running = running
        self.tls = tls
        self.host = _HOST
        self.port = running.port
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{_HOST}:{self.port}"
        self.http1_url = self.url
        self.h2_url = self.url if tls else None
        self.h2c_url = None if tls else self.url
        self.http3_port = http3_port
        self.http3_url = f"https://{_HOST}:{http3_port}" if http3_port is not None else None
        self._certs = certs
        self._trap = trap
        self._raise_app_errors = raise_app_errors
        self._app_error_reported = False
        self._token = trio.lowlevel.current_trio_token()
        self._final_statistics: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<TestServer {self.url}{' +h3' if self.http3_url else ''}>"

    @property
    def ca(self) -> trustme.CA:
        return self._certs.ca

    @property
    def ca_file(self) -> str:
        return self._certs.ca_file

    @property
    def certfile(self) -> str:
        return self._certs.certfile

    @property
    def keyfile(self) -> str:
        return self._certs.keyfile

    def ssl_context(self, *, alpn: Sequence[str] | None = ("h2", "http/1.1")) -> ssl.SSLContext:
        """A new client :class:`ssl.SSLContext` that trusts this server's CA only and offers
        ``alpn`` (``("http/1.1",)`` forces HTTP/1.1; ``None`` offers nothing)."""
        return client_ssl_context(self.ca, alpn)

    def statistics(self) -> dict[str, Any]:
        """:meth:`trio_http.RunningServer.statistics` plus ``requests_by_http_version``
        (``{"1.1": 3, "2": 1}``: ``http``/``websocket`` requests the app saw, per protocol).

        From another thread it is read in the server's loop; once the server has stopped it
        returns the figures at the moment it stopped."""
        with self._lock:
            final = self._final_statistics
        if final is not None:
            return dict(final)
        try:
            in_loop = trio.lowlevel.current_trio_token() is self._token
        except RuntimeError:
            in_loop = False
        if in_loop:
            return self._snapshot()
        # Not trio.from_thread: the caller may be inside another trio run (a trio test using
        # a thread server), where that refuses to block. The wait is one loop iteration.
        result: list[dict[str, Any]] = []
        done = threading.Event()

        def snapshot() -> None:
            try:
                result.append(self._snapshot())
            finally:
                done.set()

        try:
            self._token.run_sync_soon(snapshot)
        except trio.RunFinishedError:
            pass
        else:
            done.wait(_CROSS_THREAD_TIMEOUT)
        if result:
            return result[0]
        with self._lock:
            if self._final_statistics is None:
                raise RuntimeError("the test server's loop did not answer statistics()")
            return dict(self._final_statistics)

    def _snapshot(self) -> dict[str, Any]:
        stats = self.running.statistics()
        stats["requests_by_http_version"] = dict(self._trap.http_versions)
        return stats

    def _stopped(self) -> None:
        snapshot = self._snapshot()
        with self._lock:
            self._final_statistics = snapshot

    @property
    def app_error(self) -> Exception | None:
        """The first exception the app raised while serving a request, or ``None``."""
        errors = self._trap.errors
        return errors[0][0] if errors else None

    @property
    def app_errors(self) -> list[Exception]:
        """Every exception the app raised while serving a request, oldest first."""
        return [exc for exc, _ in self._trap.errors]

    def raise_app_error(self) -> None:
        """Raise :attr:`app_error` now if there is one (and it was not raised before); leaving
        the server then does not raise it again. Use it to fail a test early."""
        error = self._take_app_error()
        if error is not None:
            raise error

    def _take_app_error(self) -> Exception | None:
        with self._lock:
            error = self.app_error
            if error is None or self._app_error_reported:
                return None
            self._app_error_reported = True
        count = len(self._trap.errors)
        if count > 1:
            _add_note_once(error, f"trio_http.testing: the app raised {count} exceptions; "
                                  "this is the first")
        return error

    def _attach_app_error(self, exc: BaseException) -> None:
        """The test failed anyway: attach the app's traceback to its exception as a note
        rather than replacing it (pytest shows notes under the traceback)."""
        if not self._raise_app_errors:
            return
        error = self._take_app_error()
        if error is None or error is exc:
            return
        where = self._trap.errors[0][1]
        text = "".join(traceback.format_exception(error)).rstrip()
        _add_note_once(exc, f"trio_http.testing: the app also raised while serving {where}:\n"
                            f"{text}")

    def _pending_app_error(self) -> Exception | None:
        return self._take_app_error() if self._raise_app_errors else None


def _is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is a :class:`trio.Cancelled`, or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)


def _add_note_once(exc: BaseException, note: str) -> None:
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


def _quic_options(config: Config) -> tuple[Config, dict[str, Any]]:
    """How to ask this build of trio_http for a QUIC (HTTP/3) bind: a ``quic_binds`` argument
    of :func:`serve_asgi`, or a ``quic_binds`` field of :class:`Config`. Returns the config
    and the extra keyword arguments for :func:`serve_asgi`."""
    if "quic_binds" in inspect.signature(serve_asgi).parameters:
        return config, {"quic_binds": [_BIND]}
    if "quic_binds" in {f.name for f in dataclasses.fields(Config)}:
        extra: dict[str, Any] = {"quic_binds": (_BIND,)}
        return dataclasses.replace(config, **extra), {}
    raise NotImplementedError(
        "http3=True: this version of trio_http cannot serve HTTP/3 (no quic_binds support)"
    )


def _quic_port(running: RunningServer) -> int:
    """The UDP port the server's QUIC endpoint is bound to (port 0 resolved)."""
    for name in ("quic_addresses", "http3_urls"):
        values = getattr(running, name, None)
        for value in values or ():
            if isinstance(value, tuple):
                return int(value[1])
            if isinstance(value, str):
                return int(value.rstrip("/").rsplit(":", 1)[1])
    raise NotImplementedError(
        "http3=True: cannot find the QUIC port of this trio_http RunningServer"
    )


def open_test_server(
    app: Any,
    *,
    tls: bool = True,
    http3: bool = False,
    config: Config | None = None,
    ca: trustme.CA | None = None,
    raise_app_errors: bool = True,
) -> AbstractAsyncContextManager[TestServer]:
    """Serve the ASGI ``app`` on 127.0.0.1, port 0, for the ``async with`` block; yield a
    :class:`TestServer` (URLs, CA, client ``ssl_context()``, ``statistics()``).

    ``tls=True`` serves HTTPS with a certificate for ``localhost``/``127.0.0.1``/``::1``
    issued by ``ca`` (default: a CA shared by the whole process); ALPN offers ``h2`` and
    ``http/1.1``. ``tls=False`` serves cleartext HTTP/1.1 and h2c. ``http3=True`` also serves
    HTTP/3 on a UDP port (needs ``tls``; raises :class:`NotImplementedError` where trio_http
    has no HTTP/3). ``config`` is any :class:`trio_http.Config`; with ``tls`` its own
    ``certfile`` is kept when set (then ``ca`` does not describe it).

    Leaving the block shuts the server down gracefully (at most ``config.graceful_timeout``
    seconds). Then, if the app raised while serving a request (the client saw a 500), the
    first such exception is raised, with its traceback; if the block itself raised, the app's
    traceback is attached to that exception as a note instead. ``raise_app_errors=False``
    turns this off (``TestServer.app_errors`` still lists them). Startup errors
    (:class:`trio_http.LifespanFailure`, ...) are raised on entry.
    """
    return _open(app, tls=tls, http3=http3, config=config, ca=ca,
                 raise_app_errors=raise_app_errors, raise_on_exit=True)


@asynccontextmanager
async def _open(
    app: Any,
    *,
    tls: bool,
    http3: bool,
    config: Config | None,
    ca: trustme.CA | None,
    raise_app_errors: bool,
    raise_on_exit: bool,
) -> AsyncIterator[TestServer]:
    # raise_on_exit=False leaves the app-error policy to the caller (serve_in_thread applies
    # it in the test's thread, where it knows whether the test's block raised).
    cfg = config or Config()
    if tls and not cfg.tls_enabled:
        certs = cert_bundle(ca)
        cfg = dataclasses.replace(cfg, certfile=certs.certfile, keyfile=certs.keyfile)
    elif not tls and cfg.tls_enabled:
        raise ValueError("tls=False, but config has a certfile")
    else:
        certs = cert_bundle(ca)
    extra: dict[str, Any] = {}
    if http3:
        if not tls:
            raise ValueError("http3=True needs tls=True: QUIC always runs TLS 1.3 (RFC 9001)")
        cfg, extra = _quic_options(cfg)
    trap = _AppTrap(app)

    server: TestServer | None = None
    inner_exc: BaseException | None = None
    outcome: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                running: RunningServer = await nursery.start(
                    partial(serve_asgi, trap, binds=[_BIND], config=cfg, **extra)
                )
                server = TestServer(
                    running, certs, trap, tls=tls,
                    http3_port=_quic_port(running) if http3 else None,
                    raise_app_errors=raise_app_errors,
                )
                yield server
            except BaseException as exc:
                inner_exc = exc
                raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Strict exception groups wrap the block's own exception (or a startup error); hand
        # it back unwrapped so that `pytest.raises` and tracebacks see what was raised.
        if inner_exc is not None and len(group.exceptions) == 1 \
                and group.exceptions[0] is inner_exc:
            outcome = inner_exc
        else:
            outcome = group
    except BaseException as exc:
        outcome = exc
    finally:
        if server is not None:
            server._stopped()

    if server is None:
        if outcome is not None:
            raise outcome
        return  # pragma: no cover  (start() returned nothing: cannot happen)
    if not raise_on_exit:
        if outcome is not None:
            raise outcome
        return
    if outcome is None:
        error = server._pending_app_error()
        if error is not None:
            raise error
        return
    if _is_cancellation(outcome):
        # Cancelled from outside (a fixture's nursery ending, a timeout): the app's error
        # is the news; raising it in place of Cancelled makes it fail the test.
        error = server._pending_app_error()
        if error is not None:
            # Python chains the Cancelled as __context__; it is noise next to the app's error.
            error.__suppress_context__ = True
            raise error
    else:
        server._attach_app_error(outcome)
    raise outcome
