"""What an experiment searches: its space, sampler, pruner, total and seed, as its record keeps it."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, replace

from .._errors import SpaceError
from .samplers import check_choice
from .space import Space

__all__ = ["SearchPlan"]

_OPTIONAL = ("sampler", "pruner", "n", "seed", "metric")
"""The fields an option sets (the space comes from the command itself)."""


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """
    What an experiment searches, as its record in the store keeps it.

    Attributes:
        space: the dimensions and their priors.
        sampler: ``random``, ``tpe``, ``cmaes``, ``gp``, ``qmc`` or ``grid``.
        pruner: ``median``, ``asha``, ``hyperband`` or ``none``.
        n: the experiment's total number of trials.
        seed: the sampler's seed (``None``: none).
        metric: the key of a metrics line the pruner reads (``None``: the objective's name).
    """

    space: Space
    sampler: str
    pruner: str
    n: int
    seed: int | None = None
    metric: str | None = None

    def __post_init__(self) -> None:
        check_choice(self.sampler, self.pruner)
        if self.n < 1:
            msg = f"-n must be 1 or more, not {self.n}"
            raise SpaceError(msg)

    def to_json(self) -> str:
        """The plan as its experiment's record keeps it."""
        return json.dumps(
            {
                "space": self.space.spec(),
                "sampler": self.sampler,
                "pruner": self.pruner,
                "n": self.n,
                "seed": self.seed,
                "metric": self.metric,
            },
            sort_keys=True,
        )

    def keeping(self, recorded: SearchPlan, given: Collection[str]) -> SearchPlan:
        """
        This plan with what the command did not say taken from the ``recorded`` one: the
        sampler, pruner, total, seed and metric are the experiment's until an option changes
        them (``given``: the fields the command set). The space is always the command's.
        """
        kept = {f: getattr(recorded, f) for f in _OPTIONAL if f not in given}
        return replace(self, **kept)

    @classmethod
    def from_json(cls, text: str) -> SearchPlan:
        """The plan an experiment's record keeps."""
        data = json.loads(text)
        return cls(
            space=Space.of(data["space"]),
            sampler=data["sampler"],
            pruner=data["pruner"],
            n=data["n"],
            seed=data.get("seed"),
            metric=data.get("metric"),
        )
