"""
Chaos at scale: a fleet through PgBouncer while workers are killed, PgBouncer is restarted and
every PostgreSQL backend behind it is terminated, all in one run.

The test starts a PgBouncer of its own (restarting the shared one would break other suites)
and, for PostgreSQL's restart, terminates every backend that serves that PgBouncer with
``pg_terminate_backend``: restarting the shared server would break every other test running
on it.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

from async_consumer import StoredTrial, Trial

from ..bouncer import Bouncer, running_pgbouncer
from ..conftest import NewSchema, cli, postgres_url, wait_until_sync
from .conftest import assert_own_result, completed_once, reaped
from .sync_store import add_trials, left_behind, stored_trials
from .test_pooler import psql

WORKERS, JOBS, TRIALS, HEARTBEAT = 16, 4, 500, 3.0
# each run logs "trial attempt pid", works a moment, and reports its own pid as its objective:
# an accepted result is then known to be its attempt's own run's
SCRIPT = """echo "$ASYNC_CONSUMER_TRIAL_ID $ASYNC_CONSUMER_ATTEMPT $$" >>"$1"; sleep 1
echo "$$" >"$ORION_RESULTS_PATH"
"""


class Fleet:
    """The test's workers: started, killed and started again."""

    def __init__(self, url: str, tmp_path: Path, runs: Path) -> None:
        self.url, self.tmp_path, self.runs = url, tmp_path, runs
        self.workers: list[subprocess.Popen[bytes]] = []
        self.killed: list[tuple[str, float]] = []  # (worker name, when)

    def start(self) -> None:
        """One more worker (its attempts carry its name, ``host:pid``)."""
        name = f"w{len(self.workers)}"
        argv = cli("worker", "--store", self.url, "-j", str(JOBS))
        argv += ["--heartbeat", str(HEARTBEAT), "--grace", "0.5"]
        argv += ["--store-outage-limit", "120", "--code-change", "ignore"]
        argv += ["--base-dir", str(self.tmp_path / "trials")]
        argv += ["--", "sh", "-c", SCRIPT, "trial", str(self.runs)]
        err = (self.tmp_path / f"{name}.err").open("wb")
        self.workers.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err))
        err.close()

    def kill_one(self) -> None:
        """SIGKILL a running worker at random, and start another in its place."""
        alive = [i for i, w in enumerate(self.workers) if w.poll() is None]
        victim = random.choice(alive)
        self.workers[victim].send_signal(signal.SIGKILL)
        self.workers[victim].wait(timeout=30)
        self.killed.append((f"{socket.gethostname()}:{self.workers[victim].pid}", time.time()))
        self.start()

    def stderr(self, index: int) -> str:
        return (self.tmp_path / f"w{index}.err").read_text(errors="replace")


def _runs(runs: Path) -> list[tuple[str, int, int]]:
    if not runs.exists():
        return []
    lines = (line.split() for line in runs.read_text().splitlines())
    return [(t, int(a), int(p)) for t, a, p in (parts for parts in lines if len(parts) == 3)]


def _wait_for_runs(runs: Path, count: int, fleet: Fleet) -> None:
    def begun() -> bool:
        assert any(w.poll() is None for w in fleet.workers), "every worker has left"
        return len(_runs(runs)) >= count

    wait_until_sync(begun, f"{count} runs to begin", every=0.05)


def _terminate_backends(bouncer: Bouncer, server: str) -> int:
    """What a restart of PostgreSQL does to PgBouncer: every one of its backends ends."""
    rows = psql(bouncer.admin_url, "SHOW SERVERS")
    pids = [int(row[15]) for row in rows if len(row) > 15 and row[15].isdigit()]
    if not pids:
        return 0
    ended = psql(
        server,
        f"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM "
        f"unnest(ARRAY[{','.join(map(str, pids))}]) AS pid",
    )
    return int(ended[0][0])


@pytest.mark.slow
def test_chaos_at_scale_through_pgbouncer(tmp_path: Path, new_schema: NewSchema) -> None:
    """
    16 workers x -j 4 through PgBouncer, 500 trials; during the run 2 workers are SIGKILLed
    and replaced, PgBouncer is restarted, and every backend behind it is terminated: every
    trial completes exactly once, no result comes from a stale lease, no process is left,
    no worker prints a traceback.
    """
    server = postgres_url()
    schema = new_schema()
    direct = f"{server}?schema={schema}"

    add_trials(direct, (Trial(id=f"t{i:03d}") for i in range(TRIALS)))
    runs = tmp_path / "runs.txt"
    terminated = 0
    with running_pgbouncer(server, pool_size=16, max_client_conn=200) as bouncer:
        fleet = Fleet(f"{bouncer.url}?schema={schema}", tmp_path, runs)
        with reaped(fleet.workers):  # the list grows as workers are started
            for _ in range(WORKERS):
                fleet.start()
            _wait_for_runs(runs, 60, fleet)
            fleet.kill_one()
            _wait_for_runs(runs, 150, fleet)
            bouncer.restart()
            _wait_for_runs(runs, 250, fleet)
            terminated = _terminate_backends(bouncer, server)
            _wait_for_runs(runs, 330, fleet)
            fleet.kill_one()
            for worker in fleet.workers:
                worker.wait(timeout=600)
        stored = stored_trials(direct)
    ran = _runs(runs)
    errors = {f"w{i}": fleet.stderr(i) for i in range(len(fleet.workers))}
    print(_summary(stored, ran, errors, fleet, terminated, bouncer))  # noqa: T201
    for index, worker in enumerate(fleet.workers):
        name = f"w{index}"
        assert "Traceback" not in errors[name], errors[name]
        if worker.returncode != -signal.SIGKILL:
            assert worker.returncode == 0, errors[name]
    assert sum(w.returncode == -signal.SIGKILL for w in fleet.workers) == 2
    assert terminated > 0
    for trial, attempt in completed_once(stored, TRIALS):
        assert_own_result(trial, attempt, ran)
    assert left_behind(tmp_path / "trials") == []


def _summary(
    stored: list[StoredTrial],
    ran: list[tuple[str, int, int]],
    errors: dict[str, str],
    fleet: Fleet,
    terminated: int,
    bouncer: Bouncer,
) -> str:
    """The run's figures (seen with pytest -s), with how long the killed workers' trials waited."""
    reasons: defaultdict[str, int] = defaultdict(int)
    waits = []
    for trial in stored:
        for before, after in zip(trial.attempts, trial.attempts[1:], strict=False):
            if before.worker in {name for name, _ in fleet.killed} and before.heartbeat_at:
                waits.append((after.reserved_at - before.heartbeat_at).total_seconds())
        for attempt in trial.attempts:
            if attempt.outcome is not None:
                reasons[str(attempt.outcome.reason or attempt.outcome.status)] += 1
    outages = sum(e.count("store unreachable") for e in errors.values())
    again = f"{max(waits) / HEARTBEAT:.1f}" if waits else "-"
    return (
        f"chaos at scale: {len(stored)} trials, {sum(len(t.attempts) for t in stored)} "
        f"attempts, {len(ran)} runs, outcomes {dict(reasons)}; killed {len(fleet.killed)} "
        f"workers, PgBouncer restarted {bouncer.restarts}x, {terminated} backends "
        f"terminated, {outages} outages logged; the killed workers' {len(waits)} trials "
        f"started again at most {again} heartbeats after their last beat"
    )
