"""
One attempt, read top to bottom: plan → started → exited → results → outcome.

:func:`run_attempt` fills in an :class:`AttemptRecord` as the attempt proceeds, up to the
script's exit; :func:`finish` reads its results and builds the outcome. The two are apart so
that the caller can give the attempt's place to the next trial in between: its script starts
while this one's results are read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ._models import Outcome, Reason, Status
from ._slots import SlotPool
from ._supervise.boxed import BoxedChild
from ._supervise.contain import BoxUsage
from ._supervise.lines import tail
from ._supervise.process import Exit
from ._supervise.supervisor import Supervisor
from ._trial.classify import Abort, Verdict, classify
from ._trial.codeversion import CodeChangePolicy, CodeVersionWatch
from ._trial.environment import EnvPolicy, contract_environment
from ._trial.plan import Plan
from ._trial.readback import read_results_below
from ._trial.workspace import TrialFiles

__all__ = ["AttemptParts", "AttemptRecord", "finish", "run_attempt"]

logger = logging.getLogger("async_consumer")

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
    cwd = plan.paths.working_dir if parts.run_in_working_dir else None
    record.code_version, changed = await parts.code.check(plan.argv, cwd)
    if changed and _code_changed(parts.code, record):
        return record
    async with parts.slots.acquire(trial.slots) as granted:
        record.slots = granted
        child = await _start(parts, record, cwd)
        if child is not None:
            record.pid = child.pid
            record.exit, record.abort = await supervisor.supervise(child, plan)
            record.box = child.usage
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
            return await supervisor.start(plan.argv, cwd, env, logs)
        except OSError as exc:
            message = f"cannot execute {plan.argv[0]!r}: {exc.strerror or exc}"
            record.abort = Abort(Status.BROKEN, Reason.NOT_EXECUTABLE, message)
            return None


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
    outcome = _outcome(parts, record, verdict)
    _log(outcome)
    return outcome


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
