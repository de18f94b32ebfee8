"""The plain asyncio task that keeps a running trial's coalesced lease (not an anyio task)."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from async_consumer._supervise.running import PlainTask

HANG = 30  # seconds: only a hang guard, never a bound on how fast anything is


@pytest.mark.asyncio
async def test_a_failing_watcher_stops_the_wait_and_its_error_is_raised_by_join() -> None:
    """As in a task group: the watcher's error cancels the trial's wait, then reaches the caller."""

    async def watcher() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("the watcher broke")

    with anyio.fail_after(HANG):
        with anyio.CancelScope() as scope:
            task = PlainTask(watcher(), scope)
            await anyio.sleep_forever()  # the trial's wait: stopped by the watcher's error
        assert scope.cancelled_caught
        with pytest.raises(RuntimeError, match="the watcher broke"):
            await task.join()


@pytest.mark.asyncio
async def test_join_waits_for_the_watcher_even_when_the_caller_is_cancelled() -> None:
    """A join under a cancelled scope still waits for the watcher to end (shielded)."""
    release, ended = asyncio.Event(), []

    async def watcher() -> None:
        await release.wait()
        ended.append(True)

    with anyio.fail_after(HANG):
        wait_scope = anyio.CancelScope()  # the trial's wait, never entered here
        task = PlainTask(watcher(), wait_scope)
        with anyio.CancelScope() as outer:
            outer.cancel()
            asyncio.get_running_loop().call_soon(release.set)
            await task.join()
    assert ended == [True]
    assert not wait_scope.cancel_called
