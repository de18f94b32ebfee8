"""A worker meets ordinary faults: an unreachable store, its own trial re-leased, a full disk."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest

from async_consumer import Reason, Status, Trial, TrialStatus
from async_consumer._cli.main import main
from async_consumer._worker.worker import Worker

from ..conftest import NewSchema, cli, postgres_url, python, wait_until, wait_until_sync
from .conftest import OpenStore, full_tmpfs, worker_consumer
from .proxy import running_proxy
from .sync_store import add_trials, stored_trials

WORKER = ["--code-change", "ignore", "--grace", "0.5"]


@pytest.mark.slow
def test_an_unreachable_store_ends_the_worker_after_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening where the store should be: tried up to the limit, then one line."""
    pytest.importorskip("asyncpg")
    url = "postgresql://postgres@127.0.0.1:9/test"  # the discard port: connection refused
    argv = ["worker", "--store", url, "--store-outage-limit", "0.5", *WORKER, "--", "true"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert "the store was never reached (tried for 0.5 s)" in err


def test_a_store_error_no_retry_mends_ends_the_worker_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A database that does not exist is not an outage: one clear line, no retrying."""
    parts = urlsplit(postgres_url())
    url = parts._replace(path=f"/no_such_database_{uuid.uuid4().hex[:8]}").geturl()
    assert main(["worker", "--store", url, *WORKER, "--", "true"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot connect to the PostgreSQL store: InvalidCatalogName")
    assert err.count("\n") == 1 and "unreachable" not in err


@pytest.mark.slow
def test_an_outage_shorter_than_the_lease_loses_nothing(
    tmp_path: Path, new_schema: NewSchema
) -> None:
    """The store cut for 2 s while a 3 s trial runs: it completes once, and the worker lives."""
    base = postgres_url()
    server = urlsplit(base)
    schema = new_schema()
    started = tmp_path / "started"
    script = (
        f"import json, os, pathlib, time; pathlib.Path({str(started)!r}).touch(); "
        "time.sleep(3); json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
    )

    add_trials(f"{base}?schema={schema}", [Trial(id="long")])
    with running_proxy(server.hostname or "127.0.0.1", server.port or 5432) as proxy:
        url = server._replace(netloc=f"{server.username}@127.0.0.1:{proxy.port}").geturl()
        argv = cli("worker", "--store", f"{url}?schema={schema}")
        argv += ["--heartbeat", "1.5", "--base-dir", str(tmp_path / "trials"), *WORKER]
        argv += ["--", sys.executable, "-c", script]
        worker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until_sync(started.exists, "the trial to start", alive=worker)
        proxy.cut()
        time.sleep(2.0)  # the outage itself
        proxy.restore()
        _, err = worker.communicate(timeout=60)
    (stored,) = stored_trials(f"{base}?schema={schema}")
    assert worker.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert stored.status is TrialStatus.COMPLETED
    assert len(stored.attempts) == 1


_FIRST_RUN_WAITS = """
import json, os, pathlib, time
first = pathlib.Path({first!r})
if os.environ['ASYNC_CONSUMER_ATTEMPT'] == '1':
    first.with_suffix('.tmp').write_text(str(os.getpid()))
    first.with_suffix('.tmp').rename(first)  # whole, or not there
    time.sleep(60)
pid = int(first.read_text())
stat = '/proc/%d/stat' % pid
alone = not os.path.exists(stat) or open(stat).read().rsplit(')', 1)[1].split()[0] == 'Z'
json.dump(1.0 if alone else 0.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
"""


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_trial_reclaimed_while_it_runs(tmp_path: Path, connect: OpenStore) -> None:
    """
    The worker's own running trial is reclaimed (its lease given to the queue): the worker does
    not crash, never runs the trial twice at once, and the trial completes.
    """
    first = tmp_path / "first.pid"
    store, other = await connect(), await connect()
    await store.add([Trial(id="a")])
    code = python(_FIRST_RUN_WAITS.format(first=str(first)))
    consumer = worker_consumer(code, tmp_path / "trials", store, 0.3, max_concurrency=2)
    worker = Worker(store, consumer, poll=0.05, lost_after=1000)  # only the test reclaims
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await wait_until(first.exists, "the first attempt to start")
            assert await other.reclaim_stale(0.0) == ["a"]
    stored = await other.get("a")
    assert stored.status is TrialStatus.COMPLETED
    old, new = stored.attempts
    assert old.outcome is not None and old.outcome.reason is Reason.LEASE_LOST
    assert new.outcome is not None and new.outcome.objective == 1.0  # the old run was gone
    assert worker.rejected == 1


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_new_lease_on_a_running_trial_stops_the_old_run(tmp_path: Path) -> None:
    """
    A consumer handed a new lease on a trial it still runs (the old lease is gone) stops the old
    run as lost first, then runs the new one alone: no ``ValueError``, one run at a time.
    """
    from async_consumer import Lease
    from async_consumer.stores import MemoryStore

    first = tmp_path / "first.pid"
    store = MemoryStore()
    await store.add([Trial(id="a")])
    old = await store.reserve("w")
    assert old is not None
    await store.reclaim_stale(0.0)
    new = await store.reserve("w")
    assert isinstance(new, Lease)
    code = python(_FIRST_RUN_WAITS.format(first=str(first)))
    consumer = worker_consumer(code, tmp_path / "trials", store, heartbeat=30)
    outcomes = {}

    async def run(lease: Lease) -> None:
        outcomes[lease.token] = await consumer.run(lease)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, old)
            await wait_until(first.exists, "the first attempt to start")
            await run(new)
    assert outcomes[old.token].reason is Reason.LEASE_LOST
    assert "leased the trial again" in outcomes[old.token].message
    assert outcomes[new.token].objective == 1.0  # the old run's processes were gone


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs, already full."""
    with full_tmpfs(tmp_path / "disk", "64k") as mount:
        yield mount


@pytest.mark.slow
def test_a_full_disk_is_the_hosts_fault_not_the_trials(
    tmp_path: Path,
    full_disk: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    ENOSPC creating trials' files: each trial goes back to the queue without a loss, the worker
    backs off, then exits 1 with one line naming the directory; no trial is lease_lost.
    """
    monkeypatch.setattr(Worker, "file_fault_backoff", 0.05)
    url = f"sqlite:///{tmp_path}/store.db"
    assert main(["add", "--store", url, "--grid", "x=1,2,3"]) == 0
    argv = [
        "worker",
        "--store",
        url,
        "-j",
        "2",
        "--base-dir",
        str(full_disk / "trials"),
        *WORKER,
        "--",
        sys.executable,
        "-c",
        "pass",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot create trial files in {full_disk / 'trials'}")
    assert last.endswith("No space left on device") and "Traceback" not in err
    stored = stored_trials(url)
    assert {t.status for t in stored} <= {TrialStatus.NEW, TrialStatus.INTERRUPTED}
    assert all(t.lost_count == 0 for t in stored)
    reasons = {a.outcome.reason for t in stored for a in t.attempts if a.outcome}
    # the trials given back never started and kept their attempt numbers; one the other lane
    # had started when the worker gave up ran to its end: on the full disk its results could
    # not be written, which is the host's fault (disk_full)
    assert reasons <= {Reason.DISK_FULL}
    assert all(a.outcome is not None and a.outcome.pid for t in stored for a in t.attempts)
    assert Status.LOST not in {a.outcome.status for t in stored for a in t.attempts if a.outcome}
