"""A lease is renewed from its reservation on, not from its script's start: a slow start loses none."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from async_consumer import Consumer, Lease, Trial, TrialStatus
from async_consumer.stores import MemoryStore

from ..conftest import python, wait_until

# trial "a" holds the only GPU until the test says go; trial "b" waits for it meanwhile
SCRIPT = """
import json, os, pathlib, sys, time
marks = pathlib.Path(sys.argv[1])
if os.environ['ASYNC_CONSUMER_TRIAL_ID'] == 'a':
    (marks / 'a-started').touch()
    while not (marks / 'go').exists():
        time.sleep(0.01)
json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
"""


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_lease_waiting_to_start_is_renewed(tmp_path: Path) -> None:
    """
    A trial waiting for a slot for many heartbeats keeps its lease meanwhile: the store never
    sees it stale, and it runs once.
    """
    store = MemoryStore()
    await store.add([Trial(id="a", slots={"gpu": 1}), Trial(id="b", slots={"gpu": 1})])
    consumer = Consumer(
        [*python(SCRIPT), str(tmp_path)],
        base_dir=tmp_path / "trials",
        store=store,
        heartbeat=0.1,
        max_concurrency=2,
        slots={"gpu": ["0"]},
        code_change="ignore",
    )
    leases = [await store.reserve("w"), await store.reserve("w")]
    reclaimed: list[str] = []

    async def run(lease: Lease | None) -> None:
        assert lease is not None
        await store.finish(lease, await consumer.run(lease))

    async with anyio.create_task_group() as tg:
        for lease in leases:
            tg.start_soon(run, lease)
        await wait_until((tmp_path / "a-started").exists, "trial a to start")
        # twenty heartbeats with "b" waiting for the slot: a lease of ten would run out twice
        for _ in range(20):
            await anyio.sleep(0.1)  # the time a lease needs to run out, not an ordering
            reclaimed += await store.reclaim_stale(1.0)
        (tmp_path / "go").touch()
    assert reclaimed == []
    for trial_id in ("a", "b"):
        stored = await store.get(trial_id)
        assert stored.status is TrialStatus.COMPLETED and len(stored.attempts) == 1
