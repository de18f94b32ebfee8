"""Which trial is best: the lowest objective, or the highest with ``maximize``."""

from __future__ import annotations

from collections.abc import Iterable

from ._models import StoredTrial

__all__ = ["best_trial", "is_better", "objective_of"]


def objective_of(trial: StoredTrial) -> float | None:
    """The objective of the trial's latest finished attempt, if it completed with one."""
    outcome = trial.outcome
    return outcome.objective if outcome is not None and outcome.is_completed else None


def is_better(value: float, than: float | None, *, maximize: bool = False) -> bool:
    """Whether ``value`` beats ``than`` (anything beats ``None``)."""
    if than is None:
        return True
    return value > than if maximize else value < than


def best_trial(trials: Iterable[StoredTrial], *, maximize: bool = False) -> StoredTrial | None:
    """
    The completed trial with the best objective (the first of equals), or ``None``.

    Args:
        trials: trials as a store lists them.
        maximize: higher is better (accuracy) instead of lower (loss).
    """
    best: StoredTrial | None = None
    best_value: float | None = None
    for trial in trials:
        value = objective_of(trial)
        if value is not None and is_better(value, best_value, maximize=maximize):
            best, best_value = trial, value
    return best
