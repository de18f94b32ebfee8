"""
A worker on a SQLite store under load: every trial completed exactly once, memory flat.

A smaller version of ``benchmarks/load.py`` (5,000 trials). Each trivial trial appends its id to
a shared log, so a trial run twice shows even if the store recorded it once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import pytest

from async_consumer import Consumer, StoredTrial, Trial, TrialStatus
from async_consumer._worker.worker import Worker
from async_consumer.stores import SQLiteStore

from .conftest import ROOT, figures_of

pytestmark = pytest.mark.slow

TRIAL = 'echo "$ORION_TRIAL_ID" >> "$1"; echo 1 > "$ORION_RESULTS_PATH"'


async def _load(directory: Path, trials: int) -> tuple[list[StoredTrial], Counter[str]]:
    runs = directory / "runs.log"
    async with SQLiteStore(directory / "store.db") as store:
        await store.add(Trial(id=f"t{i:05d}") for i in range(trials))
        consumer = Consumer(
            ["sh", "-c", TRIAL, "sh", str(runs)],
            base_dir=directory / "trials",
            max_concurrency=8,
            store=store,
            grace=1.0,
            code_change="ignore",
        )
        with anyio.fail_after(120):
            await Worker(store, consumer, name="load").run()
        stored = await store.list()
    return stored, Counter(runs.read_text().split())


@pytest.mark.asyncio
async def test_worker_completes_500_trials_exactly_once(tmp_path: Path) -> None:
    """500 trivial trials through a worker on SQLite: each completed, run once, one attempt."""
    stored, runs = await _load(tmp_path, 500)
    assert len(stored) == 500
    assert all(s.status is TrialStatus.COMPLETED for s in stored)
    assert all(len(s.attempts) == 1 for s in stored)
    assert runs == Counter({s.id: 1 for s in stored})


def test_worker_memory_is_flat(tmp_path: Path) -> None:
    """benchmarks/load.py on 1,500 trials: exactly once, RSS within 10 % of that after 150."""
    load = str(ROOT / "benchmarks" / "load.py")
    figures = figures_of(load, "--trials", "1500", "--early", "150", "--json", cwd=tmp_path)
    assert figures["is_exactly_once"]
    assert abs(figures["rss_ratio"] - 1) <= 0.10, figures
