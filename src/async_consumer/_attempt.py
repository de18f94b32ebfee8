"""The pieces of one attempt: its plan, its running state, its files, its outcome."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import anyio

from ._errors import MissingResults, ResultsError
from ._models import Lease, Outcome, Reason, Result, Status, Trial
from ._slots import slot_environment
from ._supervise.process import ChildProcess, Exit, open_log
from ._trial.classify import Abort, Verdict
from ._trial.command import TrialPaths
from ._trial.environment import contract_variables
from ._trial.files import prepare_files, tail
from ._trial.results import read_results

__all__ = [
    "Plan",
    "Running",
    "abort_as",
    "build_outcome",
    "contract_environment",
    "prepare_sync",
    "read_results_of",
]

logger = logging.getLogger("async_consumer")


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything decided about an attempt before anything starts."""

    trial: Trial
    lease: Lease | None
    paths: TrialPaths
    argv: list[str]
    params_json: bytes
    config_bytes: bytes | None


@dataclass(slots=True)
class Running:
    """A trial whose script is running, so that it can be stopped from outside."""

    child: ChildProcess
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    abort: Abort | None = None
    done: anyio.Event | None = None
    """Set when the trial has ended; made only when someone waits for it (few do)."""

    def abort_with(self, abort: Abort) -> None:
        """Stop the script (the first reason given is the one kept)."""
        if self.abort is None:
            self.abort = abort
        self.scope.cancel()


def abort_as(running: Running, status: Status, reason: Reason, message: str) -> None:
    """Stop a running trial with this status and reason (a callback for its watchers)."""
    running.abort_with(Abort(status, reason, message))


def contract_environment(
    plan: Plan,
    granted: Mapping[str, Sequence[str]],
    interrupt_code: int,
    experiment_id: str | None,
    experiment_version: int,
) -> dict[str, str]:
    """The variables the trial contract promises the script, its slots included."""
    trial, paths = plan.trial, plan.paths
    values = {
        "TRIAL_ID": trial.id,
        "ATTEMPT": str(trial.attempt),
        "WORKING_DIR": str(paths.working_dir),
        "RESULTS_PATH": str(paths.results),
        "PARAMS_PATH": str(paths.params),
        "METRICS_PATH": str(paths.metrics),
        "INTERRUPT_CODE": str(interrupt_code),
        "EXPERIMENT_NAME": trial.experiment,
        "EXPERIMENT_ID": experiment_id or trial.experiment,
        "EXPERIMENT_VERSION": str(experiment_version),
    }
    if paths.config is not None:
        values["CONFIG_PATH"] = str(paths.config)
    return {**contract_variables(values), **slot_environment(granted)}


def prepare_sync(plan: Plan, made: set[Path]) -> tuple[BinaryIO, BinaryIO]:
    """Create the attempt's files and return its two logs, open for the child."""
    prepare_files(plan.paths, plan.params_json, plan.config_bytes, made)
    stdout = open_log(plan.paths.stdout)
    try:
        return stdout, open_log(plan.paths.stderr)
    except BaseException:
        stdout.close()
        raise


def read_results_of(
    plan: Plan, max_bytes: int, base_dir: Path
) -> tuple[Result, ...] | ResultsError:
    """
    The attempt's validated results, or why they cannot be accepted.

    The file is opened through the directories the consumer made, one at a time and never
    through a symlink, so a script (or a daemon it left behind) that swaps its working directory
    or its experiment's for a link cannot make us read a file from elsewhere, even meanwhile.
    """
    attempt_dir = plan.paths.results.parent
    dir_fd = _open_below(base_dir, attempt_dir)
    if dir_fd is None:
        problem = f"<file>: the attempt's directory {attempt_dir} was removed or replaced"
        return MissingResults(str(plan.paths.results), [problem])
    try:
        return read_results(plan.paths.results, max_bytes=max_bytes, dir_fd=dir_fd)
    except ResultsError as exc:
        return _without_tracebacks(exc)
    finally:
        os.close(dir_fd)


def _without_tracebacks(exc: ResultsError) -> ResultsError:
    """
    The error, kept as a value: without its tracebacks, or those of the errors it chains to.

    A traceback holds the frames it passed through, and one of them holds the error: a cycle
    that would keep every broken trial's plan alive until the next full garbage collection.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return exc


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _open_below(base: Path, target: Path) -> int | None:
    """Open ``target`` (inside ``base``) component by component, following no symlink."""
    try:
        fd = os.open(base, _DIR_FLAGS)
    except OSError:
        return None
    for part in target.relative_to(base).parts:
        try:
            next_fd: int | None = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
        except OSError:
            next_fd = None
        os.close(fd)
        if next_fd is None:
            return None
        fd = next_fd
    return fd


def build_outcome(
    plan: Plan,
    started_at: datetime,
    verdict: Verdict,
    *,
    host: str,
    exit_: Exit | None = None,
    pid: int | None = None,
    code_version: str | None = None,
    slots: Mapping[str, Sequence[str]] | None = None,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """The outcome of an attempt, logged."""
    usage = exit_.usage if exit_ is not None else None
    outcome = Outcome(
        trial_id=plan.trial.id,
        attempt=plan.trial.attempt,
        status=verdict.status,
        reason=verdict.reason,
        message=verdict.message,
        results=verdict.results,
        returncode=verdict.returncode,
        signal=verdict.signal,
        argv=tuple(plan.argv),
        env=dict(env or {}),
        slots={k: tuple(v) for k, v in (slots or {}).items()},
        code_version=code_version,
        host=host,
        pid=pid,
        started_at=started_at,
        ended_at=datetime.now(UTC),
        cpu_seconds=usage.cpu_seconds if usage else None,
        peak_rss_bytes=usage.peak_rss_bytes if usage else None,
        working_dir=str(plan.paths.working_dir),
        stdout_path=str(plan.paths.stdout) if pid is not None else "",
        stderr_path=str(plan.paths.stderr) if pid is not None else "",
        stderr_tail=tail(plan.paths.stderr) if pid is not None else "",
    )
    _log(outcome)
    return outcome


def _log(outcome: Outcome) -> None:
    extra = {"trial_id": outcome.trial_id}
    if outcome.is_completed:
        logger.info("completed, objective %s", outcome.objective, extra=extra)
        return
    level = logging.INFO if outcome.status is Status.INTERRUPTED else logging.WARNING
    logger.log(level, "%s (%s): %s", outcome.status, outcome.reason, outcome.message, extra=extra)
