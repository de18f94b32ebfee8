"""The batched calls on every store: one beat for many leases, reservations and finishes."""

from __future__ import annotations

from datetime import datetime

import anyio
import pytest

from async_consumer._errors import LeaseLost
from async_consumer._models import Lease, Reason, Status, TrialStatus
from async_consumer.stores import Finish, Reservation, TrialStore

from .conftest import MakeStore, make_trials, outcome

pytestmark = pytest.mark.asyncio


async def _reserve(store: TrialStore, n: int, worker: str = "w") -> list[Lease]:
    leases = await store.reserve_many(worker, n)
    assert len(leases) == n
    return leases


async def _beats(store: TrialStore, *ids: str) -> list[datetime]:
    """The trials' last beats, checked to be their last attempts' too."""
    beats = []
    for trial_id in ids:
        stored = await store.get(trial_id)
        assert stored.heartbeat_at is not None
        assert stored.attempts[-1].heartbeat_at == stored.heartbeat_at
        beats.append(stored.heartbeat_at)
    return beats


async def test_a_moved_on_lease_is_lost_and_the_others_are_renewed(store: TrialStore) -> None:
    """In one beat, the lease whose token moved on is reported; the others' beats move on."""
    await store.add(make_trials(4))
    old = (await _reserve(store, 1))[0]
    assert await store.reclaim_leases([("t0", old.token, "")], "gone") == ["t0"]
    new, a, b, _ = await _reserve(store, 4)
    assert (new.trial_id, new.token) == ("t0", old.token + 1)
    before = await _beats(store, "t0", "t1", "t2", "t3")
    await anyio.sleep(0.01)  # let the store's clock (millisecond resolution) move on
    assert await store.heartbeat_many([a, old, b]) == ["t0"]
    after = await _beats(store, "t0", "t1", "t2", "t3")
    assert after[0] == before[0]  # the successor's lease was not touched by the old one's beat
    assert after[1] > before[1] and after[2] > before[2]
    assert after[3] == before[3]  # not in the call
    assert await store.reclaim_stale(3600.0) == []
    await store.heartbeat(new)  # still current, as are a and b
    assert await store.finish_many([Finish(a, outcome(a)), Finish(b, outcome(b))]) == [
        TrialStatus.COMPLETED,
        TrialStatus.COMPLETED,
    ]


async def test_heartbeat_many_reports_in_the_order_given(store: TrialStore) -> None:
    """Every lease no longer current is reported, in input order; nothing given, nothing done."""
    assert await store.heartbeat_many([]) == []
    await store.add(make_trials(5))
    leases = await _reserve(store, 5)
    for lease in (leases[3], leases[1]):
        await store.finish(lease, outcome(lease))
    assert await store.heartbeat_many(leases[::-1]) == ["t3", "t1"]
    assert await store.heartbeat_many(leases) == ["t1", "t3"]


async def test_a_thousand_leases_in_one_beat(store: TrialStore) -> None:
    """A beat of a thousand leases renews each of them and reports the few that are not ours."""
    await store.add(make_trials(1000))
    leases = await store.reserve_many("w", 1000)
    lost = leases[10::100]
    await store.finish_many([Finish(lease, outcome(lease)) for lease in lost])
    assert await store.heartbeat_many(leases) == [lease.trial_id for lease in lost]
    assert (await store.counts())[TrialStatus.RESERVED] == 990


async def test_reserve_many_in_order_with_attempts(store: TrialStore) -> None:
    """Up to n of the oldest trials, each with its own token and attempt; fewer when fewer wait."""
    await store.add(make_trials(5))
    first = await store.reserve("w")
    assert first is not None
    await store.finish(first, outcome(first, Status.INTERRUPTED))  # t0 waits again, first
    leases = await store.reserve_many("w2", 10, Reservation(host="h", holder="h/1/2"))
    assert [lease.trial_id for lease in leases] == ["t0", "t1", "t2", "t3", "t4"]
    assert [lease.token for lease in leases] == [2, 1, 1, 1, 1]
    assert [lease.trial.attempt for lease in leases] == [2, 1, 1, 1, 1]
    assert {lease.worker for lease in leases} == {"w2"}
    assert await store.reserve_many("w2", 3) == []
    for lease in leases:
        stored = await store.get(lease.trial_id)
        attempt = stored.attempts[-1]
        assert (stored.status, stored.token) == (TrialStatus.RESERVED, lease.token)
        assert (attempt.number, attempt.token, attempt.worker, attempt.host) == (
            lease.token,
            lease.token,
            "w2",
            "h",
        )
    assert sorted(h[0] for h in await store.held_leases("h/")) == ["t0", "t1", "t2", "t3", "t4"]


async def test_reserve_many_follows_reserves_rules(make_store: MakeStore) -> None:
    """Skip, held trials and suspects are passed over as ``reserve`` passes them over."""
    store = await make_store()
    await store.add(make_trials(6))
    t0, t1 = await _reserve(store, 2)
    await store.finish(t0, outcome(t0, Status.INTERRUPTED), hold=3600)  # held back
    await store.reclaim_leases([("t1", t1.token, "")], "gone")  # a suspect
    leases = await store.reserve_many("w", 10, Reservation(skip={"t3"}, suspects=False))
    assert [lease.trial_id for lease in leases] == ["t2", "t4", "t5"]
    assert [lease.trial_id for lease in await store.reserve_many("w", 10)] == ["t1", "t3"]
    (held,) = await store.reserve_many("w", 10, Reservation(hold=False))
    assert (held.trial_id, held.trial.attempt) == ("t0", 2)


async def test_reserve_many_wants_one_or_more(store: TrialStore) -> None:
    """n below 1 is a ValueError naming n."""
    with pytest.raises(ValueError, match="n must be 1 or more, not 0"):
        await store.reserve_many("w", 0)


async def test_finish_many_records_all_but_the_lost(store: TrialStore) -> None:
    """A lost item gets LeaseLost in its place; the others are recorded, exactly once."""
    await store.add(make_trials(3))
    a, b, c = await _reserve(store, 3)
    await store.reclaim_leases([("t1", b.token, "")], "gone")
    items = [Finish(a, outcome(a)), Finish(b, outcome(b)), Finish(c, outcome(c, Status.BROKEN))]
    first = await store.finish_many(items)
    assert first[0] is TrialStatus.COMPLETED and first[2] is TrialStatus.BROKEN
    assert isinstance(first[1], LeaseLost) and first[1].trial_id == "t1"
    assert (await store.get("t0")).outcome == items[0].outcome
    assert (await store.get("t2")).outcome == items[2].outcome
    again = await store.finish_many(items)
    assert all(isinstance(answer, LeaseLost) for answer in again)
    stored = await store.get("t1")
    assert (stored.status, stored.attempts[-1].outcome and stored.attempts[-1].outcome.message) == (
        TrialStatus.INTERRUPTED,
        "gone",
    )


async def test_a_lease_twice_in_one_batch_is_finished_once(store: TrialStore) -> None:
    """The first item of a lease is recorded; a repeat in the same batch is LeaseLost."""
    await store.add(make_trials(1))
    (lease,) = await _reserve(store, 1)
    done, other = outcome(lease), outcome(lease, Status.BROKEN)
    answers = await store.finish_many([Finish(lease, done), Finish(lease, other)])
    assert answers[0] is TrialStatus.COMPLETED and isinstance(answers[1], LeaseLost)
    assert (await store.get("t0")).outcome == done


async def test_finish_many_keeps_requeue_hold_and_max_lost(make_store: MakeStore) -> None:
    """Requeue, hold and max_lost apply to each item as ``finish`` applies them."""
    store = await make_store(max_lost=0)
    await store.add(make_trials(3))
    a, b, c = await _reserve(store, 3)
    broken = outcome(a, Status.BROKEN, reason=Reason.SIGNAL)
    answers = await store.finish_many(
        [
            Finish(a, broken, requeue=True),
            Finish(b, outcome(b, Status.INTERRUPTED), hold=3600),
            Finish(c, outcome(c, Status.LOST)),
        ]
    )
    assert answers == [TrialStatus.INTERRUPTED, TrialStatus.INTERRUPTED, TrialStatus.BROKEN]
    assert (await store.get("t2")).lost_count == 1
    assert (await store.get("t0")).attempts[0].outcome == broken
    assert [lease.trial_id for lease in await store.reserve_many("w", 3)] == ["t0"]
    assert [
        lease.trial_id for lease in await store.reserve_many("w", 3, Reservation(hold=False))
    ] == ["t1"]


async def test_finish_many_checks_every_item_before_writing(store: TrialStore) -> None:
    """A wrong outcome or hold anywhere in the batch raises ValueError and records nothing."""
    await store.add(make_trials(2))
    a, b = await _reserve(store, 2)
    with pytest.raises(ValueError, match="outcome of trial"):
        await store.finish_many([Finish(a, outcome(a)), Finish(b, outcome(a))])
    with pytest.raises(ValueError, match="hold"):
        await store.finish_many([Finish(a, outcome(a)), Finish(b, outcome(b), hold=-1)])
    assert (await store.counts())[TrialStatus.RESERVED] == 2
    assert await store.finish_many([]) == []


async def test_reclaim_stale_spares_its_own_holder(store: TrialStore) -> None:
    """Leases of the spared holder are left alone; every other stale lease is reclaimed."""
    await store.add(make_trials(4))
    for holder in ("h/1/100", "h/2/100", "", "h/1/1000"):
        assert await store.reserve("w", Reservation(holder=holder)) is not None
    assert sorted(await store.reclaim_stale(0.0, spare="h/1/100")) == ["t1", "t2", "t3"]
    assert await store.held_leases("h/") == [("t0", 1, "h/1/100")]
    assert await store.reclaim_stale(0.0) == ["t0"]
