"""
A live worker of this host that is late to beat keeps its leases: another worker of the same
host reclaims a stale lease only from a holder that is stopped (or gone), or one that has beaten
nothing for ten leases and a minute (wedged). A late worker's trial is not started a second
time beside it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from async_consumer import Trial, TrialStatus

from ..conftest import cli, wait_until_sync
from .sync_store import add_trials, stored_trials

HEARTBEAT = 0.5
# a process of this host that reserves the oldest trial as a worker would (its own holder name),
# says which, and then never beats: running, but silent (as a worker the machine starves is)
HOLDER = """
import socket, sys, time
import anyio
from async_consumer._supervise.holder import holder_name
from async_consumer.stores import Reservation, store_from_url

async def reserve() -> None:
    async with store_from_url(sys.argv[1]) as store:
        host = socket.gethostname()
        lease = await store.reserve("silent", Reservation(host=host, holder=holder_name(host)))
    print(lease.trial_id, flush=True)  # the store closed: a stopped holder holds no lock

anyio.run(reserve)
time.sleep(600)
"""
SCRIPT = "import json, os; json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))"


def _holder(url: str) -> tuple[subprocess.Popen[bytes], str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE)
    assert holder.stdout is not None
    return holder, holder.stdout.readline().decode().strip()


def _first_attempt_ended(url: str, trial_id: str) -> bool:
    trial = next(t for t in stored_trials(url) if t.id == trial_id)
    return trial.attempts[0].outcome is not None


@pytest.mark.slow
def test_a_running_holder_keeps_its_lease_a_stopped_one_does_not(
    tmp_path: Path, store_url: str
) -> None:
    """
    Two silent holders of this host, one SIGSTOPped: a worker beside them reclaims the
    stopped one's lease (no loss charged: its holder still exists), not the running one's, as
    stale as it is (it would be only after ten leases and a minute: wedged).
    """
    add_trials(store_url, [Trial(id="a"), Trial(id="b")])
    running, running_trial = _holder(store_url)
    stopped, stopped_trial = _holder(store_url)
    worker: subprocess.Popen[bytes] | None = None
    try:
        assert (running_trial, stopped_trial) == ("a", "b")
        stopped.send_signal(signal.SIGSTOP)
        argv = cli("-q", "worker", "--store", store_url, "-j", "2", "--follow")
        argv += ["--heartbeat", str(HEARTBEAT), "--code-change", "ignore"]
        argv += ["--base-dir", str(tmp_path / "trials"), "--", sys.executable, "-c", SCRIPT]
        worker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until_sync(
            lambda: _first_attempt_ended(store_url, "b"), "the stopped holder's lease", alive=worker
        )
        # "a" was reserved first: as stale as "b", it would have gone in the same look
        kept = next(t for t in stored_trials(store_url) if t.id == "a")
        assert (kept.status, len(kept.attempts)) == (TrialStatus.RESERVED, 1)
    finally:
        for process in (running, stopped, worker):
            if process is not None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.communicate()
    rerun = next(t for t in stored_trials(store_url) if t.id == "b")
    first = rerun.attempts[0].outcome
    assert rerun.lost_count == 0 and first is not None and "still ran" in first.message
