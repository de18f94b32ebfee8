"""
A dead worker's trials are taken up by a live worker that is busy but has room: at once when
the dead worker was of this host, within 4 heartbeats of its last beat when it was of another.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from async_consumer import Trial, TrialStatus

from ..conftest import cli, wait_until_sync
from .sync_store import add_trials, stored_trials

HEARTBEAT = 1.0
# each run appends "trial attempt"; a trial named hold* runs until the file "release" exists,
# the first attempt of any other runs until killed, and a later one ends at once
SCRIPT = """
import json, os, sys, time
trial, attempt = os.environ['ASYNC_CONSUMER_TRIAL_ID'], os.environ['ASYNC_CONSUMER_ATTEMPT']
with open(sys.argv[1], 'a') as log:
    log.write(f"{trial} {attempt}\\n")
release = os.path.join(os.path.dirname(sys.argv[1]), 'release')
while trial.startswith('hold') and not os.path.exists(release):
    time.sleep(0.05)
if not trial.startswith('hold') and attempt == '1':
    time.sleep(600)
json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
""".replace("{", "{{").replace("}", "}}")
# the command line in a process whose host is named "elsewhere": another host, to the others
ELSEWHERE = """
import socket, sys
socket.gethostname = lambda: "elsewhere"
from async_consumer._cli.main import console
sys.exit(console())
"""


def _runs(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(t, int(a)) for t, a in (line.split() for line in path.read_text().splitlines())]


def _worker(
    url: str, tmp_path: Path, jobs: int, runs: Path, host: str = "here"
) -> subprocess.Popen[bytes]:
    args = ["-q", "worker", "--store", url, "-j", str(jobs), "--follow"]
    args += ["--heartbeat", str(HEARTBEAT), "--grace", "0.5", "--code-change", "ignore"]
    args += ["--base-dir", str(tmp_path / "trials"), "--", sys.executable, "-c", SCRIPT]
    argv = cli(*args) if host == "here" else [sys.executable, "-c", ELSEWHERE, *args]
    return subprocess.Popen([*argv, str(runs)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.parametrize("host", ["here", "elsewhere"])
def test_a_dead_workers_trials_rerun_within_4_heartbeats(
    tmp_path: Path, store_url: str, host: str
) -> None:
    """
    A worker (of this host, or of another) SIGKILLed while it runs 3 trials, beside a live
    worker running 2 of its own with 4 places free: each of the dead worker's trials starts
    again within 4 heartbeats of its last beat (by the store's clock), and the live worker's
    trials run on. Another host's worker is seen dead only when its leases fall stale (3
    heartbeats): the live worker looks then, not up to a heartbeat later.
    """
    runs = tmp_path / "runs.txt"
    dead = [f"d{i}" for i in range(3)]
    add_trials(store_url, (Trial(id=trial_id) for trial_id in dead))
    doomed = _worker(store_url, tmp_path, 3, runs, host)
    live: subprocess.Popen[bytes] | None = None
    try:
        wait_until_sync(lambda: len(_runs(runs)) == 3, "3 trials to start", alive=doomed)
        add_trials(store_url, [Trial(id="hold0"), Trial(id="hold1")])
        live = _worker(store_url, tmp_path, 6, runs)
        started = {("hold0", 1), ("hold1", 1)}
        wait_until_sync(lambda: started <= set(_runs(runs)), "the live worker's trials", alive=live)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        again = {(trial_id, 2) for trial_id in dead}
        # a bound only a worker that waits for its own trials to end first reaches
        wait_until_sync(lambda: again <= set(_runs(runs)), "the re-runs", bound=120, alive=live)
        (tmp_path / "release").touch()
        wait_until_sync(lambda: _all_done(store_url), "every trial to complete", alive=live)
    finally:
        for worker in (doomed, live):
            if worker is not None:
                worker.kill()
                _, err = worker.communicate()
                assert b"Traceback" not in err, err.decode()
    stored = {trial.id: trial for trial in stored_trials(store_url)}
    waits = []
    for trial_id in dead:
        killed, rerun = stored[trial_id].attempts[:2]
        assert killed.heartbeat_at is not None
        waits.append((rerun.reserved_at - killed.heartbeat_at).total_seconds() / HEARTBEAT)
    print(f"dead worker's trials re-run after {sorted(waits)} heartbeats")  # noqa: T201
    assert statistics.median(waits) <= 4.0
    assert max(waits) <= 6.0  # the last waits for the suspect before it (one a worker)
    assert [len(stored[h].attempts) for h in ("hold0", "hold1")] == [1, 1]


def _all_done(url: str) -> bool:
    return all(t.status is TrialStatus.COMPLETED for t in stored_trials(url))
