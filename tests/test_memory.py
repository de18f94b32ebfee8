"""What each running trial of a worker costs in memory: ten thousand run in one process."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import anyio
import pytest

from async_consumer import Consumer, Trial
from async_consumer._worker.worker import Worker
from async_consumer.stores import MemoryStore

from .conftest import wait_until

TRIALS = 200
HANG = 60  # seconds: only a hang guard, never a bound on how fast anything is
BOUND = 14 * 1024
"""Bytes of Python objects a leased, running trial may hold, its lane included: a worker runs
thousands at once, so each one's cost bounds how many fit. A running trial holds about 11.4 KiB;
the bound leaves room for allocator noise, not for a new per-trial object of any size."""


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_running_trial_holds_little_memory(tmp_path: Path) -> None:
    """Two hundred leased trials running at once hold under 14 KiB of Python objects each."""
    store = MemoryStore()
    await store.add([Trial(id=f"t{n:03d}") for n in range(TRIALS)])
    sh = shutil.which("sh") or "/bin/sh"
    consumer = Consumer(
        [sh, "-c", "exec sleep 60"],
        base_dir=tmp_path,
        store=store,
        max_concurrency=TRIALS,
        heartbeat=5.0,
        grace=5.0,
    )
    worker = Worker(store, consumer)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await wait_until(lambda: len(consumer.running) >= TRIALS, "every script to run")
            during = tracemalloc.take_snapshot()
            consumer.interrupt()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in during.compare_to(before, "filename"))
    assert grown / TRIALS < BOUND, f"{grown / TRIALS / 1024:.1f} KiB a running trial"
