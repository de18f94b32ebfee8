"""
A worker of another host frozen (SIGSTOP) past its leases: its trials move on, and once it
wakes they are charged no loss, their attempts recorded as what happened: frozen or cut off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from async_consumer import Reason, Status, StoredTrial, TrialStatus
from async_consumer._cli.main import main
from async_consumer.stores import store_from_url

from ..conftest import cli, wait_until_sync
from .conftest import completed_once

# each run logs "trial attempt role start"; a run of the worker to be frozen (role "frozen")
# then sleeps until stopped, any other run writes its result at once
SCRIPT = """
import json, os, sys, time
role = os.environ['FROZEN_TEST_ROLE']
with open(sys.argv[1], 'a') as runs:
    runs.write(f"{os.environ['ASYNC_CONSUMER_TRIAL_ID']} {os.environ['ASYNC_CONSUMER_ATTEMPT']} {role} start\\n")
if role == 'frozen':
    time.sleep(120)
json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
""".replace("{", "{{").replace("}", "}}")
# the command line in a process whose host is named "elsewhere": another host, to the others
ELSEWHERE = """
import socket, sys
socket.gethostname = lambda: "elsewhere"
from async_consumer._cli.main import console
sys.exit(console())
"""
TRIALS = 4


def _worker(url: str, tmp_path: Path, role: str) -> subprocess.Popen[bytes]:
    args = ["worker", "--store", url, "-j", "2", "--heartbeat", "0.5", "--grace", "0.5"]
    args += ["--base-dir", str(tmp_path / "trials"), "--code-change", "ignore"]
    args += ["--", sys.executable, "-c", SCRIPT, str(tmp_path / "runs.txt")]
    argv = [sys.executable, "-c", ELSEWHERE, *args] if role == "frozen" else cli(*args)
    env = {**os.environ, "FROZEN_TEST_ROLE": role}
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _runs(tmp_path: Path, role: str) -> list[str]:
    path = tmp_path / "runs.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split()[0] for line in lines if line.split()[2:] == [role, "start"]]


async def _stored(url: str) -> list[StoredTrial]:
    async with store_from_url(url) as store:
        return await store.list()


def _completed(url: str) -> bool:
    return sum(t.status is TrialStatus.COMPLETED for t in anyio.run(_stored, url)) == TRIALS


@pytest.mark.slow
def test_a_frozen_worker_elsewhere_costs_its_trials_no_loss(tmp_path: Path, store_url: str) -> None:
    """
    Worker A (host "elsewhere") frozen past its leases beside worker B: B completes A's trials,
    each charged a loss meanwhile (A may have died); A, woken, has those losses cleared: no
    trial lost or broken, A's attempts interrupted, "frozen or cut off".
    """
    params = tmp_path / "params.jsonl"
    params.write_text("".join(json.dumps({"id": f"t{i}"}) + "\n" for i in range(TRIALS)))
    assert main(["-q", "add", "--store", store_url, "--params", str(params)]) == 0
    frozen = _worker(store_url, tmp_path, "frozen")
    live: subprocess.Popen[bytes] | None = None
    try:
        wait_until_sync(lambda: len(_runs(tmp_path, "frozen")) == 2, "A's trials", alive=frozen)
        held = set(_runs(tmp_path, "frozen"))
        frozen.send_signal(signal.SIGSTOP)
        live = _worker(store_url, tmp_path, "live")
        wait_until_sync(
            lambda: _completed(store_url), "B to complete every trial", bound=120, every=0.2
        )
        charged = {t.id: t.lost_count for t in anyio.run(_stored, store_url)}
        frozen.send_signal(signal.SIGCONT)
        _, frozen_err = frozen.communicate(timeout=60)
        _, live_err = live.communicate(timeout=60)
    finally:
        for worker in (frozen, live):
            if worker is not None:
                worker.send_signal(signal.SIGCONT)
                worker.kill()
                worker.wait()
    assert (frozen.returncode, live.returncode) == (0, 0), (frozen_err, live_err)
    assert b"Traceback" not in frozen_err + live_err
    # while A was frozen, its trials were charged a loss: it might have died of them
    assert {i: n for i, n in charged.items() if n} == dict.fromkeys(held, 1)
    stored = anyio.run(_stored, store_url)
    completed_once(stored, TRIALS)
    assert [t.lost_count for t in stored] == [0] * TRIALS
    assert all(t.status is not TrialStatus.BROKEN for t in stored)
    for trial in stored:
        first = trial.attempts[0]
        assert first.outcome is not None
        if trial.id not in held:
            assert first.outcome.status is Status.COMPLETED
            continue
        assert first.host == "elsewhere"
        assert (first.outcome.status, first.outcome.reason) == (
            Status.INTERRUPTED,
            Reason.LEASE_LOST,
        )
        assert "frozen or cut off" in first.outcome.message
