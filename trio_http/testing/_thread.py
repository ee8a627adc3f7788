""":func:`serve_in_thread`: the test server of :func:`open_test_server`, run by its own
``trio.run`` in a background thread, for synchronous and asyncio test suites.

The thread and the test talk through a :class:`_Handoff`: the thread publishes its trio token
and the cancel scope around the server, then the :class:`TestServer`; the test stops the
server by cancelling that scope from outside (``TrioToken.run_sync_soon``) and joins the thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from trio_http import Config

from ._server import TestServer, _add_note_once, _open

if TYPE_CHECKING:
    import trustme

__all__ = ["serve_in_thread"]

# Seconds added to the server's own bounds (graceful drain, lifespan) before we give up on
# the thread: only a server bug could use them.
_SLACK = 10.0


class _Handoff:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token: trio.lowlevel.TrioToken | None = None
        self.scope: trio.CancelScope | None = None
        self.stop_requested = False
        self.server: TestServer | None = None
        self.error: BaseException | None = None
        # Set once the server accepts, or once the thread is over (startup failed).
        self.settled = threading.Event()

    def stop(self) -> None:
        with self.lock:
            self.stop_requested = True
            token, scope = self.token, self.scope
        if token is not None and scope is not None:
            try:
                token.run_sync_soon(scope.cancel)
            except trio.RunFinishedError:
                pass


async def _serve(
    handoff: _Handoff, open_server: Callable[[], AbstractAsyncContextManager[TestServer]]
) -> None:
    with trio.CancelScope() as scope:
        with handoff.lock:
            handoff.token = trio.lowlevel.current_trio_token()
            handoff.scope = scope
            if handoff.stop_requested:
                scope.cancel()
        async with open_server() as server:
            handoff.server = server
            handoff.settled.set()
            await trio.sleep_forever()


def _thread_main(
    handoff: _Handoff, open_server: Callable[[], AbstractAsyncContextManager[TestServer]]
) -> None:
    try:
        trio.run(_serve, handoff, open_server)
    except BaseException as exc:
        # Handed to the test's thread, which re-raises it; a thread must not die with it.
        handoff.error = exc
    finally:
        handoff.settled.set()


@contextmanager
def serve_in_thread(
    app: Any,
    *,
    tls: bool = True,
    http3: bool = False,
    config: Config | None = None,
    ca: trustme.CA | None = None,
    raise_app_errors: bool = True,
) -> Iterator[TestServer]:
    """Run :func:`open_test_server` (same arguments, same :class:`TestServer`) in a new
    thread with its own trio loop, for code that is not trio: plain synchronous tests
    (requests, urllib3, httpx.Client) or asyncio ones (httpx.AsyncClient, aiohttp).

    Entering returns once the server accepts connections (startup errors, such as
    :class:`trio_http.LifespanFailure`, are raised here). Leaving shuts it down gracefully
    and joins the thread, waiting at most ``graceful_timeout + shutdown_timeout`` seconds of
    ``config`` plus 10 (then :class:`RuntimeError`). If the app raised while serving a request,
    or the server failed, that exception is raised on leaving (attached as a note when the
    block itself raised), exactly as with :func:`open_test_server`.
    """
    cfg = config or Config()
    open_server = partial(
        _open, app, tls=tls, http3=http3, config=cfg, ca=ca,
        raise_app_errors=raise_app_errors, raise_on_exit=False,
    )
    handoff = _Handoff()
    thread = threading.Thread(
        target=_thread_main, args=(handoff, open_server), name="trio_http test server",
        daemon=True,
    )
    thread.start()
    startup_bound = cfg.startup_timeout + _SLACK
    stop_bound = cfg.graceful_timeout + cfg.shutdown_timeout + _SLACK
    try:
        if not handoff.settled.wait(startup_bound):
            raise RuntimeError(f"the trio_http test server did not start in {startup_bound} s")
        server = handoff.server
        if server is None:
            raise handoff.error or RuntimeError("the trio_http test server thread ended")
    except BaseException:
        handoff.stop()
        thread.join(stop_bound)
        raise

    body_exc: BaseException | None = None
    try:
        yield server
    except BaseException as exc:
        body_exc = exc
        raise
    finally:
        handoff.stop()
        thread.join(stop_bound)
        if thread.is_alive():
            raise RuntimeError(f"the trio_http test server did not stop in {stop_bound} s")
        error = handoff.error
        if error is not None:
            if body_exc is None:
                raise error
            _add_note_once(body_exc, f"trio_http.testing: the server thread also failed: {error!r}")
        elif body_exc is not None:
            server._attach_app_error(body_exc)
        else:
            app_error = server._pending_app_error()
            if app_error is not None:
                raise app_error
