"""Workers that die: a killed ``run`` resumed at once, a poison trial among healthy ones."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from async_consumer import Reason, Status, TrialStatus

from ..conftest import cli, wait_until_sync
from .sync_store import stored_trials

# each run appends "trial attempt pid"; attempt 1 of a trial named slow* sleeps for a minute
SCRIPT = """
import json, os, sys, time
with open(sys.argv[1], 'a') as log:
    log.write(f"{os.environ['ASYNC_CONSUMER_TRIAL_ID']} {os.environ['ASYNC_CONSUMER_ATTEMPT']} {os.getpid()}\\n")
if os.environ['ASYNC_CONSUMER_TRIAL_ID'] == 'poison':
    import signal
    os.kill(os.getppid(), signal.SIGKILL)  # kill the worker that runs it
    time.sleep(60)
if os.environ['ASYNC_CONSUMER_ATTEMPT'] == '1' and sys.argv[2] == 'slow':
    time.sleep(60)
time.sleep(0.05)
json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
""".replace("{", "{{").replace("}", "}}")


def _lines(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(t, int(a)) for t, a, _ in (line.split() for line in path.read_text().splitlines())]


@pytest.mark.slow
def test_a_killed_run_resumes_at_once(tmp_path: Path) -> None:
    """A ``run`` SIGKILLed mid-trial and run again resumes its trials at once, not after 3 beats."""
    runs = tmp_path / "runs.txt"
    url = f"sqlite:///{tmp_path}/store.db"
    argv = cli("-q", "run", "--store", url, "--grid", "x=1,2")
    argv += ["-j", "2", "--base-dir", str(tmp_path / "trials")]
    argv += ["--heartbeat", "60", "--code-change", "ignore"]
    argv += ["--", sys.executable, "-c", SCRIPT, str(runs), "slow"]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until_sync(lambda: len(_lines(runs)) == 2, "both trials to start", alive=first)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    started = time.monotonic()
    rerun = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_sync(lambda: any(a == 2 for _, a in _lines(runs)), "a second attempt")
        resumed_after = time.monotonic() - started
        _, err = rerun.communicate(timeout=60)
    finally:
        rerun.kill()
    print(f"killed run: resumed after {resumed_after:.2f} s")  # noqa: T201 - the figure, for the record
    assert rerun.returncode == 0, err.decode()
    # a 60 s heartbeat: waiting for 3 beats would take 180 s; the margin is for a loaded machine
    # (on a quiet one this is 1.4 s, printed above)
    assert resumed_after < 60.0
    for trial in stored_trials(url):
        assert trial.status is TrialStatus.COMPLETED
        lost = trial.attempts[0].outcome
        assert lost is not None and (lost.status, lost.reason) == (Status.LOST, Reason.LEASE_LOST)
        assert "is gone" in lost.message


class Supervisor:
    """Keeps ``count`` workers running: one that dies of a signal is started again."""

    def __init__(self, argv: list[str], count: int) -> None:
        self.argv = argv
        self.workers = [self._start() for _ in range(count)]
        self.deaths = 0
        self.exits: list[int] = []
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _watch(self) -> None:
        while self.workers:
            for worker in list(self.workers):
                if worker.poll() is None:
                    continue
                self.workers.remove(worker)
                worker.communicate()
                if worker.returncode < 0:  # killed: restart it, as systemd or Slurm would
                    self.deaths += 1
                    self.workers.append(self._start())
                else:
                    self.exits.append(worker.returncode)
            time.sleep(0.02)  # polling the processes' state

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        for worker in self.workers:
            worker.kill()


@pytest.mark.slow
def test_a_poison_trial_is_contained(tmp_path: Path) -> None:
    """
    A trial that kills its worker, among 60 healthy ones, 4 workers restarted when they die:
    the poison trial ends broken after at most 3 deaths, the 60 others complete.
    """
    from async_consumer._cli.main import main

    runs = tmp_path / "runs.txt"
    url = f"sqlite:///{tmp_path}/store.db"
    params = tmp_path / "params.jsonl"
    lines = [f'{{"id": "h{i:02d}"}}' for i in range(30)]
    lines += ['{"id": "poison"}'] + [f'{{"id": "h{i:02d}"}}' for i in range(30, 60)]
    params.write_text("\n".join(lines) + "\n")
    assert main(["-q", "add", "--store", url, "--params", str(params)]) == 0
    argv = cli("-q", "worker", "--store", url, "-j", "3", "--base-dir")
    argv += [str(tmp_path / "trials"), "--code-change", "ignore"]
    argv += ["--grace", "0.5"]
    argv += ["--", sys.executable, "-c", SCRIPT, str(runs), "fast"]
    supervisor = Supervisor(argv, 4)
    supervisor.join(timeout=120)
    stored = {t.id: t for t in stored_trials(url)}
    lost = sum(
        a.outcome is not None and a.outcome.status is Status.LOST
        for t in stored.values()
        for a in t.attempts
    )
    print(f"poison: {supervisor.deaths} worker deaths, {lost} attempts lost")  # noqa: T201
    assert stored["poison"].status is TrialStatus.BROKEN
    assert supervisor.deaths <= 3
    assert len(stored["poison"].attempts) <= 3
    healthy = [t for t in stored.values() if t.id != "poison"]
    assert len(healthy) == 60
    assert all(t.status is TrialStatus.COMPLETED for t in healthy)
    # the exits: 1 for the workers that saw the poison trial broken, 0 for the others
    assert set(supervisor.exits) <= {0, 1} and len(supervisor.exits) == 4
