"""The retrying store's batched calls through an outage: retried, answered item by item."""

from __future__ import annotations

import anyio
import pytest

from async_consumer._errors import LeaseLost, StoreUnavailable
from async_consumer._models import Lease, Status, TrialStatus
from async_consumer.stores import Finish, Reservation
from async_consumer.stores._retrying import Outage, RetryingStore

from ..conftest import Flaky
from .conftest import make_trials, outcome

pytestmark = pytest.mark.asyncio


async def _retrying(count: int) -> tuple[Flaky, RetryingStore, list[Lease]]:
    flaky = Flaky()
    await flaky.add(make_trials(count))
    retrying = RetryingStore(flaky, outage=Outage(30.0, backoff=0.001, max_backoff=0.01))
    leases = await retrying.reserve_many("w", count)
    assert len(leases) == count
    return flaky, retrying, leases


async def test_a_beat_waits_for_the_store_and_renews(caplog: pytest.LogCaptureFixture) -> None:
    """A batched beat is retried through an outage; it still reports the lease that moved on."""
    flaky, retrying, leases = await _retrying(3)
    await flaky.reclaim_leases([("t1", leases[1].token, "")], "gone")
    flaky.failures = 5
    assert await retrying.heartbeat_many(leases) == ["t1"]
    assert flaky.failures == 0 and retrying.outage.outages == 1
    assert await retrying.heartbeat_many([]) == []


async def test_a_beat_gives_up_when_the_first_lease_may_have_run_out() -> None:
    """Retries of a batched beat stop when the earliest of its leases may be gone."""
    flaky, retrying, leases = await _retrying(2)
    retrying.lease_seconds = 0.05
    flaky.failures = 10**9
    with anyio.fail_after(10), pytest.raises(StoreUnavailable, match="refused"):
        await retrying.heartbeat_many(leases)


async def test_a_group_commit_recorded_before_its_answer_was_lost_counts() -> None:
    """Items a lost answer had recorded are answered with their status; a lost lease stays lost."""
    flaky, retrying, leases = await _retrying(3)
    await flaky.reclaim_leases([("t2", leases[2].token, "")], "gone")
    items = [Finish(lease, outcome(lease)) for lease in leases]
    flaky.commit_then_fail = True
    answers = await retrying.finish_many(items)
    assert answers[:2] == [TrialStatus.COMPLETED, TrialStatus.COMPLETED]
    assert isinstance(answers[2], LeaseLost)
    assert flaky.batches == [["t0", "t1", "t2"], ["t0", "t1", "t2"]]
    assert (await flaky.get("t0")).outcome == items[0].outcome


async def test_a_group_commit_through_an_outage_keeps_expired_leases_outcomes() -> None:
    """Items whose lease ran out by the local clock during the outage are recorded all the same."""
    flaky, retrying, leases = await _retrying(2)
    retrying.lease_seconds = 3600.0
    retrying._beaten["t0", leases[0].token] = anyio.current_time() - 3600.0  # t0's lease ran out
    flaky.failures = 10**9
    items = [Finish(lease, outcome(lease, Status.BROKEN)) for lease in leases]
    async with anyio.create_task_group() as tg:
        answers: list[TrialStatus | LeaseLost] = []

        async def finish() -> None:
            answers.extend(await retrying.finish_many(items))

        tg.start_soon(finish)
        while retrying.outage.down_since is None:  # the first try failed: the store is away
            await anyio.lowlevel.checkpoint()
        flaky.failures = 0
    assert answers == [TrialStatus.BROKEN, TrialStatus.BROKEN]
    assert flaky.batches == [["t0", "t1"]]
    assert retrying._beaten == {}


async def test_a_group_commit_past_the_outage_limit_raises() -> None:
    """Past the outage limit the whole call raises StoreUnavailable, as ``finish`` does."""
    flaky, retrying, leases = await _retrying(2)
    retrying.outage = Outage(0.05, backoff=0.001, max_backoff=0.01)
    flaky.failures = 10**9
    items = [Finish(lease, outcome(lease)) for lease in leases]
    with anyio.fail_after(10), pytest.raises(StoreUnavailable, match="unreachable for"):
        await retrying.finish_many(items)


async def test_reclaim_stale_passes_spare_through() -> None:
    """The retrying store hands ``spare`` to the store: the spared holder's lease stays."""
    flaky = Flaky()
    await flaky.add(make_trials(2))
    retrying = RetryingStore(flaky)
    await retrying.reserve("w", Reservation(holder="me"))
    await retrying.reserve("w", Reservation(holder="other"))
    assert await retrying.reclaim_stale(0.0, spare="me") == ["t1"]


async def test_reclaim_stale_passes_running_and_wedged_through() -> None:
    """
    The retrying store hands ``running`` and ``wedged`` to the store, timed or not: a running
    holder's lease stays until it is ``wedged`` seconds stale.
    """
    flaky = Flaky()
    await flaky.add(make_trials(2))
    retrying = RetryingStore(flaky)
    await retrying.reserve("w", Reservation(holder="slow"))
    await retrying.reserve("w", Reservation(holder="slower"))
    assert await retrying.reclaim_stale(0.0, running=["slow", "slower"], wedged=60.0) == []
    look = await retrying.reclaim_stale_timed(0.0, running=["slow", "slower"], wedged=60.0)
    assert look.reclaimed == []
    assert await retrying.reclaim_stale(0.0, running=["slow"], wedged=0.0) == ["t0", "t1"]
