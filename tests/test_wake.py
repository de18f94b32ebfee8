"""The wake-up a heartbeat task waits on: it wakes its waiter as an event would, on both loops."""

from __future__ import annotations

import anyio
import pytest

from async_consumer._supervise.wake import Wake

pytestmark = pytest.mark.anyio

HANG = 30  # seconds: only a hang guard, never a bound on how fast anything is


async def test_set_wakes_the_waiting_task_and_the_wait_clears_it() -> None:
    """A task waiting on a wake-up returns once it is set; the next wait waits again."""
    wake, woken, waiting = Wake(), anyio.Event(), anyio.Event()

    async def waiter() -> None:
        waiting.set()
        await wake.wait()
        woken.set()

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await waiting.wait()
            await anyio.lowlevel.checkpoint()  # the waiter is parked on the wake-up now
            assert not woken.is_set()
            wake.set()
            await woken.wait()
    assert not wake.is_set()
    with anyio.move_on_after(0.05) as scope:  # cleared: a new wait does not return by itself
        await wake.wait()
    assert scope.cancelled_caught


async def test_set_before_the_wait_returns_at_once() -> None:
    """A wake-up set while nobody waits is kept for the next wait, which then clears it."""
    wake = Wake()
    wake.set()
    wake.set()  # twice is once
    with anyio.fail_after(HANG):
        await wake.wait()
    assert not wake.is_set()


async def test_a_cancelled_wait_leaves_it_usable() -> None:
    """Cancelling a wait leaves nothing behind: a set afterwards wakes the next wait."""
    wake = Wake()
    with anyio.move_on_after(0.01):
        await wake.wait()
    wake.set()  # nobody waits: no error, kept for the next
    with anyio.fail_after(HANG):
        await wake.wait()


async def test_a_wait_with_a_limit_returns_when_set_or_when_the_time_is_up() -> None:
    """``wait(at_most)`` returns once set, or after ``at_most`` seconds if nobody sets it."""
    wake = Wake()
    before = anyio.current_time()
    with anyio.fail_after(HANG):
        await wake.wait(0.01)  # nobody sets it: the time is up
    assert anyio.current_time() - before >= 0.009  # a timer may fire a clock tick early
    assert not wake.is_set()
    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wake.wait, 3600)  # an hour: set long before
            await anyio.lowlevel.checkpoint()  # the waiter is parked on the wake-up now
            wake.set()
    wake.set()  # set before the wait: it returns at once, limit or not
    with anyio.fail_after(HANG):
        await wake.wait(3600)


async def test_awaiting_the_wake_up_itself_is_a_wait() -> None:
    """``await wake`` returns once set, at once if set before, and survives a cancelled await."""
    wake, woken = Wake(), anyio.Event()

    async def waiter() -> None:
        await wake
        woken.set()

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.lowlevel.checkpoint()  # the waiter is parked on the wake-up now
            wake.set()
            await woken.wait()
        assert not wake.is_set()
        wake.set()
        await wake  # set before: at once, and cleared
        assert not wake.is_set()
    with anyio.move_on_after(0.01) as scope:
        await wake
    assert scope.cancelled_caught
    wake.set()  # after a cancelled await: kept for the next
    with anyio.fail_after(HANG):
        await wake
