"""
Results that finish while PostgreSQL is unreachable for longer than a lease are kept: recorded
when the store is back, or, by a worker told to leave meanwhile, left on disk for the next.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from async_consumer import Status, StoredTrial, Trial, TrialStatus

from ..conftest import NewSchema, cli, postgres_url, wait_until_sync
from .proxy import Proxy, running_proxy
from .sync_store import add_trials, stored_trials

# each run logs its start, waits for the test's go, then writes its result and exits
SCRIPT = """
import json, os, pathlib, sys, time
with open(sys.argv[1], 'a') as runs:
    runs.write(os.environ['ASYNC_CONSUMER_TRIAL_ID'] + ' ' + os.environ['ASYNC_CONSUMER_ATTEMPT'] + '\\n')
go = pathlib.Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
"""
TRIALS, LANES = 8, 4
HEARTBEAT = 1.0  # a lease lives 3 heartbeats: 3 s
OUTAGE = 7.0  # longer than a lease, and than the 4 s a worker's beats hold out


@dataclass
class Fleet:
    """The test's store behind a proxy, and what the trials write."""

    direct: str
    proxied: str
    proxy: Proxy
    tmp_path: Path

    @property
    def runs(self) -> list[str]:
        path = self.tmp_path / "runs.txt"
        return path.read_text().splitlines() if path.exists() else []

    def worker(self) -> subprocess.Popen[bytes]:
        script = self.tmp_path / "trial.py"
        script.write_text(SCRIPT)
        argv = cli("worker", "--store", self.proxied, "-j", str(LANES))
        argv += ["--heartbeat", str(HEARTBEAT), "--grace", "0.5"]
        argv += ["--base-dir", str(self.tmp_path / "trials"), "--code-change", "ignore"]
        argv += ["--", sys.executable, str(script), str(self.tmp_path / "runs.txt")]
        argv += [str(self.tmp_path / "go")]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def exits_written(self) -> int:
        return sum(1 for _ in (self.tmp_path / "trials").glob("*/*/attempts/*/exit.json"))

    def stored(self) -> list[StoredTrial]:
        return stored_trials(self.direct)


@pytest.fixture
def fleet(tmp_path: Path, new_schema: NewSchema) -> Iterator[Fleet]:
    """A fresh PostgreSQL schema with 8 trials, reached through a proxy the test can cut."""
    base = postgres_url()
    server = urlsplit(base)
    schema = new_schema()
    direct = f"{base}?schema={schema}"

    add_trials(direct, (Trial(id=f"t{i}") for i in range(TRIALS)))
    with running_proxy(server.hostname or "127.0.0.1", server.port or 5432) as proxy:
        netloc = f"{server.username}@127.0.0.1:{proxy.port}"
        proxied = f"{server._replace(netloc=netloc).geturl()}?schema={schema}"
        yield Fleet(direct, proxied, proxy, tmp_path)


def _finish_during_an_outage(fleet: Fleet, worker: subprocess.Popen[bytes]) -> None:
    """Cut the store while the first trials run, then let them finish (their results kept)."""
    wait_until_sync(lambda: len(fleet.runs) >= LANES, "every lane's trial to start", alive=worker)
    fleet.proxy.cut()
    (fleet.tmp_path / "go").touch()
    wait_until_sync(lambda: fleet.exits_written() >= LANES, "their results", alive=worker)


@pytest.mark.slow
def test_results_finished_during_a_long_outage_are_recorded(fleet: Fleet) -> None:
    """
    The store unreachable for longer than a lease while trials finish: every result is
    recorded when it is back, none is run again, and no attempt says a reply was lost.
    """
    worker = fleet.worker()
    cut_at = time.monotonic()
    _finish_during_an_outage(fleet, worker)
    time.sleep(max(0.0, cut_at + OUTAGE - time.monotonic()))  # the outage itself
    fleet.proxy.restore()
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err.decode()
    stored = fleet.stored()
    assert sorted(fleet.runs) == sorted(f"t{i} 1" for i in range(TRIALS))  # none ran twice
    assert {t.status for t in stored} == {TrialStatus.COMPLETED}
    assert all(len(t.attempts) == 1 and t.lost_count == 0 for t in stored)
    assert b"result not recorded" not in err and b"reply was lost" not in err
    assert b"store unreachable" in err and b"Traceback" not in err


@pytest.mark.slow
def test_a_worker_leaving_during_an_outage_leaves_its_results_to_the_next(
    fleet: Fleet,
) -> None:
    """
    A worker told to leave while the store is unreachable exits without waiting for it; the
    next worker completes the trials it had finished from their files, without running them.
    """
    first = fleet.worker()
    _finish_during_an_outage(fleet, first)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)  # the store still unreachable
    assert b"outcome left on disk" in err and b"Traceback" not in err, err.decode()
    fleet.proxy.restore()
    second = fleet.worker()
    (fleet.tmp_path / "go").touch()
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()
    stored = fleet.stored()
    assert sorted(fleet.runs) == sorted(f"t{i} 1" for i in range(TRIALS))  # none ran twice
    assert {t.status for t in stored} == {TrialStatus.COMPLETED}
    from_files = [t for t in stored if len(t.attempts) > 1]
    assert len(from_files) == LANES
    for trial in from_files:
        last = trial.attempts[-1].outcome
        assert last is not None and last.status is Status.COMPLETED
        assert "completed from attempt 1's results" in last.message
        assert last.objective == 1.0
