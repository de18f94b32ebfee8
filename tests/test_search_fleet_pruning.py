"""Pruning across a fleet: a trial on worker B is pruned against the curves worker A ran."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from async_consumer import TrialStatus
from async_consumer.stores import store_from_url

from .conftest import LOSS_CURVE, wait_until_sync

pytest.importorskip("optuna")

# HOPELESS=0 (worker A): loss 1/(step+1) for 5 steps, then the results; trial 6 first waits
# for the file RELEASE. HOPELESS=1 (worker B): loss 10 more a step, then waits to be stopped.
CURVES = (
    """
import json, os, sys, time
hopeless = os.environ['HOPELESS'] == '1'
if os.environ['ASYNC_CONSUMER_TRIAL_ID'] == 'default-6':
    while not os.path.exists(os.environ['RELEASE']):
        time.sleep(0.05)
"""
    + LOSS_CURVE
)


def _start(command: str, url: str, base: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "async_consumer._cli", "-q", command, "--store", url]
    argv += ["-j", "1", "--grace", "2", "--base-dir", str(base)]
    if command == "run":
        argv += ["-n", "7", "--sampler", "random", "--seed", "1", "--pruner", "median"]
        argv += ["--metric", "loss"]
    else:
        argv += ["--experiment", "default"]
    argv += ["--", sys.executable, "-c", CURVES, "-x~uniform(0, 1)"]
    out = subprocess.DEVNULL
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env={**os.environ, **env})


async def _trials(url: str) -> dict[str, tuple[TrialStatus, str, str]]:
    async with store_from_url(url) as store:
        stored = await store.list()
    return {
        t.id: (
            t.status,
            t.attempts[-1].worker if t.attempts else "",
            t.outcome.message if t.outcome else "",
        )
        for t in stored
    }


def _status(url: str, trial_id: str) -> TrialStatus | None:
    found = anyio.run(_trials, url).get(trial_id)
    return found[0] if found else None


def _completed(url: str) -> int:
    return sum(s is TrialStatus.COMPLETED for s, _, _ in anyio.run(_trials, url).values())


@pytest.mark.slow
def test_a_trial_is_pruned_against_another_workers_curves(store_url: str, tmp_path: Path) -> None:
    """
    A completes 5 good trials (the median pruner's startup) and holds the 6th; their files are
    gone. B's hopeless trial 7 is pruned at step 0, against A's curves read from the store.
    """
    release = tmp_path / "release"
    a = _start("run", store_url, tmp_path / "a", {"HOPELESS": "0", "RELEASE": str(release)})
    b: subprocess.Popen[bytes] | None = None
    try:
        wait_until_sync(lambda: _completed(store_url) >= 5, "A's 5 good trials", alive=a, every=0.1)
        # as if A ran on another host: its finished trials' metrics files are out of B's reach
        for k in range(1, 6):
            shutil.rmtree(tmp_path / "a" / "default" / f"default-{k}")
        b = _start("worker", store_url, tmp_path / "b", {"HOPELESS": "1", "RELEASE": str(release)})
        wait_until_sync(
            lambda: _status(store_url, "default-7") is TrialStatus.PRUNED,
            "B's trial pruned",
            alive=b,
            every=0.1,
        )
        release.touch()  # A's trial 6 ends: both leave (B stayed while it could be lost)
        for process in (a, b):
            _, err = process.communicate(timeout=300)
            assert process.returncode == 0, err.decode()
    finally:
        for left in (a, b):
            if left is not None and left.returncode is None:
                left.kill()
                left.communicate()
    trials = anyio.run(_trials, store_url)
    assert sorted(trials) == sorted(f"default-{k}" for k in range(1, 8))
    status, worker, message = trials["default-7"]
    assert status is TrialStatus.PRUNED and message.startswith("pruned at step 0:")
    assert worker != trials["default-1"][1]  # B ran it, A the others
    assert {trials[f"default-{k}"][0] for k in range(1, 7)} == {TrialStatus.COMPLETED}
