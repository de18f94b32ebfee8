"""A place among ``max_concurrency`` taken before there is a trial; a worker reserves only what can start."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from async_consumer import Consumer, Status, Trial, TrialStatus, Worker
from async_consumer.stores import SQLiteStore

from .conftest import ConsumerFactory, python, wait_until

# writes <dir>/<trial id>.started, then waits for <dir>/go, then reports 1.0
GATED = """
import os, pathlib, sys, time
gate = pathlib.Path(sys.argv[1])
(gate / (os.environ["ASYNC_CONSUMER_TRIAL_ID"] + ".started")).touch()
while not (gate / "go").exists():
    time.sleep(0.01)
open(os.environ["ASYNC_CONSUMER_RESULTS_PATH"], "w").write("1.0")
"""


@pytest.mark.anyio
async def test_a_place_taken_first_starts_its_trial_at_once_and_is_given_back_at_its_end(
    tmp_path: Path, make_consumer: ConsumerFactory
) -> None:
    """With the only place held, another trial waits; run(place=...) gives it back at the end."""
    gate = tmp_path / "gate"
    gate.mkdir()
    consumer = make_consumer([*python(GATED), str(gate)], max_concurrency=1)
    statuses: dict[str, Status] = {}

    async def run(trial_id: str) -> None:
        statuses[trial_id] = (await consumer.run(Trial(id=trial_id, params={}))).status

    async def let_first_end() -> None:
        await wait_until((gate / "first.started").exists, "the first trial to start")
        assert not (gate / "second.started").exists()  # it waits for the place
        (gate / "go").touch()

    async with anyio.create_task_group() as tg, consumer.place() as place:
        assert place.held
        tg.start_soon(run, "second")
        tg.start_soon(let_first_end)
        first = await consumer.run(Trial(id="first", params={}), place=place)
        assert first.status is Status.COMPLETED
        assert not place.held  # given back once its script ended: the other trial runs
    assert statuses == {"second": Status.COMPLETED}


@pytest.mark.anyio
async def test_leaving_a_place_unused_gives_it_back(make_consumer: ConsumerFactory) -> None:
    """A place taken for a trial that never came is free again once its block is left."""
    consumer = make_consumer(python("pass"), max_concurrency=1)
    async with consumer.place() as place:
        assert place.held
    assert not place.held
    with anyio.fail_after(60):  # the only place is free: this would wait for ever otherwise
        async with consumer.place() as again:
            assert again.held


@pytest.mark.anyio
async def test_a_place_of_another_consumer_is_refused(make_consumer: ConsumerFactory) -> None:
    """A place counts against its own consumer's limit: another's is an error, nothing runs."""
    mine, other = make_consumer(python("pass")), make_consumer(python("pass"))
    async with other.place() as place:
        with pytest.raises(ValueError, match="another consumer"):
            await mine.run(Trial(id="a", params={}), place=place)
    assert mine.running == []


@pytest.mark.anyio
async def test_a_worker_reserves_no_trial_before_a_place_is_free(
    tmp_path: Path, make_consumer: ConsumerFactory
) -> None:
    """Spare lanes wait for a place, not holding a lease: one running trial, the others new."""
    gate = tmp_path / "gate"
    gate.mkdir()
    store = SQLiteStore(tmp_path / "store.db")
    await store.add(Trial(id=f"t{i}", params={}) for i in range(3))
    consumer: Consumer = make_consumer(
        [*python(GATED), str(gate)], max_concurrency=1, store=store, heartbeat=1.0
    )
    worker = Worker(store, consumer)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await wait_until(lambda: any(gate.glob("*.started")), "a trial to start")
        counts = await store.counts()
        assert (counts[TrialStatus.RESERVED], counts[TrialStatus.NEW]) == (1, 2)
        (gate / "go").touch()
    assert (await store.counts())[TrialStatus.COMPLETED] == 3
    await store.aclose()
