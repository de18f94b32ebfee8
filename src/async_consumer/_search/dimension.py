"""A search space's dimension: a parameter, its prior, and how a value is drawn from it."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from pydantic import JsonValue

__all__ = ["Choice", "Dimension"]

Choice = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Dimension:
    """
    One parameter of a search space: its name, its prior and the prior's arguments.

    Attributes:
        name: the parameter's name (the placeholder ``{name}`` in the command).
        prior: ``uniform``, ``loguniform``, ``normal``, ``randint``, ``choices`` or ``fidelity``.
        low, high: the bounds (``normal``: the mean and the scale; ``fidelity``: its range).
        discrete: integer values (always for ``randint``).
        precision: significant digits of a sampled real.
        default: ``default_value``, if given.
        choices: the categories of ``choices``; ``weights``: their probabilities, if given.
        base: a fidelity's logarithmic base.
        text: the expression as written.
    """

    name: str
    prior: str
    text: str
    low: float = 0.0
    high: float = 0.0
    discrete: bool = False
    precision: int = 4
    default: JsonValue = None
    choices: tuple[Choice, ...] = ()
    weights: tuple[float, ...] | None = None
    base: float = 2.0

    @property
    def kind(self) -> str:
        """``real``, ``integer``, ``categorical`` or ``fidelity``."""
        if self.prior == "choices":
            return "categorical"
        if self.prior == "fidelity":
            return "fidelity"
        return "integer" if self.discrete else "real"

    def sample(self, rng: random.Random) -> JsonValue:
        """One value drawn from the prior (a fidelity: its ``high``)."""
        if self.prior == "choices":
            weights = list(self.weights) if self.weights is not None else None
            return rng.choices(self.choices, weights=weights)[0]
        if self.prior == "fidelity":
            return _number(self.high)
        if self.prior == "randint":
            return rng.randrange(int(self.low), int(self.high))
        if self.prior == "normal":
            value = rng.gauss(self.low, self.high)
        elif self.prior == "loguniform":
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return self.cast(value)

    def cast(self, value: float) -> JsonValue:
        """A sampled number as this dimension gives it: rounded (integer) or to ``precision``."""
        if self.discrete:
            rounded = round(value)
            if self.prior != "normal":  # a bounded prior's integers stay within its bounds
                rounded = min(max(rounded, math.ceil(self.low)), math.floor(self.high))
            return rounded
        return float(f"{value:.{self.precision}g}")

    def contains(self, value: JsonValue) -> bool:
        """Whether ``value`` is one this dimension can take."""
        if self.prior == "choices":
            return value in self.choices
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        if self.discrete and not float(value).is_integer():
            return False
        if self.prior == "normal":
            return True
        high_open = self.prior == "randint"
        return self.low <= value < self.high if high_open else self.low <= value <= self.high


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
