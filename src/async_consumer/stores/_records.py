"""The rows of the experiments table, and the arguments every store checks alike."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from .._experiment import Experiment
from .._models import TrialStatus

__all__ = ["check_hold", "check_rerun", "dump_experiment", "load_experiment"]

RERUNNABLE = frozenset({TrialStatus.BROKEN, TrialStatus.INTERRUPTED})


def check_rerun(statuses: Collection[TrialStatus]) -> list[str]:
    """The statuses as text, if each may be run again; else raise ``ValueError``."""
    wrong = sorted(str(s) for s in statuses if s not in RERUNNABLE)
    if wrong:
        msg = f"only broken and interrupted trials can be run again, not {', '.join(wrong)}"
        raise ValueError(msg)
    return sorted(str(s) for s in statuses)


def check_hold(hold: float) -> float:
    """Return ``hold`` if it is a finite number of seconds, 0 or more; else raise ``ValueError``."""
    if not (hold >= 0 and math.isfinite(hold)):
        msg = f"hold must be a finite number of seconds, 0 or more, not {hold}"
        raise ValueError(msg)
    return float(hold)


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
