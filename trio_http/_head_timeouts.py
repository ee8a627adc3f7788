"""Request-head timeouts (keep-alive and slow head) for HTTP/1.1 connections, armed lazily.

Giving each connection's watchdog a deadline for every request head, and taking it away again
when the head arrives, costs two trips through trio's deadline heap per request: about 12% of
the server's instructions per keep-alive request (counted by ``benchmarks/instructions.py``).
Nearly every wait ends long before its deadline, so here the connection only records when its
wait must end (:attr:`HeadWaiter.head_deadline`), and one task per server,
:meth:`HeadTimeouts.run`, looks at the waiting connections every ``tick`` seconds and gives a
real deadline only to those due before its next look. A timeout therefore still fires at its
exact time; only the connections close to one pay for it.

When the task is not running (a connection served by ``handle_asgi_stream``, or after the
server stopped accepting), connections arm their deadlines themselves, as before.
"""

from __future__ import annotations

import math
from typing import Protocol

import trio

__all__ = ["HeadTimeouts", "HeadWaiter"]


class HeadWaiter(Protocol):
    """What :class:`HeadTimeouts` needs of a connection."""

    #: When (trio's clock, seconds) the current wait must end.
    head_deadline: float

    @property
    def head_waiting(self) -> bool:
        """Waiting for a request head, with no deadline armed yet."""

    def arm_head_deadline(self) -> None:
        """Give the watchdog the deadline :attr:`head_deadline` now."""


class HeadTimeouts:
    """The connections of one server that may wait for a request head, and the task that arms
    their deadlines just in time. ``tick`` (seconds) must not exceed the shortest head
    timeout: then every deadline is seen by one look at most ``tick`` seconds before it."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        #: The task is running: connections may leave their deadlines to it.
        self.running = False
        self._waiters: set[HeadWaiter] = set()
        self._armed = 0

    @classmethod
    def for_timeouts(cls, *timeouts: float | None) -> HeadTimeouts:
        """A tick of half the shortest of ``timeouts`` (seconds; ``None``: no timeout)."""
        shortest = min((t for t in timeouts if t is not None), default=math.inf)
        return cls(shortest / 2 if shortest != math.inf else 1.0)

    def add(self, waiter: HeadWaiter) -> None:
        self._waiters.add(waiter)

    def discard(self, waiter: HeadWaiter) -> None:
        self._waiters.discard(waiter)

    def statistics(self) -> dict[str, int]:
        """``connections``: connections tracked (the only queue here, one item each);
        ``armed``: deadlines armed because a wait neared its deadline (not those armed as the
        task stops)."""
        return {"connections": len(self._waiters), "armed": self._armed}

    async def run(self) -> None:
        """Look at the waiting connections every :attr:`tick` seconds until cancelled; then
        arm every deadline still waiting, so that no wait goes unbounded."""
        self.running = True
        try:
            while True:
                await trio.sleep(self.tick)
                horizon = trio.current_time() + self.tick
                for waiter in self._waiters:
                    if waiter.head_waiting and waiter.head_deadline <= horizon:
                        self._armed += 1
                        waiter.arm_head_deadline()
        finally:
            self.running = False
            for waiter in self._waiters:
                if waiter.head_waiting:
                    waiter.arm_head_deadline()
