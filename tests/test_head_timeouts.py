"""Request-head timeouts armed just in time (_head_timeouts.py): exact keep-alive and head
deadlines on real connections, no deadline armed for a wait that ends early, and every
waiting connection armed when the task stops."""

from __future__ import annotations

from typing import Any

import trio

from trio_http import Config
from trio_http._head_timeouts import HeadTimeouts

from .apps.peers import H1Client, connect, read_until_eof
from .conftest import hello_app


def _timeouts(server: Any) -> HeadTimeouts:
    timeouts: HeadTimeouts = server._ctx.head_timeouts
    return timeouts


async def test_quick_keep_alive_requests_arm_nothing_and_idle_closes_on_time(
    start_server: Any, autojump_clock: Any
) -> None:
    server = await start_server(hello_app, config=Config(keep_alive_timeout=4))
    client = await H1Client.open(server.port)
    for _ in range(50):
        r = await client.request("GET", "/")
        assert r.status == 200
    timeouts = _timeouts(server)
    assert timeouts.statistics() == {"connections": 1, "armed": 0}
    start = trio.current_time()
    with trio.fail_after(30):
        assert await read_until_eof(client.stream) == b""
    assert 4 <= trio.current_time() - start < 4.01  # armed by the task, fired exactly
    assert timeouts.statistics()["armed"] == 1
    await trio.sleep(1)
    assert timeouts.statistics()["connections"] == 0  # the closed connection is gone


async def test_staggered_idle_connections_close_at_their_own_deadlines(
    start_server: Any, autojump_clock: Any
) -> None:
    server = await start_server(hello_app, config=Config(keep_alive_timeout=3))
    closed: dict[int, float] = {}
    opened: dict[int, float] = {}

    async def idle(i: int) -> None:
        await trio.sleep(i * 0.7)  # connections that do not line up with the task's ticks
        stream = await connect(server.port)
        opened[i] = trio.current_time()
        assert await read_until_eof(stream) == b""
        closed[i] = trio.current_time()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(idle, i)
    for i in range(6):
        assert 3 <= closed[i] - opened[i] < 3.01, (i, closed[i] - opened[i])


def test_the_tick_is_half_the_shortest_timeout() -> None:
    assert HeadTimeouts.for_timeouts(5.0, 10.0).tick == 2.5
    assert HeadTimeouts.for_timeouts(5.0, None).tick == 2.5
    assert HeadTimeouts.for_timeouts(None, None).tick == 1.0


class _Waiter:
    """A connection's side of HeadTimeouts (the HeadWaiter protocol)."""

    def __init__(self, deadline: float) -> None:
        self.head_waiting = True
        self.head_deadline = deadline
        self.armed_at: float | None = None

    def arm_head_deadline(self) -> None:
        self.head_waiting = False
        self.armed_at = trio.current_time()


async def test_a_wait_is_armed_within_one_tick_of_its_deadline_and_all_at_stop(
    autojump_clock: Any,
) -> None:
    timeouts = HeadTimeouts(tick=1.0)
    start = trio.current_time()
    near, far, done = _Waiter(start + 3.5), _Waiter(start + 100), _Waiter(start + 2)
    done.head_waiting = False  # its head came: nothing to arm
    for waiter in (near, far, done):
        timeouts.add(waiter)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timeouts.run)
        await trio.sleep(5.5)
        assert near.armed_at is not None
        assert 2.5 <= near.armed_at - start < 3.5  # before its deadline, at most a tick ahead
        assert far.armed_at is None and done.armed_at is None
        assert timeouts.running
        nursery.cancel_scope.cancel()
    assert not timeouts.running
    assert far.armed_at is not None  # stopping arms every wait still open
    assert done.armed_at is None
    assert timeouts.statistics() == {"connections": 3, "armed": 1}
