"""Interrupts and reruns, as a researcher meets them: through ``run``, ``worker`` and the library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from async_consumer import Consumer
from async_consumer._cli.main import main
from async_consumer._models import Outcome, Reason, Status, TrialStatus
from async_consumer._resume import ResumePolicy
from async_consumer._worker.worker import Worker
from async_consumer.stores import MemoryStore, SQLiteStore

from .conftest import WRITE_RESULT, installed, python, run_here, wait_until

INTERRUPT = "import sys; sys.exit(130)"
# interrupted on its first attempt (a checkpoint-and-exit), completes when resumed
RESUMABLE = (
    "import os, sys\nif os.environ['ASYNC_CONSUMER_ATTEMPT'] == '1': sys.exit(130)\n" + WRITE_RESULT
)
BROKEN_THEN_FIXED = (
    "import os, sys\nif not os.path.exists(sys.argv[1]): undefined_name\n" + WRITE_RESULT
)


async def _attempts(tmp_path: Path) -> dict[str, int]:
    async with SQLiteStore(tmp_path / "store.db") as store:
        return {t.id: len(t.attempts) for t in await store.list()}


@pytest.mark.slow
def test_run_does_not_start_an_interrupted_trial_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script exiting 130 runs once per trial; run exits 1 and says how to resume."""
    argv = ["--grid", "x=1,2", "-j", "2", "--", sys.executable, "-c", INTERRUPT, "{x}"]
    assert run_here(tmp_path, *argv) == 1
    captured = capsys.readouterr()
    assert captured.out.count("interrupted") == 3  # two trial lines and the summary
    assert "2 trials interrupted" in captured.err
    assert "run the same command again to resume them" in captured.err
    assert sorted(anyio.run(_attempts, tmp_path).values()) == [1, 1]


@pytest.mark.slow
def test_running_again_resumes_interrupted_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same command again resumes the interrupted trials as new attempts."""
    argv = ["--grid", "x=1,2", "--", sys.executable, "-c", RESUMABLE, "{x}"]
    assert run_here(tmp_path, *argv) == 1
    capsys.readouterr()
    assert run_here(tmp_path, *argv) == 0
    out = capsys.readouterr().out
    assert out.count(" #2 completed") == 2
    assert sorted(anyio.run(_attempts, tmp_path).values()) == [2, 2]


@pytest.mark.slow
def test_installed_command_interrupt_loop_ends(tmp_path: Path) -> None:
    """The real command on a script that always exits 130: it ends, one attempt per trial."""
    store = f"sqlite:///{tmp_path}/store.db"
    argv = [
        "--grid",
        "x=1,2,3",
        "-j",
        "3",
        "--store",
        store,
        "--base-dir",
        str(tmp_path / "trials"),
    ]
    result = installed("run", *argv, "--", *python(INTERRUPT), "{x}", timeout=120)
    assert result.returncode == 1, result.stderr
    assert "3 trials interrupted" in result.stderr
    assert sorted(anyio.run(_attempts, tmp_path).values()) == [1, 1, 1]


@pytest.mark.slow
def test_rerun_broken_after_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Broken trials stay broken (exit 1, one line naming --rerun) until --rerun broken."""
    fixed = tmp_path / "fixed"
    argv = ["--grid", "x=1,2", "--", sys.executable, "-c", BROKEN_THEN_FIXED, str(fixed)]
    assert run_here(tmp_path, *argv) == 1
    captured = capsys.readouterr()
    assert "--rerun broken" in captured.err
    # each failure's line ends with the script's last word: here, its error
    assert captured.out.count("| NameError: name 'undefined_name' is not defined") == 2
    fixed.touch()
    assert run_here(tmp_path, *argv) == 1  # the parameter set is still broken: not 0
    captured = capsys.readouterr()
    assert "(0 run now)" in captured.out
    assert captured.err.count("--rerun broken") == 1
    assert run_here(tmp_path, "--rerun", "broken", *argv) == 0
    captured = capsys.readouterr()
    assert captured.out.count(" #2 completed") == 2
    assert "running again: 2 trials" in captured.err
    assert sorted(anyio.run(_attempts, tmp_path).values()) == [2, 2]


def test_rerun_names_only_broken_or_interrupted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--rerun completed is bad usage, refused before anything is recorded."""
    argv = ["--rerun", "completed", "--grid", "x=1", "--", sys.executable, "-c", "pass"]
    assert run_here(tmp_path, *argv) == 2
    assert "--rerun 'completed'" in capsys.readouterr().err
    assert not (tmp_path / "store.db").exists()


@pytest.mark.slow
def test_exit_status_covers_the_whole_parameter_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken trial run earlier keeps the exit status 1; trials outside the set do not count."""
    code = "import sys\nif sys.argv[1] == '1': sys.exit(3)\n" + WRITE_RESULT
    assert run_here(tmp_path, "--grid", "x=1,2", "--", sys.executable, "-c", code, "{x}") == 1
    assert run_here(tmp_path, "--grid", "x=1,2", "--", sys.executable, "-c", code, "{x}") == 1
    capsys.readouterr()
    assert run_here(tmp_path, "--grid", "x=2,3", "--", sys.executable, "-c", code, "{x}") == 0
    assert "2 trials: 2 completed (1 run now)" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.asyncio
async def test_worker_leaves_self_interrupted_trials(tmp_path: Path) -> None:
    """A draining worker runs a trial whose script exits 130 once, and stops."""
    from async_consumer import Trial

    store = MemoryStore()
    await store.add([Trial(id="a"), Trial(id="b")])
    consumer = Consumer([sys.executable, "-c", INTERRUPT], base_dir=tmp_path, store=store)
    worker = Worker(store, consumer)
    with anyio.fail_after(60):
        await worker.run()
    assert worker.ran == 2 and worker.interrupted == {"a", "b"}
    assert (await store.counts())[TrialStatus.INTERRUPTED] == 2


@pytest.mark.asyncio
@pytest.mark.slow
async def test_following_worker_resumes_after_the_backoff(tmp_path: Path) -> None:
    """A ``follow`` worker resumes a self-interrupted trial, not before its hold is over."""
    from async_consumer import Trial

    store = MemoryStore()
    await store.add([Trial(id="a")])
    consumer = Consumer([sys.executable, "-c", RESUMABLE], base_dir=tmp_path, store=store)
    done = anyio.Event()
    seen: list[Outcome] = []

    def on_outcome(outcome: Outcome) -> None:
        seen.append(outcome)
        if outcome.is_completed:
            done.set()

    worker = Worker(
        store,
        consumer,
        follow=True,
        poll=0.05,
        on_outcome=on_outcome,
        resume=ResumePolicy(backoff=0.5),
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await done.wait()
            tg.cancel_scope.cancel()
    assert [o.status for o in seen] == [Status.INTERRUPTED, Status.COMPLETED]
    second = (await store.get("a")).attempts[1]
    first_end = seen[0].ended_at
    assert first_end is not None
    assert (second.reserved_at - first_end).total_seconds() >= 0.45


def test_resume_policy_holds_only_self_interrupts() -> None:
    """Backoff doubles per attempt up to the cap; outside interrupts (preemption) are not held."""
    policy = ResumePolicy(backoff=5, max_backoff=60)

    def hold(attempt: int, reason: Reason, status: Status = Status.INTERRUPTED) -> float:
        return policy.hold(Outcome(trial_id="t", attempt=attempt, status=status, reason=reason))

    assert [hold(n, Reason.EXIT_CODE) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 60]
    assert hold(1, Reason.CANCELLED) == 0  # the worker was signalled: resume at once
    assert hold(1, Reason.LEASE_LOST, Status.LOST) == 0
    assert hold(3, Reason.EXIT_CODE, Status.BROKEN) == 0
    with pytest.raises(ValueError, match="backoff"):
        ResumePolicy(backoff=10, max_backoff=1)


async def _wait_for(
    path: Path, status: TrialStatus, count: int, process: subprocess.Popen[str]
) -> None:
    """Poll the store until ``count`` trials have ``status`` (the worker must stay alive)."""

    async def reached() -> bool:
        async with SQLiteStore(path) as store:
            return (await store.counts())[status] >= count

    await wait_until(reached, f"{count} trials {status}", alive=process, every=0.1)


@pytest.mark.slow
def test_a_following_worker_resumes_with_backoff(tmp_path: Path) -> None:
    """`worker --follow`: self-interrupted trials resumed after the backoff, then it waits on."""
    exe = str(Path(sys.executable).with_name("async-consumer"))
    store = f"sqlite:///{tmp_path}/store.db"
    assert main(["add", "--store", store, "--grid", "x=1,2"]) == 0
    worker = subprocess.Popen(
        [
            exe,
            "worker",
            "--follow",
            "--store",
            store,
            "-j",
            "2",
            "--resume-backoff",
            "0.5",
            "--base-dir",
            str(tmp_path / "trials"),
            "--",
            sys.executable,
            "-c",
            RESUMABLE,
            "{x}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        anyio.run(_wait_for, tmp_path / "store.db", TrialStatus.COMPLETED, 2, worker)
    finally:
        worker.terminate()
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 130, err
    assert out.count(" #1 interrupted") == 2 and out.count(" #2 completed") == 2, out
    assert sorted(anyio.run(_attempts, tmp_path).values()) == [2, 2]


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_preempted_trial_is_resumed_by_another_worker_at_once(tmp_path: Path) -> None:
    """A worker signalled mid-trial (a preemption) records it interrupted, held back from no one."""
    from async_consumer import Trial

    started = tmp_path / "started"
    code = f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(60)"
    store = MemoryStore()
    await store.add([Trial(id="long")])
    consumer = Consumer([sys.executable, "-c", code], base_dir=tmp_path, store=store, grace=1)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(Worker(store, consumer).run)
            await wait_until(started.exists, "the script to start")
            consumer.interrupt()  # what the worker does on SIGTERM (Slurm's preemption signal)
    stored = await store.get("long")
    assert stored.status is TrialStatus.INTERRUPTED
    assert stored.outcome is not None and stored.outcome.reason is Reason.CANCELLED
    lease = await store.reserve("another worker")  # holds respected, as a following worker does
    assert lease is not None and lease.trial.attempt == 2
