"""Workers on PostgreSQL through a proxy that is cut, with their connections terminated."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from async_consumer import Trial

from ..conftest import NewSchema, cli, postgres_url, wait_until_sync
from .conftest import assert_own_result, completed_once, polling, reaped
from .proxy import running_proxy
from .sync_store import add_trials, stored_trials

# each run appends "trial attempt pid" to a shared file, works a little, writes its objective
SCRIPT = """
import json, os, sys, time
with open(sys.argv[1], 'a') as log:
    log.write(f"{os.environ['ASYNC_CONSUMER_TRIAL_ID']} {os.environ['ASYNC_CONSUMER_ATTEMPT']} {os.getpid()}\\n")
time.sleep(0.1)
json.dump(float(os.getpid()), open(os.environ['ORION_RESULTS_PATH'], 'w'))
""".replace("{", "{{").replace("}", "}}")


def _worker(url: str, tmp_path: Path, name: str, runs: Path) -> subprocess.Popen[bytes]:
    argv = cli("worker", "--store", url, "-j", "4", "--heartbeat", "2")
    argv += ["--grace", "0.5", "--store-outage-limit", "60"]
    argv += ["--base-dir", str(tmp_path / name), "--code-change", "ignore"]
    argv += ["--", sys.executable, "-c", SCRIPT, str(runs)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _runs(runs: Path) -> list[tuple[str, int, int]]:
    if not runs.exists():
        return []
    lines = runs.read_text().splitlines()
    return [
        (t, int(a), int(p)) for t, a, p in (line.split() for line in lines if line.count(" ") == 2)
    ]


def _began(runs: Path, count: int) -> bool:
    return len(_runs(runs)) >= count


TERMINATE = (
    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE application_name = $1"
)
"""Terminates the test's own backends (by application name); how many it terminated."""


@pytest.mark.slow
def test_chaos_on_postgres(tmp_path: Path, new_schema: NewSchema) -> None:
    """
    150 trials, 3 workers, a proxy cut twice for 2 s and backends terminated every 0.5 s: every
    worker survives, every trial completes exactly once, no result comes from a stale lease.
    """
    base = postgres_url()
    server = urlsplit(base)
    schema = new_schema()
    application = f"async_consumer_{schema}"
    direct = f"{base}?schema={schema}"
    count = 150

    add_trials(direct, (Trial(id=f"t{i:03d}", params={}) for i in range(count)))
    runs = tmp_path / "runs.txt"
    with running_proxy(server.hostname or "127.0.0.1", server.port or 5432) as proxy:
        netloc = f"{server.username}@127.0.0.1:{proxy.port}"
        url = f"{server._replace(netloc=netloc).geturl()}?schema={schema}&application_name={application}"
        with polling(base, TERMINATE, application, every=0.5) as terminated:
            workers = [_worker(url, tmp_path, f"w{i}", runs) for i in range(3)]
            with reaped(workers):
                for done in (20, 75):  # cut twice, while trials run
                    wait_until_sync(partial(_began, runs, done), f"{done} runs")
                    proxy.cut()
                    time.sleep(2.0)  # the outage itself
                    proxy.restore()
                errors = [w.communicate(timeout=600)[1].decode() for w in workers]
        stored = stored_trials(direct)
    ran = _runs(runs)
    # the figures of the run, for the record (seen with pytest -s)
    print(_summary(stored, ran, errors, sum(terminated)))  # noqa: T201
    for worker, stderr in zip(workers, errors, strict=True):
        assert worker.returncode == 0, stderr
        assert "Traceback" not in stderr
    assert sum("store unreachable" in e for e in errors) >= 1
    for trial, attempt in completed_once(stored, count):
        assert_own_result(trial, attempt, ran)


def _summary(stored: list, ran: list[tuple[str, int, int]], errors: list[str], killed: int) -> str:  # type: ignore[type-arg]
    reasons = Counter(
        str(a.outcome.reason or a.outcome.status) for t in stored for a in t.attempts if a.outcome
    )
    attempts = sum(len(t.attempts) for t in stored)
    outages = sum(e.count("store unreachable") for e in errors)
    backs = sum(e.count("reachable again") for e in errors)
    rejected = sum(e.count("result not recorded") for e in errors)
    return (
        f"chaos: {len(stored)} trials, {attempts} attempts, {len(ran)} runs, "
        f"outcomes {dict(reasons)}, {killed} backends terminated, {outages} outages logged, "
        f"{backs} recoveries logged, {rejected} results rejected"
    )
