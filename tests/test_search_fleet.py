"""A search shared by several processes on one PostgreSQL store: exactly ``-n`` trials, TPE
better than random, a killed process loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from async_consumer import TrialStatus
from async_consumer.stores import store_from_url

from .conftest import NewSchema, postgres_url, wait_until_sync

pytest.importorskip("optuna")

# a bowl with its bottom at (1.2, -0.7): easy for TPE to find, rare for random draws to hit
BOWL = (
    "import json, os, sys, time; a = sys.argv; x = float(a[a.index('-x') + 1]); "
    "y = float(a[a.index('-y') + 1]); time.sleep(float(os.environ.get('SLEEP', '0'))); "
    "json.dump((x - 1.2) ** 2 + (y + 0.7) ** 2, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


@pytest.fixture
def url(new_schema: NewSchema) -> str:
    """A PostgreSQL store of its own for the test's search."""
    return f"{postgres_url()}?schema={new_schema()}"


def _run(url: str, tmp_path: Path, *options: str, sleep: float = 0.0) -> subprocess.Popen[bytes]:
    """One ``run`` process of the search (every one suggests, none orchestrates)."""
    argv = [sys.executable, "-m", "async_consumer._cli", "-q", "run", "--store", url, "-j", "2"]
    argv += ["--base-dir", str(tmp_path / "trials"), "--pruner", "none", *options]
    argv += ["--", sys.executable, "-c", BOWL, "-x~uniform(-100, 100)", "-y~uniform(-100, 100)"]
    env = {**os.environ, "SLEEP": str(sleep)}
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


async def _trials(url: str) -> dict[str, tuple[TrialStatus, float | None]]:
    async with store_from_url(url) as store:
        stored = await store.list()
    return {t.id: (t.status, t.outcome.objective if t.outcome else None) for t in stored}


def _search(
    url: str, tmp_path: Path, sampler: str, n: int = 60
) -> dict[str, tuple[TrialStatus, float | None]]:
    runs = [
        _run(url, tmp_path, "-n", str(n), "--sampler", sampler, "--seed", "1") for _ in range(4)
    ]
    for process in runs:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err.decode()
    return anyio.run(_trials, url)


def _assert_all_completed(trials: dict[str, tuple[TrialStatus, float | None]], n: int) -> None:
    """The search made exactly ``n`` trials, ``default-1`` to ``default-n``, all completed."""
    assert sorted(trials) == sorted(f"default-{k}" for k in range(1, n + 1))
    assert all(status is TrialStatus.COMPLETED for status, _ in trials.values())


def _best(trials: dict[str, tuple[TrialStatus, float | None]]) -> float:
    return min(value for _, value in trials.values() if value is not None)


@pytest.mark.slow
def test_tpe_beats_random_with_four_processes(tmp_path: Path, new_schema: NewSchema) -> None:
    """Four processes, -n 60 each time: exactly 60 trials; TPE's best is far better than random's."""
    base = postgres_url()
    tpe = _search(f"{base}?schema={new_schema()}", tmp_path / "tpe", "tpe")
    rnd = _search(f"{base}?schema={new_schema()}", tmp_path / "random", "random")
    for trials in (tpe, rnd):
        _assert_all_completed(trials, 60)
    # random's best of 60 draws in a 200 x 200 square (339 with this seed); TPE closes in:
    # benchmarks/search_tpe.py, 26 runs on a loaded machine, TPE's best 0.09 to 128 (median 13)
    assert _best(tpe) < _best(rnd) / 2, (_best(tpe), _best(rnd))


@pytest.mark.slow
def test_a_killed_process_loses_nothing_and_nothing_overshoots(url: str, tmp_path: Path) -> None:
    """SIGKILL one of three processes mid-search: the others finish it, exactly -n trials."""
    options = ("-n", "24", "--sampler", "random", "--seed", "2", "--heartbeat", "1")
    runs = [_run(url, tmp_path, *options, sleep=0.3) for _ in range(3)]
    wait_until_sync(
        lambda: sum(s is TrialStatus.COMPLETED for s, _ in anyio.run(_trials, url).values()) >= 4,
        "four completed trials",
        every=0.1,
    )
    runs[0].send_signal(signal.SIGKILL)
    runs[0].communicate(timeout=60)  # reaped, its pipe closed
    for process in runs[1:]:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err.decode()
    _assert_all_completed(anyio.run(_trials, url), 24)


async def _has_search(url: str) -> bool:
    async with store_from_url(url) as store:
        recorded = await store.experiment("default")
    return recorded is not None and recorded.search is not None


@pytest.mark.slow
def test_a_worker_takes_part_in_the_search_of_its_store(url: str, tmp_path: Path) -> None:
    """``worker --experiment`` suggests from the store's plan beside the run: -n in all."""
    # -j 1 and half a second a trial: the run alone would take 8 s, the worker joins long before
    options = ("-n", "16", "--sampler", "random", "--seed", "4", "-j", "1")
    run = _run(url, tmp_path, *options, sleep=0.5)
    wait_until_sync(lambda: anyio.run(_has_search, url), "the run to record its search")
    argv = [sys.executable, "-m", "async_consumer._cli", "-q", "worker", "--store", url]
    argv += ["--experiment", "default", "-j", "2", "--base-dir", str(tmp_path / "trials")]
    argv += ["--", sys.executable, "-c", BOWL, "-x~uniform(-100, 100)", "-y~uniform(-100, 100)"]
    env = {**os.environ, "SLEEP": "0.5"}
    worker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    for process in (run, worker):
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err.decode()

    async def workers() -> set[str]:
        async with store_from_url(url) as store:
            return {a.worker for t in await store.list() for a in t.attempts}

    _assert_all_completed(anyio.run(_trials, url), 16)
    assert len(anyio.run(workers)) == 2  # the run and the worker both ran trials
