"""
A storm loses no lease: a lease is renewed from its reservation on, not from its script's start,
so a slow start loses none; a worker starved of CPU keeps its leases against the workers of its
own host.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from async_consumer import Consumer, Lease, Trial, TrialStatus, WorkerInfo
from async_consumer.stores import MemoryStore, store_from_url

from ..conftest import cli, python, wait_until, wait_until_sync
from .sync_store import add_trials, stored_trials

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


HEARTBEAT = 0.5
STARVED = 5.0
"""Seconds the worker gets no CPU: over three leases (1.5 s), under ten (when it is wedged)."""
# each run logs its trial's id, then sleeps: long enough for many leases to run out meanwhile
SLEEPER = """
import json, os, sys, time
with open(sys.argv[1], 'a') as runs:
    runs.write(os.environ['ASYNC_CONSUMER_TRIAL_ID'] + "\\n")
time.sleep(float(sys.argv[2]))
json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
"""


@contextmanager
def _no_cpu(pid: int) -> Iterator[None]:
    """
    Give the process no CPU at all (a freezer cgroup) without stopping it: ``/proc`` shows it
    not stopped (``D`` or ``S``, never ``T``), as a worker a storm starves of CPU is.
    """
    v1 = Path("/sys/fs/cgroup/freezer")
    root = v1 if v1.is_dir() else Path("/sys/fs/cgroup")
    group = root / f"no-cpu-{os.getpid()}-{pid}"
    state, frozen, thawed = (
        ("freezer.state", "FROZEN", "THAWED") if v1.is_dir() else ("cgroup.freeze", "1", "0")
    )
    try:
        group.mkdir()
        (group / "cgroup.procs").write_text(str(pid))
        (group / state).write_text(frozen)
    except OSError as exc:
        with contextlib.suppress(OSError):
            (root / "cgroup.procs").write_text(str(pid))
            group.rmdir()
        pytest.skip(f"cannot freeze a process here: {exc}")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            (group / state).write_text(thawed)
            (root / "cgroup.procs").write_text(str(pid))
            group.rmdir()


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.slow
def test_a_worker_starved_of_cpu_keeps_its_leases(tmp_path: Path, store_url: str) -> None:
    """
    A worker that gets no CPU for over three leases, but is not stopped (as a storm starves a
    worker), beside a worker of the same host with room: none of its trials is reclaimed or run
    twice, all complete. Before, the other worker took them as stale and started them again.
    """
    runs = tmp_path / "runs.txt"
    add_trials(store_url, (Trial(id=f"t{i}") for i in range(4)))

    def worker(jobs: int, *extra: str) -> subprocess.Popen[bytes]:
        argv = cli("-v", "worker", "--store", store_url, "-j", str(jobs), *extra)
        argv += ["--heartbeat", str(HEARTBEAT), "--code-change", "ignore"]
        argv += ["--base-dir", str(tmp_path / "trials"), "--", *python(SLEEPER)]
        return subprocess.Popen([*argv, str(runs), str(2 * STARVED)], stderr=subprocess.PIPE)

    starved = worker(4)
    other: subprocess.Popen[bytes] | None = None
    try:
        wait_until_sync(lambda: len(_lines(runs)) == 4, "the 4 trials to start", alive=starved)
        other = worker(2, "--follow")
        wait_until_sync(lambda: len(_workers(store_url)) == 2, "the other worker", alive=other)
        with _no_cpu(starved.pid):
            time.sleep(STARVED)  # how long it is starved, not an ordering
        wait_until_sync(lambda: starved.poll() is not None, "the starved worker's end", bound=120)
        _, starved_err = starved.communicate()
    finally:
        for process in (starved, other):
            if process is not None:
                process.kill()
        other_err = b"" if other is None else other.communicate()[1]
    assert starved.returncode == 0, starved_err.decode()
    late = re.search(rb"late p50 \d+ ms, p99 \d+ ms, max (\d+) ms", starved_err)
    # a storm indeed: its beats came later than a lease
    assert late is not None and int(late[1]) > 3000 * HEARTBEAT, starved_err.decode()
    assert b"reclaimed" not in other_err, other_err.decode()
    assert sorted(_lines(runs)) == [f"t{i}" for i in range(4)]
    stored = stored_trials(store_url)
    assert all(t.status is TrialStatus.COMPLETED and len(t.attempts) == 1 for t in stored)


def _workers(url: str) -> list[WorkerInfo]:
    async def read() -> list[WorkerInfo]:
        async with store_from_url(url) as store:
            return await store.workers()

    return anyio.run(read)
