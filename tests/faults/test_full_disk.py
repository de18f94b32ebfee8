"""
A full disk is the worker's fault: trials that fail for want of space are interrupted
(``disk_full``) and run again once there is space; a worker that gives up on its disk lets
its healthy running trials finish.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from async_consumer import Consumer, Reason, Status, Trial, TrialStatus
from async_consumer._errors import TrialFilesError
from async_consumer._worker.worker import Worker
from async_consumer.stores import SQLiteStore

from ..conftest import python, wait_until
from .conftest import full_tmpfs, worker_consumer

# "long" waits for the test's go, then writes its small result; the others write 1 MiB first
SCRIPT = """
import json, os, pathlib, sys
marks = pathlib.Path(sys.argv[1])
if os.environ['ASYNC_CONSUMER_TRIAL_ID'] == 'long':
    (marks / 'long-started').touch()
    while not (marks / 'go').exists():
        pass
else:
    path = os.path.join(os.environ['ORION_WORKING_DIR'], 'data.bin')
    try:
        with open(path, 'wb') as data:
            data.write(b'x' * (1 << 20))
    except OSError:
        os.remove(path)  # what it could write is given back, then it fails
        raise
json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
"""
FREE = 256 * 1024  # bytes left free: room for trials' files, not for a trial's data


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs with 256 KiB left free."""
    with full_tmpfs(tmp_path / "disk", "4m", free=FREE) as mount:
        yield mount


def _consumer(store: SQLiteStore, disk: Path, marks: Path) -> Consumer:
    command = [*python(SCRIPT), str(marks)]
    return worker_consumer(command, disk / "trials", store, heartbeat=0.5, max_concurrency=2)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_full_disk_charges_no_trial_and_cancels_none(
    tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Trials that fail writing to a full disk are ``disk_full``, not broken; the worker gives up
    after two such faults, but lets its healthy running trial complete; once space returns,
    another worker runs the others, and every attempt number is one that ran.
    """
    monkeypatch.setattr(Worker, "file_fault_backoff", 0.01)
    marks = tmp_path / "marks"
    marks.mkdir()
    async with SQLiteStore(tmp_path / "store.db") as store:
        await store.add([Trial(id="long"), *(Trial(id=f"big{i}") for i in range(3))])
        worker = Worker(store, _consumer(store, small_disk, marks), poll=0.05, max_file_faults=2)
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    with pytest.raises(TrialFilesError, match="No space left"):
                        await worker.run()

                tg.start_soon(run)
                await wait_until((marks / "long-started").exists, "the long trial to start")
                await wait_until(
                    lambda: worker.is_halted, "the worker to halt"
                )  # it gave up on its disk...
                assert worker.running_trial("long") is not None  # ...and "long" still runs
                (marks / "go").touch()
        stored = {t.id: t for t in await store.list()}
        assert stored["long"].status is TrialStatus.COMPLETED
        assert len(stored["long"].attempts) == 1
        full = [a.outcome for t in stored.values() for a in t.attempts if a.outcome]
        assert {(o.status, o.reason) for o in full if not o.is_completed} == {
            (Status.INTERRUPTED, Reason.DISK_FULL)
        }
        assert all(t.lost_count == 0 for t in stored.values())
        (small_disk / "filler").unlink()  # space returns
        again = Worker(store, _consumer(store, small_disk, marks), poll=0.05)
        with anyio.fail_after(60):
            await again.run()
        for trial in await store.list():
            assert trial.status is TrialStatus.COMPLETED, trial.id
            numbers = [a.number for a in trial.attempts]
            assert numbers == list(range(1, len(numbers) + 1))
            assert all(a.outcome is not None and a.outcome.pid for a in trial.attempts)
