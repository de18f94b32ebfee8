"""
A search's values are fenced like outcomes: a worker frozen past its lease, woken after another
worker took its trial, does not get its late values in ahead of the new holder's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from async_consumer import StoredTrial, TrialStatus
from async_consumer.stores import store_from_url

from ..conftest import cli, wait_until_sync

pytest.importorskip("optuna")

# frozen (worker A): loss 1.0 at step 0, then (once FROZEN exists, A stopped) 999.0 at steps
# 1 to 5, then it waits to be stopped; live (worker B, the trial's next attempt): once WOKEN
# exists (A woken and gone), 0.5 at steps 0 to 5, and it completes
SCRIPT = """
import json, os, sys, time
def wait(name):
    while not os.path.exists(os.environ[name]):
        time.sleep(0.05)
def report(steps, loss):
    with open(os.environ['ASYNC_CONSUMER_METRICS_PATH'], 'a') as metrics:
        for step in steps:
            metrics.write(json.dumps({'step': step, 'loss': loss}) + '\\n')
with open(os.environ['RUNS'], 'a') as runs:
    runs.write(os.environ['ROLE'] + '\\n')
if os.environ['ROLE'] == 'frozen':
    report([0], 1.0)
    wait('FROZEN')
    report(range(1, 6), 999.0)
    time.sleep(600)
wait('WOKEN')
report(range(6), 0.5)
json.dump(0.5, open(os.environ['ORION_RESULTS_PATH'], 'w'))
"""
# the command line in a process whose host is named "elsewhere": another host, to the others
# (a worker frozen on this host is known alive: its trials are not taken from it)
ELSEWHERE = """
import socket, sys
socket.gethostname = lambda: "elsewhere"
from async_consumer._cli.main import console
sys.exit(console())
"""


def _start(url: str, tmp_path: Path, role: str) -> subprocess.Popen[bytes]:
    if role == "frozen":
        args = ["run", "-n", "1", "--sampler", "random", "--seed", "1", "--pruner", "median"]
        args += ["--metric", "loss"]
    else:
        args = ["worker", "--experiment", "default"]
    args += ["--store", url, "-j", "1", "--heartbeat", "0.5", "--grace", "0.5"]
    args += ["--base-dir", str(tmp_path / role), "--code-change", "ignore"]
    args += ["--", sys.executable, "-c", SCRIPT, "-x~uniform(0, 1)"]
    argv = [sys.executable, "-c", ELSEWHERE, *args] if role == "frozen" else cli(*args)
    names = {"ROLE": role, "RUNS": "runs.txt", "FROZEN": "frozen.flag", "WOKEN": "woken.flag"}
    env = {**os.environ, **{k: str(tmp_path / v) if k != "ROLE" else v for k, v in names.items()}}
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


async def _read(url: str) -> tuple[list[StoredTrial], dict[int, float]]:
    async with store_from_url(url) as store:
        trials = await store.list()
        values, _ = await store.read_values()
    return trials, {step: value for trial_id, step, value in values if trial_id == "default-1"}


def _outlived(url: str) -> bool:
    """Whether the trial's first attempt says its worker came back, frozen or cut off."""
    trials, _ = anyio.run(_read, url)
    first = trials[0].attempts[0].outcome if trials and trials[0].attempts else None
    return first is not None and "frozen or cut off" in first.message


def _runs(tmp_path: Path) -> list[str]:
    path = tmp_path / "runs.txt"
    return path.read_text().split() if path.exists() else []


@pytest.mark.slow
def test_a_frozen_workers_late_values_are_refused(tmp_path: Path, store_url: str) -> None:
    """
    A reports step 0 and is frozen; its script goes on to report steps 1 to 5, hopeless. B
    takes the trial; A, woken, writes its late values (its lease was reclaimed) and finds its
    lease gone; B's attempt then reports 0.5 at every step. The store keeps A's step 0 (written while its lease
    was current) and B's steps 1 to 5, none of A's late ones.
    """
    url = store_url
    frozen = _start(url, tmp_path, "frozen")
    live: subprocess.Popen[bytes] | None = None
    try:
        wait_until_sync(
            lambda: 0 in anyio.run(_read, url)[1], "A's step 0 in the store", alive=frozen
        )
        frozen.send_signal(signal.SIGSTOP)
        (tmp_path / "frozen.flag").touch()
        live = _start(url, tmp_path, "live")
        wait_until_sync(lambda: "live" in _runs(tmp_path), "B to run the trial", alive=live)
        frozen.send_signal(signal.SIGCONT)
        # A's finish was refused (its values written before it) and it told the store so
        wait_until_sync(lambda: _outlived(url), "A to find its lease gone", alive=frozen)
        (tmp_path / "woken.flag").touch()
        _, frozen_err = frozen.communicate(timeout=120)
        _, live_err = live.communicate(timeout=120)
    finally:
        for worker in (frozen, live):
            if worker is not None and worker.returncode is None:
                worker.send_signal(signal.SIGCONT)
                worker.kill()
                worker.wait()
    assert (frozen.returncode, live.returncode) == (0, 0), (frozen_err, live_err)
    assert b"Traceback" not in frozen_err + live_err
    trials, values = anyio.run(_read, url)
    assert [(t.id, t.status) for t in trials] == [("default-1", TrialStatus.COMPLETED)]
    assert values == {0: 1.0, 1: 0.5, 2: 0.5, 3: 0.5, 4: 0.5, 5: 0.5}
