"""A worker told to leave (SIGTERM, SIGUSR1) loses nothing; one near its job's end starts nothing."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from async_consumer import (
    Consumer,
    Reason,
    Status,
    StoreError,
    Trial,
    TrialStatus,
    WorkerInfo,
)
from async_consumer._cli.leave import early_signals, handle_worker_signals
from async_consumer._cli.main import main
from async_consumer._worker.presence import Presence
from async_consumer._worker.worker import Worker
from async_consumer.stores import MemoryStore, store_from_url

from .conftest import cli, is_alive, python, wait_until, wait_until_sync

# checkpoints its step on SIGTERM and exits with the interrupt code; resumes from it; logs the
# step it started from once it has made one more
TRAIN = textwrap.dedent("""
    import json, os, signal, sys, time
    env = os.environ
    checkpoint = os.path.join(env["ASYNC_CONSUMER_WORKING_DIR"], "checkpoint.json")
    step = first = json.load(open(checkpoint))["step"] if os.path.exists(checkpoint) else 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while step < int(sys.argv[2]):
        if step == first + 1:  # one step done: say where this attempt started
            with open(sys.argv[1], "a") as log:
                log.write(f"{env['ASYNC_CONSUMER_TRIAL_ID']} {os.getpid()} {first}\\n")
        if stop:
            json.dump({"step": step}, open(checkpoint, "w"))
            sys.exit(int(env["ASYNC_CONSUMER_INTERRUPT_CODE"]))
        time.sleep(0.05)
        step += 1
    json.dump(float(step), open(env["ASYNC_CONSUMER_RESULTS_PATH"], "w"))
""")


def _worker(url: str, tmp_path: Path, runs: Path, steps: int) -> subprocess.Popen[str]:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    argv = cli("worker", "--store", url, "-j", "2", "--base-dir")
    argv += [str(tmp_path / "trials"), "--code-change", "ignore"]
    argv += ["--", sys.executable, str(script), str(runs), str(steps)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(runs: Path) -> list[list[str]]:
    return [line.split() for line in runs.read_text().splitlines()] if runs.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["TERM", "USR1"])
def test_a_signalled_worker_leaves_its_trials_to_others(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """The worker stops its two trials (they checkpoint), records them preempted, exits 130 in one line; the next worker resumes them."""
    url, runs = f"sqlite:///{tmp_path}/store.db", tmp_path / "runs.log"
    assert main(["add", "--store", url, "--grid", "x=1,2,3"]) == 0
    first = _worker(url, tmp_path, runs, steps=400)  # 20 s: only a signal ends these
    wait_until_sync(lambda: len(_lines(runs)) >= 2, "two trials to start", alive=first)
    first.send_signal(signum)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert "Traceback" not in err
    assert f"{signum.name}: reserving nothing more; stopping 2 running trial(s)" in err

    async def stored() -> list:  # type: ignore[type-arg]
        async with store_from_url(url) as store:
            return await store.list()

    trials = anyio.run(stored)
    left = [t for t in trials if t.status is TrialStatus.INTERRUPTED]
    assert len(left) == 2 and [t.status for t in trials].count(TrialStatus.NEW) == 1
    for trial in left:
        assert trial.outcome.reason is Reason.PREEMPTED and trial.outcome.returncode == 130
    assert not any(is_alive(int(pid)) for _, pid, _ in _lines(runs))
    second = _worker(url, tmp_path, runs, steps=20)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert all(t.status is TrialStatus.COMPLETED for t in anyio.run(stored))
    resumed = {trial: int(step) for trial, _, step in _lines(runs)[2:]}
    assert all(resumed[t.id] > 0 for t in left)  # each started again from its checkpoint


@pytest.mark.asyncio
async def test_leaving_records_the_attempt_preempted(tmp_path: Path) -> None:
    """A worker that leaves stops its trial (which exits with the interrupt code): interrupted, preempted, its doing."""
    store = MemoryStore()
    await store.add([Trial(id="a"), Trial(id="b")])
    ready = tmp_path / "ready"
    script = f"""
        import pathlib, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(30)
    """
    consumer = Consumer(
        python(script), base_dir=tmp_path, store=store, max_concurrency=1, heartbeat=5.0, grace=10.0
    )
    worker = Worker(store, consumer)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await wait_until(ready.exists, "the script to be ready")
        worker.leave("SIGTERM")
    by_id = {t.id: t for t in await store.list()}
    first = by_id["a"].outcome
    assert first is not None
    assert (first.status, first.reason, first.returncode) == (
        Status.INTERRUPTED,
        Reason.PREEMPTED,
        130,
    )
    assert "SIGTERM" in first.message
    assert by_id["a"].status is TrialStatus.INTERRUPTED and by_id["b"].status is TrialStatus.NEW
    (info,) = await store.workers()
    assert (info.name, info.state, info.running) == (worker.name, "exited", 0)


@pytest.mark.asyncio
async def test_no_reservation_after_reserve_until(tmp_path: Path) -> None:
    """A worker whose reserve_until has passed starts nothing and leaves the trials new."""
    store = MemoryStore()
    await store.add([Trial(id="a")])
    consumer = Consumer(python("pass"), base_dir=tmp_path, store=store)
    worker = Worker(store, consumer, reserve_until=time.time() - 1, job_id="12", task_id="3")
    await worker.run()
    assert [t.status for t in await store.list()] == [TrialStatus.NEW]
    assert worker.ran == 0
    (info,) = await store.workers()
    assert (info.job_id, info.task_id) == ("12", "3")


@pytest.mark.slow
def test_status_shows_the_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status counts the workers by state and lists the live ones; --json lists all."""
    url = f"sqlite:///{tmp_path}/store.db"
    assert (
        main(
            [
                "run",
                "--store",
                url,
                "--grid",
                "x=1",
                "--base-dir",
                str(tmp_path),
                "--",
                *python(
                    "import json, os; json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
                ),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["status", "--store", url]) == 0
    assert "workers: 1 exited" in capsys.readouterr().out
    assert main(["status", "--store", url, "--json"]) == 0
    (worker,) = json.loads(capsys.readouterr().out)["workers"]
    assert worker["state"] == "exited" and worker["job_id"] is None


class _BadStore:
    """A store whose workers table fails: first by raising, then by never answering."""

    def __init__(self) -> None:
        self.calls = 0

    async def record_worker(self, worker: WorkerInfo, *, starting: bool = False) -> None:
        self.calls += 1
        if self.calls == 1:
            raise StoreError("connection refused")
        await anyio.sleep_forever()


@pytest.mark.asyncio
async def test_a_failing_workers_table_costs_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A record that fails or hangs is bounded and logged once; the worker goes on."""
    store = _BadStore()
    info = WorkerInfo(name="w")
    presence = Presence(store, lambda: info, interval=0.05)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="async_consumer"):
        await presence.record(starting=True)
        await presence.record()  # hangs: given up after the interval
        await presence.record()
    assert store.calls == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "connection refused" in warnings[0]


def test_a_signal_while_the_worker_starts_is_kept(tmp_path: Path) -> None:
    """SIGUSR1 before the worker runs (Slurm may warn early) makes it leave before reserving."""
    store = MemoryStore()
    consumer = Consumer(python("pass"), base_dir=tmp_path, store=store)
    worker = Worker(store, consumer)

    async def start() -> list[signal.Signals]:
        await store.add([Trial(id="a")])
        async with handle_worker_signals(worker, early) as received:
            await worker.run()
        return received

    with early_signals() as early:
        os.kill(os.getpid(), signal.SIGUSR1)  # would kill the process without the keeper
        received = anyio.run(start)
    assert received == [signal.SIGUSR1] and worker.left_on == "SIGUSR1"
    assert worker.ran == 0
    assert [t.status for t in anyio.run(store.list)] == [TrialStatus.NEW]
