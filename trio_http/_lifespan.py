"""The ASGI lifespan protocol (https://asgi.readthedocs.io/en/latest/specs/lifespan.html):
startup before the server reports itself ready, shutdown after the last connection drained,
and the ``state`` dict each request scope gets a shallow copy of."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._config import Config
from ._errors import LifespanFailure
from ._types import ASGIApp, Message

__all__ = ["open_lifespan"]

logger = logging.getLogger("trio_http.error")


@asynccontextmanager
async def open_lifespan(app: ASGIApp, config: Config) -> AsyncIterator[dict[str, Any] | None]:
    """Run the app's lifespan around the block; yield the lifespan ``state`` (``None`` when the
    app does not support lifespan, or ``config.lifespan == "off"``).

    Raises :class:`LifespanFailure` when startup fails (``lifespan.startup.failed``, an
    exception, or no answer within ``startup_timeout`` seconds) and, with ``lifespan="on"``,
    when the app does not support the protocol. Shutdown runs even when the block is cancelled,
    shielded, for at most ``shutdown_timeout`` seconds.
    """
    if config.lifespan == "off":
        yield None
        return
    state: dict[str, Any] = {}
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
    # One message of buffer each way (items): the protocol is a request/answer exchange, and
    # the slot lets an app that answers before it reads (send, then receive) go on rather
    # than deadlock against our own send.
    to_app, app_inbox = trio.open_memory_channel[Message](1)
    app_outbox, from_app = trio.open_memory_channel[Message](1)
    failure: list[BaseException] = []
    # The lifespan task outlives the server's cancellation (it must still hear
    # lifespan.shutdown), so it runs shielded and is cancelled explicitly at the very end.
    app_scope = trio.CancelScope(shield=True)

    async def run_app() -> None:
        with app_scope:
            async with app_outbox, app_inbox:
                # Recorded before the channels close, since closing wakes exchange() to
                # report the failure.
                try:
                    await app(scope, app_inbox.receive, app_outbox.send)
                except Exception as exc:
                    failure.append(exc)

    async def exchange(message: str, timeout: float) -> Message | None:  # noqa: ASYNC109
        with trio.fail_after(timeout):
            try:
                await to_app.send({"type": message})
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            try:
                return await from_app.receive()
            except trio.EndOfChannel:
                return None

    startup_error: LifespanFailure | None = None
    async with trio.open_nursery() as nursery:
        try:
            nursery.start_soon(run_app)
            try:
                answer = await exchange("lifespan.startup", config.startup_timeout)
            except trio.TooSlowError:
                answer = None
                startup_error = LifespanFailure(
                    f"the app did not complete lifespan startup in {config.startup_timeout} s"
                )
            supported = answer is not None
            if startup_error is not None:
                pass
            elif answer is None:
                # As Uvicorn does in "auto" mode, an app that raises before answering is taken
                # not to support lifespan (most raise on the unknown scope type).
                if config.lifespan == "on":
                    startup_error = LifespanFailure(
                        f"lifespan startup failed: {failure[0]!r}" if failure
                        else "the app returned without answering lifespan.startup"
                    )
                else:
                    logger.info("ASGI 'lifespan' protocol appears unsupported by the app.",
                                exc_info=failure[0] if failure else None)
            elif answer["type"] == "lifespan.startup.failed":
                startup_error = LifespanFailure(
                    f"lifespan startup failed: {answer.get('message', '')}"
                )
            elif answer["type"] != "lifespan.startup.complete":
                startup_error = LifespanFailure(f"unexpected lifespan message {answer['type']!r}")
            if startup_error is None:
                try:
                    yield state if supported else None
                finally:
                    if supported:
                        await _shutdown(exchange, config.shutdown_timeout)
        finally:
            app_scope.cancel()
    # Raised outside the nursery so that callers get it bare, not in an ExceptionGroup.
    if startup_error is not None:
        raise startup_error


async def _shutdown(exchange: Any, timeout: float) -> None:  # noqa: ASYNC109
    with trio.CancelScope(shield=True):  # bounded: exchange() runs under fail_after(timeout)
        try:
            answer = await exchange("lifespan.shutdown", timeout)
        except trio.TooSlowError:
            logger.error("the app did not complete lifespan shutdown in %s s", timeout)
        else:
            if answer is not None and answer["type"] == "lifespan.shutdown.failed":
                logger.error("lifespan shutdown failed: %s", answer.get("message", ""))
