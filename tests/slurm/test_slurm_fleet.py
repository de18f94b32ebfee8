"""A fleet of workers launched by Slurm, on a real one-node cluster: drained, preempted, warned."""

from __future__ import annotations

import shlex
import subprocess
from collections import defaultdict
from typing import Any

import pytest

from async_consumer import Reason, Status, TrialStatus

from ..conftest import cli
from .conftest import Event, Fleet, processes_mentioning, squeue, status

pytestmark = pytest.mark.slow


def _launch(fleet: Fleet, workers: int, *options: str, command: list[str]) -> str:
    """Submit an array of ``workers`` workers of two lanes each, beating every second."""
    argv = cli("launch", "slurm", "--store", fleet.url, "--workers", str(workers))
    argv += ["-j", "2", "--heartbeat", "1", *options, "--", *command]
    done = subprocess.run(argv, cwd=fleet.workdir, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    assert job.isdigit(), done.stdout
    fleet.jobs.append(job)
    return job


def _running_in(fleet: Fleet, task: str, count: int) -> bool:
    """Whether ``count`` trials have started in the array task and none of them has ended."""
    started: set[str] = set()
    for event in fleet.events():
        if event.task == task:
            (started.add if event.kind == "start" else started.discard)(event.trial)
    return len(started) >= count


def _never_at_once(events: list[Event]) -> None:
    """No trial ran in two processes at the same time: each attempt ends before the next starts."""
    by_trial: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_trial[event.trial].append(event)
    for trial, own in by_trial.items():
        own.sort(key=lambda e: (e.attempt, e.kind != "start"))
        kinds = [e.kind for e in own]
        assert kinds[0::2] == ["start"] * (len(own) // 2), (trial, kinds)
        for first, second in zip(own[1::2], own[2::2], strict=False):
            assert first.at <= second.at, (trial, first, second)


def _signal_mid_run(fleet: Fleet, signal_argv: list[str]) -> tuple[str, int]:
    """Launch 3 workers on 12 long trials; signal task 2 once both its trials run; wait."""
    fleet.add(12)
    options = ["--time", "10", "--grace", "10"]
    job = _launch(fleet, 3, *options, command=fleet.train(steps=12, pause=0.25))
    fleet.wait_for(lambda: _running_in(fleet, "2", 2), "task 2 to run two trials")
    before = len([e for e in fleet.events() if e.task == "2" and e.kind == "start"])
    subprocess.run([*signal_argv, f"{job}_2"], check=True)
    fleet.wait_done()
    return job, before


def _check_preempted(fleet: Fleet, job: str, started_before: int) -> None:
    """The signalled worker's trials checkpointed and ended completed elsewhere; nothing lost."""
    trials = fleet.trials()
    assert [t.status for t in trials] == [TrialStatus.COMPLETED] * 12
    events = fleet.events()
    own = [e for e in events if e.task == "2" and e.kind == "start"]
    assert len(own) == started_before == 2  # no trial started on task 2 after the signal
    interrupted = {e.trial: e for e in events if e.kind == "interrupted"}
    assert set(interrupted) == {e.trial for e in own}
    for trial in trials:
        attempts = trial.attempts
        if trial.id not in interrupted:
            assert len(attempts) == 1
            continue
        first, last = attempts[0], attempts[-1]
        assert first.worker == f"slurm:{job}_2"
        assert first.outcome is not None and first.outcome.status is Status.INTERRUPTED
        assert first.outcome.reason is Reason.PREEMPTED
        assert last.worker != first.worker and len(attempts) == 2
        resumed = [
            e for e in events if e.trial == trial.id and e.attempt == 2 and e.kind == "start"
        ]
        assert resumed[0].step == interrupted[trial.id].step > 0  # from the checkpoint
    _never_at_once(events)
    assert processes_mentioning(str(fleet.runs)) == []
    output = fleet.output(job, 2)
    assert "Traceback" not in output
    assert "stopping 2 running trial(s) for other workers to resume" in output


def test_three_workers_drain_sixty_trials(fleet: Fleet) -> None:
    """A 3-worker array drains 60 trials, each completed once; status lists the three workers."""
    fleet.add(60)
    # the runs wait until the test has seen the three workers: a worker that Slurm starts late
    # under load still finds trials to run, so all three are running at once
    fleet.hold.touch()
    job = _launch(fleet, 3, command=fleet.train(steps=3, pause=0.1))
    seen: dict[str, dict[str, Any]] = {}

    def three_listed() -> bool:
        workers = status(fleet.url)["workers"]
        seen.clear()
        seen.update((w["name"], w) for w in workers if w["state"] == "running")
        return len(seen) == 3

    fleet.wait_for(three_listed, "status to list three running workers")
    fleet.hold.unlink()
    assert {(w["job_id"], w["task_id"], w["host"] != "") for w in seen.values()} == {
        (job, "1", True),
        (job, "2", True),
        (job, "3", True),
    }
    fleet.wait_done()
    trials = fleet.trials()
    assert [t.status for t in trials] == [TrialStatus.COMPLETED] * 60
    assert all(len(t.attempts) == 1 for t in trials)
    ends = [e.trial for e in fleet.events() if e.kind == "end"]
    assert sorted(ends) == sorted(t.id for t in trials)  # each ran to its end exactly once
    assert {t.attempts[0].worker for t in trials} <= {f"slurm:{job}_{i}" for i in (1, 2, 3)}
    assert all(w["state"] == "exited" for w in status(fleet.url)["workers"])


def test_sigterm_to_one_task_loses_nothing(fleet: Fleet) -> None:
    """scancel --signal=TERM of one array task: its trials checkpoint and complete elsewhere."""
    job, before = _signal_mid_run(fleet, ["scancel", "--signal=TERM", "--full"])
    _check_preempted(fleet, job, before)


def test_early_warning_starts_nothing_more(fleet: Fleet) -> None:
    """SIGUSR1 (the --signal-before warning) to one worker: it starts nothing more, trials move."""
    job, before = _signal_mid_run(fleet, ["scancel", "--signal=USR1", "--batch"])
    _check_preempted(fleet, job, before)
    assert "USR1" in fleet.output(job, 2)


def test_dry_run_script_submitted_by_hand(fleet: Fleet) -> None:
    """The script --dry-run prints is a valid batch script: submitted with sbatch, it drains."""
    fleet.add(6)
    argv = cli("launch", "slurm", "--store", fleet.url, "--workers", "2")
    argv += ["--time", "5", "--signal-before", "30", "--dry-run"]
    argv += ["--", *fleet.train(steps=1, pause=0.05)]
    done = subprocess.run(argv, cwd=fleet.workdir, capture_output=True, text=True, check=True)
    script = fleet.workdir / "fleet.sbatch"
    script.write_text(done.stdout)
    assert "#SBATCH --signal=B:USR1@30" in done.stdout
    assert not list(fleet.workdir.glob("slurm-*"))  # nothing was submitted
    fleet.submit(script)
    fleet.wait_done()
    assert [t.status for t in fleet.trials()] == [TrialStatus.COMPLETED] * 6


def test_no_trial_starts_too_near_the_end_of_the_job(fleet: Fleet) -> None:
    """With --trial-time longer than the job has left, a worker starts nothing and leaves."""
    fleet.add(2)
    worker = cli("worker", "--store", fleet.url, "--trial-time", "600")
    worker += ["--", *fleet.train(1, 0.01)]
    script = fleet.workdir / "late.sbatch"
    script.write_text(f"#!/bin/bash\n#SBATCH --time=2\nexec {shlex.join(worker)}\n")
    job = fleet.submit(script)
    fleet.wait_done()
    assert [t.status for t in fleet.trials()] == [TrialStatus.NEW] * 2
    assert fleet.events() == []
    output = (fleet.workdir / f"slurm-{job}.out").read_text()
    assert "too late to start another trial before the job ends" in output
    state = subprocess.run(
        ["scontrol", "show", "job", job], capture_output=True, text=True, check=True
    )
    assert "JobState=COMPLETED" in state.stdout  # it left, rather than idling to its limit


def test_a_requeued_worker_resumes_its_own_trials(fleet: Fleet) -> None:
    """scontrol requeue of a lone worker: its trials checkpoint; the requeued task resumes them."""
    fleet.add(3)
    options = ["--sbatch-arg=--requeue", "--sbatch-arg=--open-mode=append"]
    job = _launch(fleet, 1, *options, command=fleet.train(steps=12, pause=0.25))
    fleet.wait_for(lambda: _running_in(fleet, "1", 2), "the worker to run two trials")
    subprocess.run(["scontrol", "requeue", f"{job}_1"], check=True)
    fleet.wait_for(lambda: "BeginTime" in squeue(job) or _started(fleet) > 2, "the requeue")
    # Slurm holds a requeued job back for a while; a test need not wait for that
    subprocess.run(["scontrol", "update", f"JobId={job}_1", "StartTime=now"], check=False)
    fleet.wait_done()
    trials = fleet.trials()
    assert [t.status for t in trials] == [TrialStatus.COMPLETED] * 3
    events = fleet.events()
    interrupted = {e.trial: e.step for e in events if e.kind == "interrupted"}
    assert len(interrupted) == 2
    for trial in trials:
        if trial.id in interrupted:
            assert [a.worker for a in trial.attempts] == [f"slurm:{job}_1"] * 2
            assert trial.attempts[0].outcome.reason is Reason.PREEMPTED  # type: ignore[union-attr]
            resumed = [e for e in events if e.trial == trial.id and e.attempt == 2]
            assert resumed[0].step == interrupted[trial.id] > 0
    _never_at_once(events)
    (worker,) = status(fleet.url)["workers"]
    assert worker["name"] == f"slurm:{job}_1" and worker["state"] == "exited"
    output = fleet.output(job, 1)
    assert output.count("reserving nothing more") == 1 and "3 completed" in output


def _started(fleet: Fleet) -> int:
    return sum(e.kind == "start" for e in fleet.events())


def test_early_warning_from_the_time_limit(fleet: Fleet) -> None:
    """--signal-before: Slurm's own SIGUSR1 before the limit stops the worker; nothing is lost."""
    fleet.add(4)
    # 100 s a trial in Slurm: longer than the job; fast for the test's own worker afterwards
    command = fleet.train(steps=400, pause=0.25, local_pause=0.001)
    job = _launch(fleet, 1, "--time", "1", "--signal-before", "20", command=command)
    # due 40 s after the start; Slurm looks at its timers every 30 s and sends a warning due
    # before the next look, so it comes 10 to 40 s after the start, once the worker runs (if
    # it came while the worker started, the worker would leave before reserving anything)
    fleet.wait_done()
    output = fleet.output(job, 1)
    assert "SIGUSR1: reserving nothing more" in output
    assert "SIGTERM" not in output  # it left before the time limit
    trials = fleet.trials()
    left = [t for t in trials if t.status is TrialStatus.INTERRUPTED]
    assert (
        len(left) <= 2
    )  # no trial started after the warning: two lanes, trials longer than the job
    assert len(left) + [t.status for t in trials].count(TrialStatus.NEW) == 4
    assert all(t.outcome is not None and t.outcome.reason is Reason.PREEMPTED for t in left)
    worker = cli("worker", "--store", fleet.url, "-j", "2")
    worker += ["--", *command]
    subprocess.run(worker, cwd=fleet.workdir, capture_output=True, check=True)
    assert [t.status for t in fleet.trials()] == [TrialStatus.COMPLETED] * 4
    events = fleet.events()
    checkpoints = {e.trial: e.step for e in events if e.kind == "interrupted"}
    for trial, step in checkpoints.items():
        resumed = [e for e in events if e.trial == trial and e.attempt == 2 and e.kind == "start"]
        assert resumed[0].step == step  # from its checkpoint
    _never_at_once(events)
