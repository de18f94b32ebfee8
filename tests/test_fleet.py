"""Worker processes sharing a store: a killed worker, a frozen worker, a healthy long trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from async_consumer import Reason, Status, Trial, TrialStatus
from async_consumer.stores import store_from_url

from .conftest import cli, is_alive, python, wait_until_sync

# each run appends "trial-id attempt pid worker-pid" to a shared file, then works for a while
SCRIPT = """
import json, os, sys, time
with open(sys.argv[1], 'a') as log:
    log.write(f"{os.environ['ASYNC_CONSUMER_TRIAL_ID']} {os.environ['ASYNC_CONSUMER_ATTEMPT']} {os.getpid()} {os.getppid()}\\n")
duration = float(sys.argv[2]) if os.environ['ASYNC_CONSUMER_ATTEMPT'] == '1' else float(sys.argv[3])
time.sleep(duration)
json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
""".replace("{", "{{").replace("}", "}}")


async def _add(url: str, count: int, prefix: str = "t") -> None:
    async with store_from_url(url) as store:
        await store.add(Trial(id=f"{prefix}{i:02d}", params={}) for i in range(count))


async def _stored(url: str) -> list:  # type: ignore[type-arg]
    async with store_from_url(url) as store:
        return await store.list()


def _worker(
    url: str,
    tmp_path: Path,
    name: str,
    runs: Path,
    first: float,
    later: float,
    heartbeat: float,
    jobs: int = 4,
) -> subprocess.Popen[bytes]:
    argv = cli("-q", "worker", "--store", url, "-j", str(jobs))
    argv += ["--heartbeat", str(heartbeat), "--grace", "0.5"]
    argv += ["--base-dir", str(tmp_path / name), "--code-change", "ignore"]
    argv += ["--", sys.executable, "-c", SCRIPT, str(runs), str(first), str(later)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _first_run_of_one_trial(
    url: str, tmp_path: Path, first: float, later: float, heartbeat: float
) -> tuple[subprocess.Popen[bytes], Path]:
    """
    A store of one trial, and worker ``a`` (one job) once it has started that trial's first
    run; the runs' log is the second value.
    """
    anyio.run(_add, url, 1)
    runs = tmp_path / "runs.log"
    a = _worker(url, tmp_path, "a", runs, first, later, heartbeat=heartbeat, jobs=1)
    wait_until_sync(lambda: len(_runs(runs)) == 1, "the first run")
    return a, runs


def _runs(runs: Path) -> list[tuple[str, int, int]]:
    if not runs.exists():
        return []
    return [
        (t, int(a), int(p))
        for t, a, p, _ in (line.split() for line in runs.read_text().splitlines())
    ]


def _runs_by(runs: Path, worker: int) -> int:
    """How many runs the worker process ``worker`` started (each script logs its parent)."""
    if not runs.exists():
        return 0
    return sum(line.split()[3] == str(worker) for line in runs.read_text().splitlines())


@pytest.mark.slow
def test_crash_of_a_worker(store_url: str, tmp_path: Path) -> None:
    """One of two workers is SIGKILLed mid-run: every trial completes exactly once, nothing is left running."""
    anyio.run(_add, store_url, 60)
    runs = tmp_path / "runs.log"
    a = _worker(store_url, tmp_path, "a", runs, 0.3, 0.3, heartbeat=0.5)
    b = _worker(store_url, tmp_path, "b", runs, 0.3, 0.3, heartbeat=0.5)
    # a holds leases when it is killed: it has started runs of its own (a slow start on a busy
    # machine could leave all the first runs to b)
    wait_until_sync(
        lambda: len(_runs(runs)) >= 16 and _runs_by(runs, a.pid) >= 4, "16 runs, 4 of them by a"
    )
    assert _runs_by(runs, a.pid) >= 4
    a.send_signal(signal.SIGKILL)
    a.communicate()
    _, err = b.communicate(timeout=90)
    assert b.returncode == 0, err.decode()
    stored = anyio.run(_stored, store_url)
    assert len(stored) == 60
    assert all(s.status is TrialStatus.COMPLETED for s in stored)
    for s in stored:
        completed = [a for a in s.attempts if a.outcome and a.outcome.status is Status.COMPLETED]
        assert len(completed) == 1, s  # no result accepted twice
    lost = [s for s in stored if len(s.attempts) > 1]
    assert lost, "the killed worker held trials that another one re-ran"
    assert all(
        s.attempts[0].outcome and s.attempts[0].outcome.reason is Reason.LEASE_LOST for s in lost
    )
    assert not any(is_alive(pid) for _, _, pid in _runs(runs))


@pytest.mark.slow
def test_fencing_of_a_frozen_worker(store_url: str, tmp_path: Path) -> None:
    """A worker frozen past its lease has its heartbeat and result rejected; the re-run's result stays."""
    a, runs = _first_run_of_one_trial(store_url, tmp_path, 4.0, 0.2, heartbeat=0.4)
    a.send_signal(signal.SIGSTOP)
    try:
        b = _worker(store_url, tmp_path, "b", runs, 4.0, 0.2, heartbeat=0.4, jobs=1)
        _, b_err = b.communicate(timeout=30)  # reclaims after 3 beats, re-runs, drains
        assert b.returncode == 0, b_err.decode()
    finally:
        a.send_signal(signal.SIGCONT)
    a_out, a_err = a.communicate(timeout=30)
    stored = anyio.run(_stored, store_url)[0]
    assert stored.status is TrialStatus.COMPLETED
    # its worker still ran (frozen, on this host): the lease was reclaimed without a loss
    assert [x.outcome.status if x.outcome else None for x in stored.attempts] == [
        Status.INTERRUPTED,
        Status.COMPLETED,
    ]
    assert stored.lost_count == 0
    assert stored.outcome is not None
    assert stored.outcome.attempt == 2
    assert stored.attempts[1].worker != stored.attempts[0].worker
    assert [(t, n) for t, n, _ in _runs(runs)] == [("t00", 1), ("t00", 2)]
    assert b"late result" in a_out or b"not recorded" in a_err, (a_out, a_err)


@pytest.mark.slow
def test_no_false_takeover(store_url: str, tmp_path: Path) -> None:
    """With a 1 s heartbeat, a healthy 20 s trial is never taken by a second worker polling all along."""
    a, runs = _first_run_of_one_trial(store_url, tmp_path, 20.0, 0.1, heartbeat=1.0)
    b = _worker(store_url, tmp_path, "b", runs, 20.0, 0.1, heartbeat=1.0, jobs=1)
    a.communicate(timeout=60)
    b.communicate(timeout=60)
    assert a.returncode == 0
    assert b.returncode == 0
    stored = anyio.run(_stored, store_url)[0]
    assert stored.status is TrialStatus.COMPLETED
    assert len(stored.attempts) == 1
    assert [n for _, n, _ in _runs(runs)] == [1]


def test_hostile_trials_roundtrip(tmp_path: Path) -> None:
    """Hostile ids and values go through a run and come back from the store unchanged."""
    from async_consumer._cli.main import main

    hostile = ["'; DROP TABLE trials; --", "../../etc", 'quo"te', "ünï ☃", "a/b", "$(touch pwned)"]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": h, "v": h}) + "\n" for h in hostile))
    code = "import json, os, sys; assert sys.argv[1] == os.environ['ORION_TRIAL_ID']; json.dump(1, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
    url = f"sqlite:///{tmp_path}/h.db"
    argv = ["-q", "run", "--store", url, "--params", str(path), "--base-dir", str(tmp_path / "t")]
    assert main([*argv, "--", *python(code), "{v}"]) == 0
    stored = {s.id: s for s in anyio.run(_stored, url)}
    assert sorted(stored) == sorted(hostile)
    assert all(
        s.trial.params == {"v": s.id} and s.status is TrialStatus.COMPLETED for s in stored.values()
    )
    assert not os.path.exists("pwned")
