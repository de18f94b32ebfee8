"""The values a pruner judges live in the store: written in batches, read by every process."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from async_consumer import Metric, Outcome, Status
from async_consumer._errors import StoreUnavailable
from async_consumer._fleet import WorkerInfo
from async_consumer._search.plan import SearchPlan
from async_consumer._search.search import Search
from async_consumer._search.space import Space
from async_consumer._search.store import SearchingStore
from async_consumer.stores import IntermediateValue, MemoryStore, Outage

pytest.importorskip("optuna")

PLAN = SearchPlan(Space.of({"x": "uniform(0, 1)"}), "random", "median", n=7, seed=1, metric="loss")


class CountingStore(MemoryStore):
    """A memory store that counts its writes of values."""

    def __init__(self) -> None:
        super().__init__()
        self.value_writes = 0

    async def record_values(
        self, values: Sequence[IntermediateValue], *, tokens: Mapping[str, int] | None = None
    ) -> None:
        self.value_writes += 1
        await super().record_values(values, tokens=tokens)


def _line(trial_id: str, step: int, loss: float) -> Metric:
    values: dict[str, object] = {"step": step, "loss": loss}
    return Metric.model_validate(
        {
            "trial_id": trial_id,
            "attempt": 1,
            "step": step,
            "values": values,
            "received_at": datetime.now(UTC),
        }
    )


def _done(trial_id: str) -> Outcome:
    results = [{"name": "loss", "type": "objective", "value": 0.2}]
    return Outcome.model_validate(
        {"trial_id": trial_id, "status": Status.COMPLETED, "results": results}
    )


def _linked(store: MemoryStore) -> tuple[SearchingStore, Search]:
    # an outage given up at once: a store that refuses is not waited out for minutes here
    link = SearchingStore(store, outage=Outage(0.1, backoff=0.01, max_backoff=0.01))
    link.search = Search(link, PLAN)
    return link, link.search


@pytest.mark.asyncio
async def test_a_hopeless_trial_is_pruned_against_another_process_curves() -> None:
    """A runs 5 good curves, B one hopeless: B's pruner, fed from the store alone, stops it at step 0."""
    store = CountingStore()
    a_link, a = _linked(store)
    b_link, b = _linked(store)
    for _ in range(5):
        lease = await a_link.reserve("a")
        assert lease is not None
        for step in range(10):  # a script reporting often: no write per value
            assert not a.report(_line(lease.trial_id, step, 1 / (step + 1)))
        await a_link.finish(lease, _done(lease.trial_id))
    assert store.value_writes == 5  # one a trial, before its outcome
    lease = await b_link.reserve("b")
    assert lease is not None and lease.trial_id == "default-6"
    assert b.report(_line(lease.trial_id, 0, 11.0))  # pruned against A's curves
    assert a.study is not None and b.study is not None
    curves = [t.intermediate_values for t in b.study.study.trials if t.state.name == "COMPLETE"]
    assert curves == [{s: 1 / (s + 1) for s in range(10)}] * 5


@pytest.mark.asyncio
async def test_the_worker_beat_carries_the_values() -> None:
    """Values reported between two beats go in one write with the beat, and the others' come back."""
    store = CountingStore()
    a_link, a = _linked(store)
    b_link, b = _linked(store)
    lease_a = await a_link.reserve("a")
    lease_b = await b_link.reserve("b")
    assert lease_a is not None and lease_b is not None
    for step in range(20):
        a.report(_line(lease_a.trial_id, step, 0.5))
    assert store.value_writes == 0
    await a_link.record_worker(WorkerInfo(name="a"))
    assert store.value_writes == 1
    assert len((await store.read_values())[0]) == 20
    await b_link.record_worker(WorkerInfo(name="b"))  # B has nothing to write: no write
    assert store.value_writes == 1
    assert b._curves == {lease_a.trial_id: dict.fromkeys(range(20), 0.5)}


@pytest.mark.asyncio
async def test_values_that_failed_to_be_written_are_kept_for_the_next_write() -> None:
    """A write of values that fails keeps them, and the next one writes them."""
    store = CountingStore()
    link, search = _linked(store)
    lease = await link.reserve("a")
    assert lease is not None
    search.report(_line(lease.trial_id, 0, 0.5))

    async def fail(values: builtins.list[IntermediateValue], **_: object) -> None:
        msg = "down"
        raise StoreUnavailable(msg)

    store.record_values = fail  # type: ignore[method-assign,assignment]
    with pytest.raises(StoreUnavailable, match="down"):
        await search.flush()
    del store.record_values
    search.report(_line(lease.trial_id, 1, 0.25))
    await search.flush()
    assert (await store.read_values())[0] == [
        IntermediateValue(lease.trial_id, 0, 0.5),
        IntermediateValue(lease.trial_id, 1, 0.25),
    ]


@pytest.mark.asyncio
async def test_hyperbands_auto_resource_is_the_first_one_recorded() -> None:
    """
    A completes a 10-step trial, then a 30-step one; B, started after both, takes A's first
    estimate (10), not its own (30): both make the same brackets, and nothing prunes before.
    """
    plan = SearchPlan(
        Space.of({"x": "uniform(0, 1)"}), "random", "hyperband", n=5, seed=1, metric="loss"
    )
    store = MemoryStore()
    a_link = SearchingStore(store)
    a = a_link.search = Search(a_link, plan)
    for steps in (10, 30):
        lease = await a_link.reserve("a")
        assert lease is not None
        for step in range(steps):
            assert not a.report(_line(lease.trial_id, step, 1 / (step + 1)))
        await a_link.finish(lease, _done(lease.trial_id))
    b_link = SearchingStore(store)
    b = b_link.search = Search(b_link, plan)
    assert await b_link.reserve("b") is not None
    for search in (a, b):
        assert search.study is not None
        assert search.study.study.pruner._max_resource == 10  # type: ignore[attr-defined]
