"""Two processes' searches on one store, in one test: each learns of every finished trial."""

from __future__ import annotations

import pytest

from async_consumer import Outcome, Reason, Status, TrialStatus
from async_consumer._search.plan import SearchPlan
from async_consumer._search.samplers import RandomSampler
from async_consumer._search.search import Search
from async_consumer._search.space import Space
from async_consumer._search.store import SearchingStore
from async_consumer.stores import MemoryStore

pytest.importorskip("optuna")


def _done(trial_id: str, x: float) -> Outcome:
    results = [{"name": "loss", "type": "objective", "value": float(x)}]
    return Outcome.model_validate(
        {"trial_id": trial_id, "status": Status.COMPLETED, "results": results}
    )


@pytest.mark.asyncio
async def test_searches_sharing_a_store_stop_at_n_and_learn_every_result() -> None:
    """A and B suggest into one store, each runs some: n trials in all, each learns the other's."""
    store = MemoryStore()
    plan = SearchPlan(Space.of({"x": "uniform(0, 1)"}), sampler="tpe", pruner="none", n=12, seed=3)
    links = [SearchingStore(store) for _ in range(2)]
    searches = [Search(link, plan) for link in links]
    for link, search in zip(links, searches, strict=True):
        link.search = search
    turn, ran = 0, [0, 0]
    while (lease := await links[turn % 2].reserve(f"w{turn % 2}")) is not None:
        ran[turn % 2] += 1
        x = lease.trial.params["x"]
        assert isinstance(x, float)
        await links[turn % 2].finish(lease, _done(lease.trial_id, x))
        turn += 1
    trials = await store.list()
    assert sorted(t.id for t in trials) == sorted(f"default-{k}" for k in range(1, 13))
    assert {t.status for t in trials} == {TrialStatus.COMPLETED}
    for search, mine in zip(searches, ran, strict=True):
        # the other's results were read from the store, at each suggestion before the last
        assert search.study is not None
        assert mine < search.study.finished <= 12


def _pruned(trial_id: str) -> Outcome:
    return Outcome(trial_id=trial_id, status=Status.INTERRUPTED, reason=Reason.PRUNED)


@pytest.mark.asyncio
async def test_tpe_learns_from_pruned_trials_once_ten_have_finished() -> None:
    """
    A TPE search whose every trial is pruned: its first trials are the random sampler's k-th
    (the startup), but once 10 have finished, pruned ones counting as Optuna's TPE counts
    them, the trials are TPE's own, not random draws for the rest of the search.
    """
    store = MemoryStore()
    space = Space.of({"x": "uniform(0, 1)", "y": "uniform(0, 1)"})
    plan = SearchPlan(space, sampler="tpe", pruner="median", n=16, seed=3)
    link = SearchingStore(store)
    link.search = Search(link, plan)
    while (lease := await link.reserve("w")) is not None:
        await link.finish(lease, _pruned(lease.trial_id))
    trials = {t.id: t.trial.params for t in await store.list()}
    assert {t.status for t in await store.list()} == {TrialStatus.PRUNED}
    drawn = [trials[f"default-{k}"] == RandomSampler(space, 3).ask(k) for k in range(1, 17)]
    assert all(drawn[:10]), drawn  # the startup: the k-th random point, whoever suggests it
    assert not any(drawn[12:]), drawn  # past it (a trial or two suggested ahead): TPE's
