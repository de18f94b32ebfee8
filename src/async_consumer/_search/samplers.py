"""
Samplers (which parameters next) and pruners (stop this trial now?) over a search space.

``random`` is built in: the ``k``-th trial's parameters are drawn from a generator seeded by
``(seed, k)``, so that a search is the same whichever worker suggests which trial. The others
are Optuna's, on an in-memory study that the store's finished trials are fed into
(:class:`OptunaStudy`); the pruners are Optuna's too, asked after each value a script reports.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pydantic import JsonValue

from .._errors import SpaceError
from .space import Space

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "Finished",
    "RandomSampler",
    "default_pruner",
    "default_sampler",
    "has_optuna",
]

SAMPLERS: Final = ("random", "tpe", "cmaes", "gp", "qmc", "grid")
PRUNERS: Final = ("median", "asha", "hyperband", "none")
_EXTRA = "pip install 'async-consumer[optuna]'"
_NEEDS: Final = {
    "cmaes": ("cmaes", _EXTRA),
    "qmc": ("scipy", _EXTRA),
    "gp": ("torch", "pip install torch (and 'async-consumer[optuna]')"),
}
"""What Optuna's samplers import besides Optuna itself, and how to install it."""


def has_optuna() -> bool:
    """Whether Optuna can be imported here."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        return False
    return True


def default_sampler() -> str:
    """``tpe`` where Optuna is installed, else ``random``."""
    return "tpe" if has_optuna() else "random"


def default_pruner() -> str:
    """``median`` where Optuna is installed, else ``none``."""
    return "median" if has_optuna() else "none"


def check_choice(sampler: str, pruner: str) -> None:
    """
    Refuse an unknown sampler or pruner, or one that needs Optuna where it is missing.

    Raises:
        SpaceError: one line naming the sampler or pruner (and the extra to install).
    """
    if sampler not in SAMPLERS:
        msg = f"unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)})"
        raise SpaceError(msg)
    if pruner not in PRUNERS:
        msg = f"unknown pruner {pruner!r} (known: {', '.join(PRUNERS)})"
        raise SpaceError(msg)
    for kind, name in (("sampler", sampler), ("pruner", pruner)):
        if name not in ("random", "none") and not has_optuna():
            msg = f"the {kind} {name!r} needs Optuna: {_EXTRA}"
            raise SpaceError(msg)
    needs = _NEEDS.get(sampler)
    if needs is not None and importlib.util.find_spec(needs[0]) is None:
        msg = f"the sampler {sampler!r} needs {needs[0]}: {needs[1]}"
        raise SpaceError(msg)


@dataclass(frozen=True, slots=True)
class Finished:
    """
    A trial of the search that ended, as the store knows it.

    Attributes:
        trial_id: its id.
        params: its parameters.
        state: ``complete``, ``pruned`` or ``fail``.
        value: its objective (a completed trial's).
        curve: the objective's value at each step its script reported, if known.
    """

    trial_id: str
    params: Mapping[str, JsonValue]
    state: str
    value: float | None = None
    curve: Mapping[int, float] = field(default_factory=dict)


class RandomSampler:
    """
    Draws each dimension from its prior; with a ``seed``, the ``k``-th trial is always the same.

    Args:
        space: what to draw.
        seed: makes the search reproducible (``None``: a different one each time).
    """

    def __init__(self, space: Space, seed: int | None = None) -> None:
        self.space = space
        self.seed = seed

    def ask(self, index: int) -> dict[str, JsonValue]:
        """The parameters of the search's ``index``-th trial (1 for the first)."""
        rng = random.Random(f"{self.seed}:{index}") if self.seed is not None else random.Random()
        return {dim.name: dim.sample(rng) for dim in self.space.dimensions}
