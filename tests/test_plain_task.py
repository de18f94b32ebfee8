"""Plain asyncio tasks: the keeper of a running trial's coalesced lease, and a worker's lanes."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from async_consumer._supervise.plain import PlainTask, run_copies

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


@pytest.mark.asyncio
async def test_join_tells_the_watcher_to_end_then_waits_for_it() -> None:
    """``join`` calls ``end`` (the watcher's own way to stop), then waits for the watcher."""
    told, ended = asyncio.Event(), []

    async def watcher() -> None:
        await told.wait()
        ended.append(True)

    with anyio.fail_after(HANG):
        task = PlainTask(watcher(), anyio.CancelScope(), end=told.set)
        await task.join()
    assert ended == [True]


@pytest.mark.anyio
async def test_copies_run_at_once_and_all_return() -> None:
    """Every copy runs at the same time (each waits for all to have started) and returns."""
    started, all_started = [], anyio.Event()

    async def work() -> None:
        started.append(True)
        if len(started) == 5:
            all_started.set()
        await all_started.wait()

    with anyio.fail_after(HANG):
        await run_copies(work, 5)
    assert len(started) == 5


@pytest.mark.anyio
async def test_an_error_stops_the_other_copies_after_their_shielded_parts() -> None:
    """One copy fails: the others are cancelled, but what they shield finishes; errors raised."""
    finished, parked = [], anyio.Event()

    async def work() -> None:
        if not parked.is_set():
            parked.set()
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05)  # a commit under way when the error comes
                finished.append("shielded")
            await anyio.sleep_forever()
        raise RuntimeError("a lane broke")

    with anyio.fail_after(HANG), pytest.raises(BaseExceptionGroup) as caught:
        await run_copies(work, 2)
    assert caught.group_contains(RuntimeError, match="a lane broke")
    assert finished == ["shielded"]


@pytest.mark.anyio
async def test_cancelling_the_caller_cancels_every_copy_and_waits_for_it() -> None:
    """The caller is cancelled: each copy is cancelled, its shielded part finishes first."""
    finished, parked = [], []

    async def work() -> None:
        parked.append(True)
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.01)
                finished.append(True)

    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_copies, work, 3)
            while len(parked) < 3:
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
    assert finished == [True, True, True]
