"""How stores keep trials, attempts, workers and experiments as rows: JSON text and tuples, to
models and back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .._experiment import Experiment
from .._fleet import WorkerInfo
from .._models import Attempt, Lease, Outcome, StoredTrial, Trial, TrialStatus
from ._rules import Cleared, clear_loss

__all__ = [
    "cleared_loss",
    "dump_experiment",
    "dump_trial",
    "load_attempt",
    "load_experiment",
    "load_outcome",
    "load_stored",
    "load_trial",
    "load_worker",
    "new_lease",
    "same_params",
    "worker_row",
    "zero_counts",
]

_ATTEMPT_FIELDS = ("number", "token", "worker", "host", "reserved_at", "heartbeat_at", "outcome")
_STORED_FIELDS = ("trial", "status", "token", "worker", "heartbeat_at", "lost_count")


_NO_ATTEMPT = {"attempt": True}


def dump_trial(trial: Trial) -> str:
    """The JSON text a store keeps for a trial (the attempt number is the store's to count)."""
    # ``model_dump_json(exclude={"attempt"})`` without its wrapping: a large file's every line
    return Trial.__pydantic_serializer__.to_json(trial, exclude=_NO_ATTEMPT).decode()


_FIELDS_SET: dict[frozenset[str], set[str]] = {}
"""The names of the fields set in loaded trials, one set for all that set the same fields."""


def load_trial(text: str, attempts: int) -> Trial:
    """Rebuild a stored trial, numbered with its latest attempt."""
    trial = Trial.model_validate_json(text)
    # built from its validated values with a set of field names shared by the trials that set
    # the same (all, from a store): a set of six names each costs 0.7 KiB a running trial
    names = {*trial.model_fields_set, "attempt"}
    shared = _FIELDS_SET.setdefault(frozenset(names), names)
    return Trial.model_construct(shared, **{**trial.__dict__, "attempt": max(attempts, 1)})


_LEASE_FIELDS = {"trial", "token", "worker", "lost_count"}
"""The names of the fields set in every lease a store makes, one set for all of them."""


def new_lease(trial: Trial, token: int, worker: str, lost_count: int) -> Lease:
    """A lease a store issues, its values the store's own (a set of field names per lease
    would cost 0.2 KiB a running trial)."""
    return Lease.model_construct(
        _LEASE_FIELDS, trial=trial, token=int(token), worker=str(worker), lost_count=int(lost_count)
    )


def same_params(stored: str, trial: Trial) -> bool:
    """Whether a stored trial's JSON text has the same parameters as ``trial``."""
    params: object = json.loads(stored)["params"]
    return params == trial.params


def load_attempt(row: Sequence[object]) -> Attempt:
    """Rebuild an attempt from a row (times as datetimes or seconds since the epoch)."""
    fields = dict(zip(_ATTEMPT_FIELDS, row, strict=True))
    if isinstance(fields["outcome"], str):
        fields["outcome"] = Outcome.model_validate_json(fields["outcome"])
    return Attempt.model_validate(fields)


def load_outcome(text: object) -> Outcome | None:
    """Rebuild an attempt's outcome from its JSON text (``None``: the attempt has none yet)."""
    return None if text is None else Outcome.model_validate_json(str(text))


def cleared_loss(row: Sequence[Any], max_lost: int) -> Cleared | None:
    """
    :func:`._rules.clear_loss` of a ``(status, lost_count, charged outcome, latest outcome)``
    row, the outcomes as JSON text.
    """
    status, lost_count, charged, latest = row
    return clear_loss(
        load_outcome(charged), TrialStatus(status), lost_count, load_outcome(latest), max_lost
    )


def load_stored(row: Sequence[object], attempts: Sequence[Attempt]) -> StoredTrial:
    """Rebuild a stored trial from a row (its JSON text first) and its attempts in order."""
    fields = dict(zip(_STORED_FIELDS, row, strict=True))
    fields["trial"] = load_trial(str(fields["trial"]), len(attempts))
    return StoredTrial.model_validate({**fields, "attempts": tuple(attempts)})


def zero_counts() -> dict[TrialStatus, int]:
    """A count of 0 for every status."""
    return dict.fromkeys(TrialStatus, 0)


WORKER_FIELDS = ("name", "host", "pid", "job_id", "task_id", "running", "state")
"""The columns of the ``workers`` table that a worker sets, in the order stores write them."""


def worker_row(worker: WorkerInfo) -> tuple[object, ...]:
    """The values of a worker's row, in the order of ``WORKER_FIELDS``."""
    return (*(getattr(worker, name) for name in WORKER_FIELDS[:-1]), worker.state.value)


def load_worker(row: Sequence[object]) -> WorkerInfo:
    """Rebuild a worker from a row: ``WORKER_FIELDS``, then its start and its last beat."""
    fields = dict(zip((*WORKER_FIELDS, "started_at", "beat_at"), row, strict=True))
    return WorkerInfo.model_validate(fields)


def dump_experiment(
    experiment: Experiment,
) -> tuple[str, int, str, str | None, str | None, bool, str | None]:
    """The values of an experiments row, but its creation time (the store's clock sets it)."""
    command = json.dumps(list(experiment.command))
    return (
        experiment.name,
        experiment.version,
        command,
        experiment.config,
        experiment.code_version,
        experiment.maximize,
        experiment.search,
    )


def load_experiment(row: Sequence[object]) -> Experiment:
    """Rebuild an experiment from its row (the time as a datetime or seconds since the epoch)."""
    name, version, command, config, code_version, created, maximize, search = row
    if isinstance(created, int | float):
        created = datetime.fromtimestamp(created, UTC)
    return Experiment.model_validate(
        {
            "name": name,
            "version": version,
            "command": json.loads(str(command)),
            "config": config,
            "code_version": code_version,
            "created_at": created,
            "maximize": bool(maximize),
            "search": search,
        }
    )
