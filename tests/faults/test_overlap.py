"""Overlapping runs of one trial: a frozen worker's run goes on while another worker re-runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from async_consumer import Reason, Status, TrialStatus
from async_consumer.stores import store_from_url

from ..conftest import POLL_BOUND, children_of, cli, wait_until_sync

# every run logs "attempt pid start <time>"; attempt 1 (the frozen worker's) then runs on until
# stopped; attempt 2 reports whether attempt 1's process was gone when it started (1.0) or not
SCRIPT = """
import json, os, pathlib, sys, time
marks = pathlib.Path(sys.argv[1])
attempt = os.environ['ASYNC_CONSUMER_ATTEMPT']
with open(marks / 'runs.txt', 'a') as runs:
    runs.write(f"{attempt} {os.getpid()} start {time.time()}\\n")
if attempt == '1':
    (marks / 'first.tmp').write_text(str(os.getpid()))
    (marks / 'first.tmp').rename(marks / 'first')
    time.sleep(120)
pid = int((marks / 'first').read_text())
stat = '/proc/%d/stat' % pid
alone = not os.path.exists(stat) or open(stat).read().rsplit(')', 1)[1].split()[0] == 'Z'
json.dump(1.0 if alone else 0.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
""".replace("{", "{{").replace("}", "}}")


def _worker(url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    argv = cli("worker", "--store", url, "--heartbeat", "0.5")
    argv += ["--grace", "0.5", "--base-dir", str(tmp_path / "trials")]
    argv += ["--code-change", "ignore"]
    argv += ["--", sys.executable, "-c", SCRIPT, str(tmp_path)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _add_and_get(url: str, trial_id: str | None = None):  # type: ignore[no-untyped-def]
    from async_consumer import Trial

    async with store_from_url(url) as store:
        if trial_id is None:
            await store.add([Trial(id="t")])
            return None
        return await store.get(trial_id)


@pytest.mark.slow
def test_a_frozen_workers_trial_is_stopped_before_its_rerun_starts(tmp_path: Path) -> None:
    """
    A worker frozen (SIGSTOP) past its lease while its trial runs: its watchdog, not frozen,
    stops the trial's processes before another worker re-runs it, so the two never overlap;
    the re-run completes, and the frozen worker's attempt counts no loss.
    """
    url = f"sqlite:///{tmp_path}/store.db"
    anyio.run(_add_and_get, url)
    frozen = _worker(url, tmp_path)
    try:
        wait_until_sync((tmp_path / "first").exists, "the first run", alive=frozen)
        frozen.send_signal(signal.SIGSTOP)
        frozen_at = time.time()
        other = _worker(url, tmp_path)
        _, err = other.communicate(timeout=60)
        frozen.send_signal(signal.SIGCONT)
        _, frozen_err = frozen.communicate(timeout=60)
    finally:
        frozen.kill()
    assert other.returncode == 0, err.decode()
    assert b"Traceback" not in err + frozen_err
    stored = anyio.run(_add_and_get, url, "t")
    assert stored.status is TrialStatus.COMPLETED and stored.lost_count == 0
    stale, rerun = stored.attempts
    assert stale.outcome is not None
    assert (stale.outcome.status, stale.outcome.reason) == (Status.INTERRUPTED, Reason.LEASE_LOST)
    assert rerun.outcome is not None and rerun.outcome.objective == 1.0  # the first was gone
    runs = (tmp_path / "runs.txt").read_text().splitlines()
    started = float(runs[-1].split()[-1])
    # the figure, for the record: a lease is 1.5 s here, and the other worker starts then
    print(f"frozen worker's trial re-run {started - frozen_at:.2f} s after the freeze")  # noqa: T201


def _watchdog_of(worker: subprocess.Popen[bytes]) -> int:
    """The pid of a worker's watchdog process (started with its first trial)."""
    for pid in children_of(worker.pid):
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if b"watchdog_main.py" in cmdline.read():
                return pid
    raise AssertionError("no watchdog")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_a_rerun_ends_its_trials_old_run_first(tmp_path: Path, fault: str) -> None:
    """
    A worker killed (SIGKILL) or frozen (SIGSTOP) while its trial runs, its watchdog frozen so
    that it cannot stop the trial: the worker that re-runs the trial on this host ends the old
    run first, so the two never overlap; the trial is not charged a loss.
    """
    url = f"sqlite:///{tmp_path}/store.db"
    anyio.run(_add_and_get, url)
    first = _worker(url, tmp_path)
    watchdog = None
    try:
        wait_until_sync((tmp_path / "first").exists, "the first run", alive=first)
        wait_until_sync(lambda: bool(_notes(tmp_path)), "the first run's note", alive=first)
        watchdog = _watchdog_of(first)
        os.kill(watchdog, signal.SIGSTOP)
        first.send_signal(signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
        other = _worker(url, tmp_path)
        _, err = other.communicate(timeout=POLL_BOUND)
    finally:
        first.kill()
        if watchdog is not None:
            os.kill(watchdog, signal.SIGCONT)  # it sees its worker gone, and exits
        first.communicate()  # (the watchdog has its stderr too)
    assert other.returncode == 0, err.decode()
    assert b"Traceback" not in err
    stored = anyio.run(_add_and_get, url, "t")
    assert stored.status is TrialStatus.COMPLETED and stored.lost_count == 0
    rerun = stored.attempts[-1]
    assert rerun.outcome is not None and rerun.outcome.objective == 1.0  # the first was gone
    assert b"still runs here: ending it before this one starts" in err
    assert _notes(tmp_path) == []  # the old run's note removed once it was gone


def _notes(tmp_path: Path) -> list[Path]:
    """The notes of the trial's runs whose processes may still be running."""
    return list((tmp_path / "trials").glob("*/t/attempts/*/run.json"))


@pytest.mark.asyncio
async def test_checkpoints_survive_attempts_and_results_do_not(tmp_path: Path) -> None:
    """
    A file the script keeps in the working directory is there for the next attempt; the results,
    params and logs of the previous attempt are not where the next one looks.
    """
    from async_consumer import Consumer, Trial

    code = """
import json, os, pathlib
here = pathlib.Path(os.environ['ORION_WORKING_DIR'])
checkpoint = here / 'checkpoint'
results = pathlib.Path(os.environ['ORION_RESULTS_PATH'])
assert results.read_text() == '' and results.parent != here
step = int(checkpoint.read_text()) + 1 if checkpoint.exists() else 1
checkpoint.write_text(str(step))
json.dump(float(step), open(results, 'w'))
"""
    consumer = Consumer([sys.executable, "-c", code], base_dir=tmp_path / "trials")
    first = await consumer.run(Trial(id="t", attempt=1))
    second = await consumer.run(Trial(id="t", attempt=2))
    assert (first.objective, second.objective) == (1.0, 2.0), second.stderr_tail
    assert first.working_dir == second.working_dir
    assert Path(first.stdout_path).parent != Path(second.stdout_path).parent
    assert Path(first.stdout_path).exists()  # the first attempt's log is kept
