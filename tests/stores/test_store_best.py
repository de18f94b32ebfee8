"""``best`` on every store: what ``best_trial`` picks from the completed trials, found unread."""

from __future__ import annotations

import random

import pytest

from async_consumer._models import Lease, Status, TrialStatus
from async_consumer._ranking import best_trial
from async_consumer.stores import Finish, TrialStore

from .conftest import make_trials, outcome

pytestmark = pytest.mark.asyncio


def _scored(lease: Lease, value: float | None, status: Status = Status.COMPLETED) -> Finish:
    """The lease's attempt ending with ``status`` and, if given, ``value`` as its objective."""
    results = [] if value is None else [{"name": "loss", "type": "objective", "value": value}]
    # a NUL from the script's stderr, which PostgreSQL's json cannot hold unescaped
    return Finish(lease, outcome(lease, status, results=results, stderr_tail="a\x00b"))


async def _check_agrees(store: TrialStore) -> None:
    """``best`` is what ``best_trial`` picks from the completed trials read, both ways."""
    everything = await store.list(TrialStatus.COMPLETED)
    for maximize in (False, True):
        expected = best_trial(everything, maximize=maximize)
        found = await store.best(maximize=maximize)
        assert (found and found.id) == (expected and expected.id), f"maximize={maximize}"
        assert found == expected


async def test_no_completed_trial_no_best(store: TrialStore) -> None:
    """An empty store, or one whose trials none completed with an objective, has no best."""
    assert await store.best() is None
    await store.add(make_trials(3))
    a, b = await store.reserve_many("w", 2)
    await store.finish_many([_scored(a, 1.0, Status.BROKEN), _scored(b, None)])
    assert await store.best() is None
    assert await store.best(maximize=True) is None


async def test_the_lowest_or_highest_and_the_first_of_equals(store: TrialStore) -> None:
    """The lowest objective (the highest with ``maximize``); of equals, the first added."""
    await store.add(make_trials(5))
    t0, t1, t2, t3, t4 = await store.reserve_many("w", 5)
    values = [(t0, 3.0), (t1, -1.5), (t2, 7.25), (t3, -1.5), (t4, 7.25)]
    await store.finish_many([_scored(lease, value) for lease, value in reversed(values)])
    low, high = await store.best(), await store.best(maximize=True)
    assert low is not None and (low.id, low.outcome and low.outcome.objective) == ("t1", -1.5)
    assert high is not None and high.id == "t2"
    assert [a.number for a in low.attempts] == [1]  # the whole trial, with its attempts
    await _check_agrees(store)


async def test_only_a_trial_completed_now_counts(store: TrialStore) -> None:
    """
    A trial whose completed attempt was put back (``requeue``) is not completed, nor is one
    whose next attempt broke: neither is best, whatever its objective was.
    """
    await store.add(make_trials(3))
    t0, t1, t2 = await store.reserve_many("w", 3)
    await store.finish(t0, _scored(t0, 0.5).outcome, requeue=True)  # back to the queue
    await store.finish(t1, _scored(t1, 2.0).outcome)
    await store.finish(t2, _scored(t2, 9.0, Status.BROKEN).outcome)
    best = await store.best()
    assert best is not None and best.id == "t1"
    again = await store.reserve("w")  # t0's second attempt breaks: still not the best
    assert again is not None and again.trial_id == "t0"
    await store.finish(again, _scored(again, None, Status.BROKEN).outcome)
    best = await store.best()
    assert best is not None and best.id == "t1"
    assert await store.rerun(["t0"], [TrialStatus.BROKEN]) == 1
    third = await store.reserve("w")
    assert third is not None and third.trial_id == "t0"
    await store.finish(third, _scored(third, 0.25).outcome)  # its third attempt completes
    best = await store.best()
    assert best is not None and (best.id, best.attempts[-1].number) == ("t0", 3)
    await _check_agrees(store)


async def test_best_agrees_with_reading_every_trial(store: TrialStore) -> None:
    """Many trials, few distinct objectives, some broken or without one: the same answers."""
    rng = random.Random(15)
    await store.add(make_trials(120))
    leases = await store.reserve_many("w", 120)
    finishes = []
    for lease in leases:
        value = rng.choice([None, -2.0, 0.0, 0.1, 1e-05, 1e20, 3.5, -2.0])
        status = rng.choice([Status.COMPLETED] * 4 + [Status.BROKEN, Status.INTERRUPTED])
        finishes.append(_scored(lease, value, status))
    rng.shuffle(finishes)
    await store.finish_many(finishes[:60])
    for finish in finishes[60:]:
        await store.finish(finish.lease, finish.outcome)
    await _check_agrees(store)
