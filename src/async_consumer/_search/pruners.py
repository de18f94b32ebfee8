"""
Optuna's pruners as a fleet runs them: each process has its own, and they must agree.

Each process of a search builds its own pruner on its own in-memory study. Optuna's successive
halving (``asha``) and Hyperband estimate a resource (ASHA's minimum, Hyperband's maximum) from
the completed trials the process happens to know when it first prunes, and Hyperband puts a trial
in a bracket by hashing the study's name and the trial's number in that study: both would differ
from one process to the next. Here the estimate is settled once for the fleet (the first one
recorded in the store, see ``Search``) and nothing prunes before it is known, and a trial's
bracket hashes the experiment's name and the trial's place in the search (``k``, the store's
order), so every process puts a trial in the same bracket.

Imported only where Optuna is installed.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Final

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    SuccessiveHalvingPruner,
)
from optuna.trial import FrozenTrial

__all__ = ["PLACE", "Halving", "Hyperband", "make_pruner", "place_of", "rungs_of"]

PLACE: Final = "async_consumer:k"
"""The system attribute holding a study trial's place in the search (its ``k``)."""


def place_of(trial: FrozenTrial) -> int | None:
    """A study trial's place in the search, if it has one (a point asked and then discarded not)."""
    k = trial.system_attrs.get(PLACE)
    return k if isinstance(k, int) else None


class Halving(SuccessiveHalvingPruner):
    """
    Optuna's successive halving, whose ``auto`` minimum resource is the fleet's (:meth:`settle`):
    it prunes nothing until then, as Optuna's prunes nothing until a trial completed.
    """

    step: Final = 0
    """Where the fleet's estimate is recorded (the step of the search's resource record)."""

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if self._min_resource is None:
            return False
        return bool(super().prune(study, trial))

    @property
    def settled(self) -> bool:
        """Whether the minimum resource is known."""
        return self._min_resource is not None

    def proposal(self, steps: list[int]) -> int | None:
        """
        The minimum resource this process would estimate from its completed trials' last
        ``steps`` (``None``: settled, or no evidence), as Optuna estimates it.
        """
        if self._min_resource is not None:
            return None
        return max(max(steps) // 100, 1) if steps else None

    def settle(self, study: optuna.Study, value: int) -> None:
        """The fleet's minimum resource (the first estimate recorded in the store)."""
        self._min_resource = max(int(value), 1)

    def halving_of(self, study: optuna.Study, trial: FrozenTrial) -> SuccessiveHalvingPruner | None:
        """The successive halving that judges ``trial`` (``None``: none yet)."""
        return self if self._min_resource is not None else None


class Hyperband(HyperbandPruner):
    """
    Optuna's Hyperband, with the fleet's ``auto`` maximum resource (:meth:`settle`) and brackets
    that every process agrees on: a trial's bracket hashes the study's name (the experiment's)
    and ``k - 1`` where Optuna hashes the trial's number in the process's own study.
    """

    step: Final = 1
    """Where the fleet's estimate is recorded (the step of the search's resource record)."""

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if self._max_resource == "auto":
            return False
        return bool(super().prune(study, trial))

    @property
    def settled(self) -> bool:
        """Whether the maximum resource is known."""
        return self._max_resource != "auto"

    def proposal(self, steps: list[int]) -> int | None:
        """
        The maximum resource this process would estimate from its completed trials' last
        ``steps`` (``None``: settled, or no evidence), as Optuna estimates it.
        """
        if self._max_resource != "auto":
            return None
        return max(steps) + 1 if steps else None

    def settle(self, study: optuna.Study, value: int) -> None:
        """The fleet's maximum resource (the first estimate recorded in the store)."""
        if self._max_resource == "auto":
            self._max_resource = max(int(value), 1)
            self._try_initialization(study)

    def halving_of(self, study: optuna.Study, trial: FrozenTrial) -> SuccessiveHalvingPruner | None:
        """The successive halving of ``trial``'s bracket (``None``: no brackets yet)."""
        if self._max_resource == "auto":
            return None
        if not self._pruners:
            self._try_initialization(study)
        return self._pruners[self._get_bracket_id(study, trial)]

    def _get_bracket_id(self, study: optuna.Study, trial: FrozenTrial) -> int:
        k = place_of(trial)
        if k is None or not self._pruners:
            return int(super()._get_bracket_id(study, trial))
        n = binascii.crc32(f"{study.study_name}_{k - 1}".encode()) % (
            self._total_trial_allocation_budget
        )
        for bracket, budget in enumerate(self._trial_allocation_budgets):
            n -= budget
            if n < 0:
                return bracket
        raise AssertionError(n)  # the budgets add up to the total


def rungs_of(halving: SuccessiveHalvingPruner, curve: Mapping[int, float]) -> dict[str, float]:
    """
    The rungs of successive halving that a trial with this curve completed, as its own pruner
    records them (``completed_rung_N``): at the first step reported at or past each rung's
    step, its value then. Optuna ranks a trial against the others' values at its rung.
    """
    low = halving._min_resource
    if low is None:
        return {}
    factor, rate = halving._reduction_factor, halving._min_early_stopping_rate
    rungs: dict[str, float] = {}
    for step in sorted(curve):
        while step >= low * factor ** (rate + len(rungs)):
            rungs[f"completed_rung_{len(rungs)}"] = curve[step]
    return rungs


def make_pruner(name: str, max_resource: int | None) -> BasePruner:
    """The pruner called ``name``: a fidelity's ``high`` is Hyperband's maximum resource."""
    if name == "median":
        return MedianPruner(n_startup_trials=5)
    if name == "asha":
        return Halving()
    if name == "hyperband":
        return Hyperband(max_resource=max_resource or "auto")
    return NopPruner()
