"""
One attempt, read top to bottom: plan → started → exited → results → outcome.

:func:`run_attempt` fills in an :class:`AttemptRecord` as the attempt proceeds, up to the
script's exit; :func:`finish` reads its results and builds the outcome. The two are apart so
that the caller can give the attempt's place to the next trial in between: its script starts
while this one's results are read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ._models import Outcome, Reason, Status
from ._slots import SlotPool
from ._supervise.beats import Kept
from ._supervise.boxed import BoxedChild, Launch
from ._supervise.contain import BoxUsage
from ._supervise.leftover import end_left_runs, forget_run, note_run
from ._supervise.lines import tail
from ._supervise.process import Exit
from ._supervise.supervisor import Supervisor
from ._trial.classify import Abort, Verdict, classify
from ._trial.codeversion import CodeChangePolicy, CodeVersionWatch
from ._trial.environment import EnvPolicy, contract_environment
from ._trial.paths import ATTEMPTS, trial_paths
from ._trial.plan import Plan
from ._trial.readback import read_results_below
from ._trial.workspace import TrialFiles

__all__ = ["EXIT_FILE", "AttemptParts", "AttemptRecord", "finish", "left_completed", "run_attempt"]

logger = logging.getLogger("async_consumer")

EXIT_FILE = "exit.json"
"""Beside a leased attempt's results: how its script exited (``{"returncode": 0}``), written
when it ends, so that the next holder of the trial can complete it from the results if its
worker could not record them (the store unreachable until it had to leave, or it was killed)."""

MIB = 1 << 20

_NOT_STARTED = Abort(Status.INTERRUPTED, Reason.CANCELLED, "not started: interrupted")


@dataclass(frozen=True, slots=True)
class AttemptParts:
    """What runs an attempt: the consumer's parts and the settings of the trial contract."""

    supervisor: Supervisor
    files: TrialFiles
    slots: SlotPool
    code: CodeVersionWatch
    env: EnvPolicy
    base_dir: Path
    run_in_working_dir: bool
    interrupt_code: int
    max_results_bytes: int
    experiment_id: str | None
    experiment_version: int
    host: str


@dataclass(slots=True)
class AttemptRecord:
    """One attempt, filled in as it proceeds; ``abort`` set if it was stopped (or never began)."""

    plan: Plan
    started_at: datetime
    code_version: str | None = None
    slots: Mapping[str, tuple[str, ...]] | None = None
    """The slots granted (set once granted: the trial contract's variables are made then)."""
    pid: int | None = None
    exit: Exit | None = None
    abort: Abort | None = None
    box: BoxUsage | None = None
    """What the trial's cgroup saw (peak memory, OOM kills, refused forks), once removed."""


async def run_attempt(parts: AttemptParts, plan: Plan) -> AttemptRecord:
    """
    Run one attempt until its script has exited and its process group is gone.

    Raises:
        ValueError: a trial with the same id is already running (a lease stops it instead).
        TrialFilesError: the attempt's files could not be created (nothing started).
    """
    record = AttemptRecord(plan, datetime.now(UTC))
    supervisor, trial = parts.supervisor, plan.trial
    if supervisor.is_halted:
        record.abort = _NOT_STARTED
        return record
    if plan.lease is None:
        supervisor.check_not_running(trial.id)
    else:
        await supervisor.supersede(plan.lease)  # a new lease on a trial still running here
    kept = supervisor.leases.keep(plan.lease)  # renewed from now, not from the spawn
    try:
        if plan.lease is not None and trial.attempt > 1:  # an earlier run left here: ended
            await end_left_runs(
                trial.id,
                plan.paths.text.working_dir,
                trial.attempt,
                parts.host,
                supervisor.settings.grace,
            )
        cwd = plan.paths.working_dir if parts.run_in_working_dir else None
        record.code_version, changed = await parts.code.check(plan.argv, cwd)
        if changed and _code_changed(parts.code, record):
            return record
        async with parts.slots.acquire(trial.slots) as granted:
            record.slots = granted
            child = await _start(parts, record, cwd)
            if child is not None:
                await _supervise(parts, record, child, kept)
    finally:
        supervisor.leases.drop(kept)  # (once supervised, already dropped: nothing to do)
    return record


async def _start(parts: AttemptParts, record: AttemptRecord, cwd: Path | None) -> BoxedChild | None:
    """
    Make the attempt's files and start its script, in one of the places for scripts about to
    start; ``None`` (and the record aborted) if it did not start.
    """
    supervisor, plan = parts.supervisor, record.plan
    async with supervisor.starting():
        if supervisor.is_halted:  # interrupted while this trial waited for its place
            record.abort = _NOT_STARTED
            return None
        logs = await parts.files.prepare(plan)
        try:
            # the whole environment as an argument only: kept in a frame, it would stay for
            # as long as the script runs (7 KiB a trial); the contract's part is made again
            # for the outcome, not kept either (0.5 KiB)
            env = {**parts.env.base(), **_contract(parts, record)}
            return await supervisor.start(Launch(plan.argv, cwd, env, logs))
        except OSError as exc:
            message = f"cannot execute {plan.argv[0]!r}: {exc.strerror or exc}"
            record.abort = Abort(Status.BROKEN, Reason.NOT_EXECUTABLE, message)
            return None


async def _supervise(
    parts: AttemptParts, record: AttemptRecord, child: BoxedChild, kept: Kept | None
) -> None:
    """Watch a started script until it has ended, its run noted meanwhile (if leased)."""
    record.pid = child.pid
    noted = _note(parts, record.plan, child)
    try:
        record.exit, record.abort = await parts.supervisor.supervise(child, record.plan, kept)
    finally:
        if child.exit is not None:  # reaped, its group and box gone (else the note is left)
            forget_run(noted)
    record.box = child.usage


def _note(parts: AttemptParts, plan: Plan, child: BoxedChild) -> str | None:
    """Note a leased attempt's run where its trial's next attempt looks (:mod:`.leftover`)."""
    if plan.lease is None:
        return None
    attempt_dir = os.path.dirname(plan.paths.text.results)
    return note_run(attempt_dir, parts.host, child.pid, child.traces())


def _contract(parts: AttemptParts, record: AttemptRecord) -> dict[str, str]:
    """The trial contract's variables of an attempt granted its slots (none before)."""
    if record.slots is None:
        return {}
    return contract_environment(
        record.plan,
        record.slots,
        parts.interrupt_code,
        parts.experiment_id,
        parts.experiment_version,
    )


def _code_changed(code: CodeVersionWatch, record: AttemptRecord) -> bool:
    """Warn that the code changed; ``True`` (and the record aborted) if that is an error."""
    version = record.code_version
    if code.policy is CodeChangePolicy.ERROR:
        message = f"code changed since the consumer started ({code.initial} -> {version})"
        record.abort = Abort(Status.BROKEN, Reason.CODE_CHANGED, message)
        return True
    extra = {"trial_id": record.plan.trial.id}
    logger.warning(
        "the code changed since the first trial: %s -> %s", code.initial, version, extra=extra
    )
    return False


def finish(parts: AttemptParts, record: AttemptRecord) -> Outcome:
    """Read an ended attempt's results, classify how it ended, and build its outcome (logged)."""
    exit_, abort = record.exit, record.abort
    results = None
    if exit_ is not None and abort is None:
        paths = record.plan.paths
        results = read_results_below(paths, parts.max_results_bytes, parts.base_dir)
    returncode = exit_.returncode if exit_ is not None else None
    verdict = classify(returncode, abort, interrupt_code=parts.interrupt_code, results=results)
    if record.box is not None and verdict.status is not Status.COMPLETED:
        verdict = _box_verdict(parts, record.box, verdict, stopped=abort is not None)
    if abort is None and verdict.status is Status.BROKEN:
        verdict = _disk_full(record.plan.paths.text.working_dir, verdict)
    if record.plan.lease is not None and verdict.status is Status.COMPLETED:
        _write_exit(record.plan, returncode)
    outcome = _outcome(parts, record, verdict)
    _log(outcome)
    return outcome


DISK_FULL_BELOW = 1 << 20
"""Bytes free (to an ordinary user) under which a file system counts as full: a script that
failed there is likely to have failed for want of space (``ENOSPC``)."""

_MAY_FAIL_OF_A_FULL_DISK = (
    Reason.EXIT_CODE,
    Reason.SIGNAL,
    Reason.MISSING_RESULTS,
    Reason.INVALID_RESULTS,
)


def _disk_full(working_dir: str, verdict: Verdict) -> Verdict:
    """
    ``verdict`` of a script that failed, or ``interrupted``/``disk_full`` if its working
    directory's file system is full now: a full disk is its host's fault, not the trial's.
    """
    if verdict.reason not in _MAY_FAIL_OF_A_FULL_DISK:
        return verdict
    try:
        disk = os.statvfs(working_dir)
    except OSError:
        return verdict
    free = disk.f_bavail * disk.f_frsize
    if free >= DISK_FULL_BELOW:
        return verdict
    message = f"failed while its file system was full ({free} bytes free): {verdict.message}"
    return Verdict(
        Status.INTERRUPTED, Reason.DISK_FULL, message, (), verdict.returncode, verdict.signal
    )


def _write_exit(plan: Plan, returncode: int | None) -> None:
    """Leave the script's exit status beside its results (a failure to write costs nothing)."""
    path = os.path.join(os.path.dirname(plan.paths.text.results), EXIT_FILE)
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, json.dumps({"returncode": returncode}).encode())
        finally:
            os.close(fd)


def left_completed(parts: AttemptParts, plan: Plan) -> Outcome | None:
    """
    The outcome of ``plan``'s attempt built from the newest earlier attempt that ended, if that
    one exited 0 with valid results (:data:`EXIT_FILE`), else ``None``.

    That attempt completed, but the store never took its outcome: its worker left, or was
    killed, before the store answered, or the store had given the lease to another meanwhile. The trial is completed from its files, not run again.
    """
    trial = plan.trial
    for number in range(trial.attempt - 1, 0, -1):
        earlier = trial_paths(parts.base_dir, trial.model_copy(update={"attempt": number}), None)
        exit_path = os.path.join(plan.paths.text.working_dir, ATTEMPTS, str(number), EXIT_FILE)
        try:
            with open(exit_path, "rb") as file:
                returncode = json.loads(file.read(256)).get("returncode")
        except (OSError, ValueError, AttributeError):
            continue  # it never ended here (not started, or killed with its worker)
        if returncode != 0:
            return None
        results = read_results_below(earlier, parts.max_results_bytes, parts.base_dir)
        verdict = classify(0, None, interrupt_code=parts.interrupt_code, results=results)
        if verdict.status is not Status.COMPLETED:
            return None
        message = (
            f"completed from attempt {number}'s results, which the store had not taken under "
            "that attempt's lease"
        )
        verdict = Verdict(Status.COMPLETED, None, message, verdict.results, 0)
        record = AttemptRecord(plan, datetime.now(UTC))
        outcome = _outcome(parts, record, verdict)
        _log(outcome)
        return outcome
    return None


def _box_verdict(parts: AttemptParts, box: BoxUsage, verdict: Verdict, *, stopped: bool) -> Verdict:
    """
    The verdict of a failed attempt, told what its cgroup saw: ``out_of_memory`` if it counted
    an OOM kill (and the attempt was not stopped first), forks refused by the process limit.

    Only the cgroup's counter makes an OOM, never a SIGKILL alone (anyone may send one).
    """
    if box.forks_refused:
        message = f"{verdict.message}; {box.forks_refused} forks refused by its process limit"
        verdict = dataclasses.replace(verdict, message=message)
    if stopped or box.oom_kills == 0:
        return verdict
    limit = parts.supervisor.settings.containment.limits.memory
    message = "killed by the kernel for going over its memory limit"
    if limit is not None:
        message += f" of {limit / MIB:.0f} MiB"
    if box.peak_memory_bytes is not None:
        message += f" (peak {box.peak_memory_bytes / MIB:.0f} MiB)"
    return dataclasses.replace(
        verdict, status=Status.BROKEN, reason=Reason.OUT_OF_MEMORY, message=message
    )


def _outcome(parts: AttemptParts, record: AttemptRecord, verdict: Verdict) -> Outcome:
    plan, pid = record.plan, record.pid
    paths = plan.paths.text
    usage = record.exit.usage if record.exit is not None else None
    box = record.box
    started = pid is not None
    return Outcome(
        trial_id=plan.trial.id,
        attempt=plan.trial.attempt,
        status=verdict.status,
        reason=verdict.reason,
        message=verdict.message,
        results=verdict.results,
        returncode=verdict.returncode,
        signal=verdict.signal,
        argv=tuple(plan.argv),
        env=_contract(parts, record),
        slots={k: tuple(v) for k, v in (record.slots or {}).items()},
        code_version=record.code_version,
        host=parts.host,
        pid=pid,
        started_at=record.started_at,
        ended_at=datetime.now(UTC),
        cpu_seconds=usage.cpu_seconds if usage else None,
        peak_rss_bytes=usage.peak_rss_bytes if usage else None,
        peak_memory_bytes=box.peak_memory_bytes if box else None,
        working_dir=paths.working_dir,
        stdout_path=paths.stdout if started else "",
        stderr_path=paths.stderr if started else "",
        stderr_tail=tail(paths.stderr) if started else "",
    )


def _log(outcome: Outcome) -> None:
    # "outcome" marks the record as an outcome's: a program that shows outcomes may skip it
    extra = {"trial_id": outcome.trial_id, "outcome": str(outcome.status)}
    if outcome.is_completed:
        logger.info("completed, objective %s", outcome.objective, extra=extra)
        return
    level = logging.INFO if outcome.status is Status.INTERRUPTED else logging.WARNING
    logger.log(level, "%s (%s): %s", outcome.status, outcome.reason, outcome.message, extra=extra)
