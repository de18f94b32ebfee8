"""
The hostile corpus as one mixed batch: every script gets its documented outcome, nothing leaks.

The batch runs once per module (a fixture); each test then checks one aspect of what it left:
the outcome of every case, the logs, the processes the scripts started, and this process's
descriptors, threads, children and zombies.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from async_consumer import Consumer, Outcome, Reason, Status, Trial

from ..conftest import is_alive
from .procfs import Snapshot, snapshot
from .scripts import CASES, MIB, PIDS_FILE, TIMEOUT, Case

pytestmark = pytest.mark.slow

GRACE = 0.3
CONCURRENCY = 8
IDLE_WORKER_THREADS = 8
"""anyio worker threads that may idle on after the batch: the file-creating limiter's (4) and
the four that start scripts (``SPAWNERS``)."""


@dataclass
class BatchRun:
    """What one run of the whole corpus left behind."""

    outcomes: dict[str, Outcome]
    before: Snapshot
    after: Snapshot
    outside_before: Snapshot
    outside_after: Snapshot
    pids: dict[str, list[int]]
    alive: dict[str, list[int]]
    stdout_sizes: dict[str, int]
    seconds: float

    def of(self, case: Case) -> list[Outcome]:
        """The outcomes of every copy of a case."""
        return [o for tid, o in self.outcomes.items() if tid.rsplit("-", 1)[0] == case.name]


def _trials() -> list[Trial]:
    """Several copies of each case, interleaved so that the kinds of trial overlap in time."""
    most = max(case.copies for case in CASES)
    return [
        Trial(id=f"{case.name}-{copy}", params={"code": case.code}, timeout=case.timeout)
        for copy in range(most)
        for case in CASES
        if copy < case.copies
    ]


def _read_pids(outcome: Outcome) -> list[int]:
    path = Path(outcome.working_dir) / PIDS_FILE
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split()]


async def _run(base: Path) -> tuple[dict[str, Outcome], Snapshot, Snapshot, float]:
    consumer = Consumer(
        [sys.executable, "-c", "{code}"],
        base_dir=base,
        timeout=60,  # only the cases meant to time out have a short timeout of their own
        grace=GRACE,
        max_concurrency=CONCURRENCY,
        run_in_working_dir=True,
        code_change="ignore",
    )
    before = snapshot()
    start = time.monotonic()
    outcomes = {}
    with anyio.fail_after(120):
        async with consumer.run_batch(_trials()) as batch:
            async for outcome in batch:
                outcomes[outcome.trial_id] = outcome
    seconds = time.monotonic() - start
    return outcomes, before, snapshot(), seconds


def _settle_threads(before: frozenset[int]) -> Snapshot:
    """
    A snapshot once the threads started since ``before`` are gone (stopped worker threads exit
    just after the loop closes): a Python thread leaves ``threading.enumerate()`` a moment before
    its OS thread ends, a long moment on a busy machine.
    """
    deadline = time.monotonic() + 10  # only a failure waits this long; a busy machine may be slow
    while (found := snapshot()).threads - before and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for threads to finish exiting
    return found


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchRun]:
    """Run the whole corpus once; kill what escaped; drop the big files once measured."""
    base = tmp_path_factory.mktemp("hostile")
    outside_before = snapshot()
    outcomes, before, after, seconds = anyio.run(_run, base)
    outside_after = _settle_threads(outside_before.threads)
    pids = {tid: _read_pids(outcome) for tid, outcome in outcomes.items()}
    alive = {tid: [pid for pid in found if is_alive(pid)] for tid, found in pids.items()}
    stdout_sizes = {
        tid: os.path.getsize(o.stdout_path)
        for tid, o in outcomes.items()
        if os.path.exists(o.stdout_path)
    }
    try:
        yield BatchRun(
            outcomes,
            before,
            after,
            outside_before,
            outside_after,
            pids,
            alive,
            stdout_sizes,
            seconds,
        )
    finally:
        for pid in (pid for found in alive.values() for pid in found):
            os.kill(pid, signal.SIGKILL)
        for outcome in outcomes.values():
            big = ("stdout-100mb", "results-50mb")
            if outcome.trial_id.startswith(big) and os.path.isdir(outcome.working_dir):
                for name in ("stdout.log", "results.json"):
                    Path(outcome.working_dir, name).unlink(missing_ok=True)


def test_batch_is_large_and_mixed(batch: BatchRun) -> None:
    """The batch holds at least 100 trials, every case several times, and ends in bounded time."""
    assert len(batch.outcomes) == sum(case.copies for case in CASES) >= 100
    assert all(case.copies >= 3 for case in CASES)
    # about 9 s here; a script left running would hold the batch for its 60 s sleep
    assert batch.seconds < 60


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_outcome_is_the_documented_one(batch: BatchRun, case: Case) -> None:
    """Every copy of a hostile script gets the status, reason, signal and message documented."""
    outcomes = batch.of(case)
    assert len(outcomes) == case.copies
    for outcome in outcomes:
        assert (outcome.status, outcome.reason) == (case.status, case.reason), outcome.message
        assert outcome.signal == case.signal
        if case.returncode is not None:
            assert outcome.returncode == case.returncode
        assert case.message in outcome.message
        assert outcome.argv[-1] == case.code
        if case.status is not Status.COMPLETED:
            assert outcome.results == ()


def test_timeouts_end_within_timeout_and_grace(batch: BatchRun) -> None:
    """A script stopped for its timeout is gone within timeout + grace + a reap, not later."""
    timed_out = [o for o in batch.outcomes.values() if o.reason is Reason.TIMEOUT]
    assert len(timed_out) == sum(c.copies for c in CASES if c.timeout is not None)
    for outcome in timed_out:
        assert outcome.duration is not None
        assert outcome.duration >= TIMEOUT
        # TIMEOUT + GRACE + a reap is what an idle machine takes (1.3 to 1.4 s); the generous
        # bound only proves the stop came, since none of these scripts ever ends by itself
        assert outcome.duration < TIMEOUT + GRACE + 20


def test_stdout_flood_is_logged_in_full(batch: BatchRun) -> None:
    """100 MB written to stdout all lands in stdout.log, and the trial completes."""
    flooded = [tid for tid in batch.outcomes if tid.startswith("stdout-100mb")]
    assert flooded
    assert all(batch.stdout_sizes[tid] == 100 * MIB for tid in flooded)


def test_closed_stdout_keeps_what_was_written(batch: BatchRun) -> None:
    """A script that closes stdin, stdout and stderr still completes, its log intact."""
    checked = [o for tid, o in batch.outcomes.items() if tid.startswith("closes-stdout")]
    assert checked
    for outcome in checked:
        assert Path(outcome.stdout_path).read_text() == "before closing\n"


def test_group_members_are_all_killed(batch: BatchRun) -> None:
    """Children that ignore SIGTERM, left running or orphaned, are all gone after the outcome."""
    in_group = ("grandchildren-ignore-sigterm", "orphans-ignore-sigterm")
    checked = [tid for tid in batch.outcomes if tid.startswith(in_group)]
    assert len(checked) == 10
    for tid in checked:
        assert len(batch.pids[tid]) == 10
        assert batch.alive[tid] == []


def test_a_new_session_or_group_ends_with_its_trial(batch: BatchRun) -> None:
    """
    A process that leaves the trial's group (setsid, setpgid) ends with the trial all the same.

    ``killpg`` does not reach it; the trial's cgroup (or, without one, the trial's mark on it
    and the consumer as its subreaper) does.
    """
    escaping = [c for c in CASES if c.escapes]
    assert {c.name for c in escaping} == {"setsid-daemon", "setpgid-child"}
    for case in escaping:
        for outcome in batch.of(case):
            assert len(batch.pids[outcome.trial_id]) == 1
            assert batch.alive[outcome.trial_id] == []


def test_exhausted_descriptors_are_the_scripts_own(batch: BatchRun) -> None:
    """A script that runs out of descriptors hit EMFILE itself; its results still count."""
    checked = batch.of(next(c for c in CASES if c.name == "exhausts-fds"))
    assert checked
    for outcome in checked:
        assert "EMFILE after opening" in outcome.stderr_tail
        assert outcome.objective == 1.0


def test_symlinked_results_are_never_read(batch: BatchRun) -> None:
    """A results symlink to /etc/passwd is refused without a byte of the target in the outcome."""
    checked = [o for tid, o in batch.outcomes.items() if tid.startswith("results-symlink")]
    assert checked
    for outcome in checked:
        assert "root:" not in outcome.message
        assert outcome.results == ()


def test_removed_working_dir_stays_removed(batch: BatchRun) -> None:
    """A script that deletes its own working directory is missing_results; nothing recreates it."""
    checked = [o for tid, o in batch.outcomes.items() if tid.startswith("removes-working-dir")]
    assert checked
    for outcome in checked:
        assert not os.path.exists(outcome.working_dir)
        assert outcome.stderr_tail == ""


def test_no_descriptor_leaked(batch: BatchRun) -> None:
    """The consumer holds as many descriptors after the batch as before it, in and out of the loop."""
    assert batch.after.fds == batch.before.fds
    assert batch.outside_after.fds == batch.outside_before.fds


def test_no_thread_leaked(batch: BatchRun) -> None:
    """
    At most the file-creating worker threads idle on in the loop; none outlive the loop.

    Threads are told apart by id: one that an earlier test left idling (trio keeps its worker
    threads for a while) may exit during the batch, and is none of the batch's.
    """
    assert len(batch.after.threads - batch.before.threads) <= IDLE_WORKER_THREADS
    assert batch.outside_after.threads - batch.outside_before.threads == frozenset()


def test_no_child_and_no_zombie_left(batch: BatchRun) -> None:
    """No child of the consumer is alive after the batch and none is left unreaped."""
    assert batch.after.children == ()
    assert batch.after.zombies == ()
    assert batch.outside_after.children == ()
    assert batch.outside_after.zombies == ()
