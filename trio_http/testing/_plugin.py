"""The pytest plugin (entry point ``pytest11``): fixtures over :mod:`trio_http.testing`.

Importing this module must stay cheap, since pytest imports it in every test run of every
project that has trio_http installed: trio_http, trio, trustme, httpx and pytest_trio are
imported inside the fixtures that need them. The sync fixtures work without pytest-trio.

- ``trio_http_ca`` (session): the :class:`trustme.CA` that signs the servers' certificates.
- ``trio_http_serve`` (trio tests, needs pytest-trio):
  ``server = await trio_http_serve(app, tls=True, http3=False, config=None)``.
- ``trio_http_thread_server`` (any test): ``server = trio_http_thread_server(app, ...)``.
- ``trio_http_client`` (trio tests): ``client = trio_http_client(server)``, an
  :class:`httpx.AsyncClient` trusting the CA, speaking HTTP/2, with ``base_url=server.url``.

An exception the app raised while serving a request fails the test with the app's traceback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx
    import trio
    import trustme

    from trio_http import Config
    from trio_http.testing import TestServer

# The thread servers a test started, so that the call phase can raise their app errors.
_THREAD_SERVERS = pytest.StashKey["list[TestServer]"]()


@pytest.fixture(scope="session")
def trio_http_ca() -> trustme.CA:
    """The :class:`trustme.CA` behind every test server's certificate (one per session).
    Override it to use your own CA."""
    from trio_http.testing import default_ca

    return default_ca()


@pytest.fixture
def trio_http_thread_server(
    request: pytest.FixtureRequest, trio_http_ca: trustme.CA
) -> Iterator[Callable[..., TestServer]]:
    """A factory over :func:`trio_http.testing.serve_in_thread`:
    ``server = trio_http_thread_server(app, tls=True, http3=False, config=None,
    raise_app_errors=True)``. The servers stop after the test."""
    from trio_http.testing import serve_in_thread

    servers = request.node.stash.setdefault(_THREAD_SERVERS, [])
    with ExitStack() as stack:

        def start(
            app: Any,
            *,
            tls: bool = True,
            http3: bool = False,
            config: Config | None = None,
            raise_app_errors: bool = True,
        ) -> TestServer:
            server = stack.enter_context(
                serve_in_thread(app, tls=tls, http3=http3, config=config, ca=trio_http_ca,
                                raise_app_errors=raise_app_errors)
            )
            servers.append(server)
            return server

        yield start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    # Report an app's exception in the call phase, where it makes the test FAIL (rather than
    # ERROR in teardown): raised if the test passed, attached as a note if it failed.
    try:
        result = yield
    except BaseException as exc:
        for server in item.stash.get(_THREAD_SERVERS, ()):
            server._attach_app_error(exc)
        raise
    for server in item.stash.get(_THREAD_SERVERS, ()):
        error = server._pending_app_error()
        if error is not None:
            raise error
    return result


async def _serve_until_cancelled(
    app: Any,
    *,
    tls: bool,
    http3: bool,
    config: Config | None,
    ca: trustme.CA,
    raise_app_errors: bool,
    task_status: trio.TaskStatus[TestServer],
) -> None:
    import trio

    from trio_http.testing import open_test_server

    async with open_test_server(app, tls=tls, http3=http3, config=config, ca=ca,
                                raise_app_errors=raise_app_errors) as server:
        task_status.started(server)
        await trio.sleep_forever()


@pytest.fixture
async def trio_http_serve(
    nursery: trio.Nursery, trio_http_ca: trustme.CA
) -> Callable[..., Awaitable[TestServer]]:
    """An async factory: ``server = await trio_http_serve(app, tls=True, http3=False,
    config=None, raise_app_errors=True)`` starts :func:`trio_http.testing.open_test_server`
    in the test's nursery (pytest-trio's ``nursery`` fixture); the server shuts down
    gracefully once the test is over, then raises the app's first exception, if any."""
    from functools import partial

    async def serve(
        app: Any,
        *,
        tls: bool = True,
        http3: bool = False,
        config: Config | None = None,
        raise_app_errors: bool = True,
    ) -> TestServer:
        server: TestServer = await nursery.start(
            partial(_serve_until_cancelled, app, tls=tls, http3=http3, config=config,
                    ca=trio_http_ca, raise_app_errors=raise_app_errors)
        )
        return server

    return serve


@pytest.fixture
async def trio_http_client(
    trio_http_ca: trustme.CA,
) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """A factory: ``client = trio_http_client(server, **httpx_kwargs)`` gives an
    :class:`httpx.AsyncClient` with ``base_url=server.url``, trusting the test CA, with
    ``http2=True`` (HTTP/2 by ALPN over TLS; by prior knowledge, ``http1=False``, on a
    cleartext server). ``trio_http_client()`` with no server gives a client trusting the CA.
    Keyword arguments override these defaults. The clients are closed after the test."""
    import httpx

    from trio_http.testing._certs import client_ssl_context

    clients: list[httpx.AsyncClient] = []

    def make(server: TestServer | None = None, /, **kwargs: Any) -> httpx.AsyncClient:
        ca_source = server.ssl_context() if server is not None else None
        kwargs.setdefault("verify", ca_source or client_ssl_context(trio_http_ca))
        kwargs.setdefault("http2", True)
        if server is not None:
            kwargs.setdefault("base_url", server.url)
            if not server.tls:
                kwargs.setdefault("http1", False)
        client = httpx.AsyncClient(**kwargs)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in reversed(clients):
            await client.aclose()
