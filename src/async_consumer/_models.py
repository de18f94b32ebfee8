"""The values that cross the library's edges: trials in, outcomes out, results files, leases."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
)

from ._numbers import ResultValue

__all__ = [
    "Attempt",
    "Lease",
    "Outcome",
    "Reason",
    "Result",
    "Status",
    "StoredTrial",
    "Trial",
    "TrialStatus",
]

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class Status(StrEnum):
    """How an attempt at a trial ended."""

    COMPLETED = "completed"
    """The script exited 0 and wrote valid results."""
    BROKEN = "broken"
    """The script failed; re-running the same trial is not expected to help."""
    INTERRUPTED = "interrupted"
    """The attempt was stopped on purpose (interrupt code, ``stop``, cancellation); it may run again."""
    LOST = "lost"
    """The worker lost its lease (or its heartbeat): another worker may have the trial now."""


class Reason(StrEnum):
    """Why an attempt did not complete."""

    EXIT_CODE = "exit_code"
    SIGNAL = "signal"
    TIMEOUT = "timeout"
    STALLED = "stalled"
    MISSING_RESULTS = "missing_results"
    INVALID_RESULTS = "invalid_results"
    NOT_EXECUTABLE = "not_executable"
    CODE_CHANGED = "code_changed"
    LEASE_LOST = "lease_lost"
    STOPPED = "stopped"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"
    """The worker was told to leave (SIGTERM, Slurm's early warning) and stopped the attempt:
    not the script's doing, so any worker may resume it at once."""
    PRUNED = "pruned"
    """A search's pruner stopped it: its metrics said it would not beat the others. Never run
    again (its trial's status is ``pruned``)."""
    OUT_OF_MEMORY = "out_of_memory"
    """The kernel killed a process of the trial for going over its memory limit (its cgroup's
    OOM counter says so; a SIGKILL alone is not taken for it)."""
    HOST_FAULT = "host_fault"
    """The worker's host could not start it (its files could not be created): not the trial's
    fault, so it goes back to the queue without counting a loss."""
    DISK_FULL = "disk_full"
    """It failed while the file system of its working directory was full (checked when it
    ended): the host's fault, not the script's, so it is interrupted and runs again."""


class Trial(BaseModel):
    """
    One set of parameters to run the user's script with.

    Attributes:
        id: unique id of the trial; any non-empty text without NUL.
        params: the parameters, a JSON object (nested objects are reached with dotted names).
        experiment: the experiment's name, given to the script as ``ASYNC_CONSUMER_EXPERIMENT_NAME``.
        attempt: the attempt number, 1 for the first run; retries count up.
        slots: how many slots of each kind the trial needs, e.g. ``{"gpu": 1}``.
        timeout: seconds the script may run before it is stopped; ``None`` takes the consumer's.
    """

    model_config = _FROZEN

    id: str = Field(min_length=1)
    params: dict[str, JsonValue] = Field(default_factory=dict)
    experiment: str = "default"
    attempt: int = Field(default=1, ge=1)
    slots: dict[str, int] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0)

    @field_validator("id", "experiment")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            msg = "must not contain a NUL character"
            raise ValueError(msg)
        return value

    @field_validator("slots")
    @classmethod
    def _positive_slots(cls, value: dict[str, int]) -> dict[str, int]:
        bad = sorted(kind for kind, count in value.items() if count < 0)
        if bad:
            msg = f"slot demand must not be negative: {', '.join(bad)}"
            raise ValueError(msg)
        return value


ResultType = Literal["objective", "constraint", "gradient", "statistic", "lie"]


class Result(BaseModel):
    """
    One entry of a results file, in Orion's format.

    Attributes:
        name: free text, e.g. ``"loss"``.
        type: one of ``objective``, ``constraint``, ``gradient``, ``statistic``, ``lie``.
        value: a finite number; or, for any type but ``objective``, a list of finite numbers.
            JSON integers become floats; bools, strings, NaN and infinities are refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    name: str
    type: ResultType
    value: ResultValue


class Outcome(BaseModel):
    """
    What happened when a trial's script ran once: one attempt, classified.

    ``status`` and ``reason`` say how it ended; ``results`` holds the validated results of a
    completed attempt. ``stderr_tail`` is the end of the script's stderr, for a quick diagnosis;
    the whole logs are at ``stdout_path`` and ``stderr_path``.
    """

    model_config = _FROZEN

    trial_id: str
    attempt: int = 1
    status: Status
    reason: Reason | None = None
    message: str = ""
    results: tuple[Result, ...] = ()
    returncode: int | None = None
    signal: str | None = None
    argv: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    slots: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    code_version: str | None = None
    host: str = ""
    pid: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    cpu_seconds: float | None = None
    peak_rss_bytes: int | None = None
    peak_memory_bytes: int | None = None
    """The peak memory of the trial's cgroup, all its processes together (cgroup modes)."""
    working_dir: str = ""
    stdout_path: str = ""
    stderr_path: str = ""
    stderr_tail: str = ""

    @property
    def objective(self) -> float | None:
        """The value of the objective result, if the attempt completed."""
        for result in self.results:
            if result.type == "objective" and isinstance(result.value, float):
                return result.value
        return None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end of the attempt, when both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def is_completed(self) -> bool:
        """Whether the attempt completed."""
        return self.status is Status.COMPLETED


class TrialStatus(StrEnum):
    """Where a trial is in a store's life cycle."""

    NEW = "new"
    RESERVED = "reserved"
    COMPLETED = "completed"
    BROKEN = "broken"
    INTERRUPTED = "interrupted"
    PRUNED = "pruned"
    """Stopped by a search's pruner (its attempt: interrupted, reason ``pruned``); final."""


class Lease(BaseModel):
    """
    A worker's claim on a trial, fenced by a token.

    Every reservation issues a larger token; the store accepts a heartbeat or a result only with
    the current one, so a worker that was presumed dead cannot overwrite its successor's work.
    """

    model_config = _FROZEN

    trial: Trial
    token: int
    worker: str
    lost_count: int = 0
    """How many leases on the trial were lost before this one (1 or more: a suspect, of which a
    worker runs one at a time, so that a death while it runs can be charged to it)."""

    @property
    def trial_id(self) -> str:
        """The id of the leased trial."""
        return self.trial.id


class Attempt(BaseModel):
    """One reservation of a trial in a store, and how it ended (``outcome`` is ``None`` while running)."""

    model_config = _FROZEN

    number: int
    token: int
    worker: str
    host: str = ""
    reserved_at: datetime
    heartbeat_at: datetime | None = None
    outcome: Outcome | None = None


class StoredTrial(BaseModel):
    """A trial as a store holds it: its status and every attempt so far."""

    model_config = _FROZEN

    trial: Trial
    status: TrialStatus
    token: int = 0
    worker: str | None = None
    heartbeat_at: datetime | None = None
    lost_count: int = 0
    attempts: tuple[Attempt, ...] = ()

    @property
    def id(self) -> str:
        """The trial's id."""
        return self.trial.id

    @property
    def outcome(self) -> Outcome | None:
        """The outcome of the latest finished attempt."""
        for attempt in reversed(self.attempts):
            if attempt.outcome is not None:
                return attempt.outcome
        return None
