"""
Orion's priors, parsed without ``eval``: ``loguniform(1e-5, 1.0)``, ``choices([2, 4, 8])``...

An expression is read with :mod:`ast` and only literals are taken as arguments (numbers,
strings, lists, dicts, ``True``/``False``/``None``, a leading minus sign), with the keyword
names each prior knows. Anything else (a call inside, a name, an attribute) is refused with
one line naming the parameter, before anything is recorded. What Orion takes:

- ``uniform(low, high)``: a real in [low, high]; integers with ``discrete=True``.
- ``loguniform(low, high)``: log-uniform, ``0 < low < high``; integers with ``discrete=True``.
- ``normal(loc, scale)`` (also ``gaussian``): ``scale > 0``; integers with ``discrete=True``.
- ``randint(low, high)``: integers from ``low`` to ``high - 1`` (scipy's meaning).
- ``choices([a, b])``, ``choices('a', 'b')``, ``choices({'a': 0.8, 'b': 0.2})``: categorical.
- ``fidelity(low, high, base=2)``: the budget dimension; not sampled (every trial gets ``high``).

Keywords: ``discrete``, ``precision`` (significant digits of a sampled real, default 4),
``default_value`` (checked to be in the prior's domain). ``shape`` and Orion's branching
markers (``+``, ``-``, ``>``) are refused with a clear error.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from typing import Final

from pydantic import JsonValue

from .._errors import SpaceError
from .dimension import Dimension

__all__ = ["PRIORS", "Dimension", "parse_prior"]  # Dimension: from .dimension

PRIORS: Final = (
    "uniform",
    "loguniform",
    "normal",
    "gaussian",
    "randint",
    "choices",
    "fidelity",
)
"""The prior names this module knows (``gaussian`` is ``normal``)."""

_KEYWORDS: Final = {
    "uniform": {"discrete", "precision", "default_value"},
    "loguniform": {"discrete", "precision", "default_value"},
    "normal": {"discrete", "precision", "default_value"},
    "randint": {"default_value"},
    "choices": {"default_value"},
    "fidelity": {"base"},
}
_POSITIONAL: Final = {"uniform": 2, "loguniform": 2, "normal": 2, "randint": 2, "fidelity": 2}


def _literal(node: ast.expr, name: str, text: str) -> JsonValue:
    """The value of a literal argument, or a ``SpaceError`` naming the parameter."""
    try:
        value = ast.literal_eval(node)
    except ValueError:
        value = _REFUSED
    if value is _REFUSED or not _is_json(value):
        snippet = ast.get_source_segment(text.strip(), node) or ast.dump(node)
        msg = f"{name}: only literal arguments are accepted, not {snippet!r} (in {text!r})"
        raise SpaceError(msg)
    result: JsonValue = value
    return result


_REFUSED = object()


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return not isinstance(value, float) or math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(
            isinstance(k, str | int | float | bool) and _is_json(v) for k, v in value.items()
        )
    return False


def _call(name: str, text: str) -> ast.Call:
    expression = text.strip()
    if expression[:1] in ("+", "-", ">"):
        msg = (
            f"{name}: Orion's branching marker {expression[0]!r} is not supported "
            f"(in {text!r}): give the prior alone, and --new-version for a changed space"
        )
        raise SpaceError(msg)
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        msg = f"{name}: cannot read the prior {text!r} (expected e.g. uniform(0, 1))"
        raise SpaceError(msg) from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        msg = f"{name}: expected a prior such as uniform(0, 1), got {text!r}"
        raise SpaceError(msg)
    return call


def parse_prior(name: str, text: str) -> Dimension:
    """
    The dimension ``name`` drawn from the prior ``text`` (e.g. ``"loguniform(1e-5, 1.0)"``).

    Raises:
        SpaceError: the text is not a known prior with literal arguments, or its arguments
            are impossible; the one-line message names the parameter and the bound.
    """
    call = _call(name, text)
    assert isinstance(call.func, ast.Name)
    prior = call.func.id
    if prior not in PRIORS:
        msg = f"{name}: unknown prior {prior!r} (known: {', '.join(PRIORS)})"
        raise SpaceError(msg)
    prior = "normal" if prior == "gaussian" else prior
    args = [_literal(a, name, text) for a in call.args]
    kwargs: dict[str, JsonValue] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            msg = f"{name}: ** arguments are not accepted (in {text!r})"
            raise SpaceError(msg)
        kwargs[keyword.arg] = _literal(keyword.value, name, text)
    if prior == "choices":
        return _choices(name, text, args, kwargs)
    return _bounded(name, text, prior, args, kwargs)


def _check_keywords(name: str, prior: str, kwargs: dict[str, JsonValue], text: str) -> None:
    if "shape" in kwargs:
        msg = f"{name}: shape= (a vector of values) is not supported (in {text!r})"
        raise SpaceError(msg)
    known = set(_KEYWORDS[prior])
    if prior != "choices":
        known |= {"loc", "scale"} if prior == "normal" else {"low", "high"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        msg = f"{name}: {prior} takes no argument {unknown[0]!r} (in {text!r})"
        raise SpaceError(msg)


def _bounded(
    name: str, text: str, prior: str, args: list[JsonValue], kwargs: dict[str, JsonValue]
) -> Dimension:
    _check_keywords(name, prior, kwargs, text)
    bounds: list[JsonValue] = list(args)
    words = ("loc", "scale") if prior == "normal" else ("low", "high")
    bounds.extend(kwargs.pop(word) for word in words if word in kwargs)
    if len(bounds) != _POSITIONAL[prior]:
        msg = f"{name}: {prior} needs 2 arguments ({', '.join(words)}), got {len(bounds)}"
        raise SpaceError(msg)
    low, high = (_real(name, prior, words[i], bounds[i]) for i in range(2))
    _check_bounds(name, prior, low, high)
    discrete = _flag(name, kwargs.get("discrete", prior == "randint"))
    precision = kwargs.get("precision", 4)
    if not isinstance(precision, int) or isinstance(precision, bool) or precision < 1:
        msg = f"{name}: precision must be a whole number of digits, 1 or more, got {precision!r}"
        raise SpaceError(msg)
    base = kwargs.get("base", 2)
    if prior == "fidelity":
        base = _real(name, prior, "base", base)
        if base < 1:
            msg = f"{name}: fidelity needs base >= 1, got base={base:g}"
            raise SpaceError(msg)
    assert isinstance(base, int | float)
    dim = Dimension(
        name, prior, text, low, high, discrete=discrete, precision=precision, base=float(base)
    )
    return _with_default(dim, kwargs.get("default_value"), "default_value" in kwargs)


def _flag(name: str, value: JsonValue) -> bool:
    if not isinstance(value, bool):
        msg = f"{name}: discrete must be True or False, got {value!r}"
        raise SpaceError(msg)
    return value


def _real(name: str, prior: str, word: str, value: JsonValue) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        msg = f"{name}: {prior} needs a number for {word}, got {value!r}"
        raise SpaceError(msg)
    return float(value)


def _check_bounds(name: str, prior: str, low: float, high: float) -> None:
    if prior == "normal":
        if not high > 0:
            msg = f"{name}: normal needs scale > 0, got scale={high:g}"
            raise SpaceError(msg)
        return
    if prior == "loguniform" and not 0 < low < high:
        msg = f"{name}: loguniform needs 0 < low < high, got low={low:g}, high={high:g}"
        raise SpaceError(msg)
    if prior == "fidelity" and not 0 < low <= high:
        msg = f"{name}: fidelity needs 0 < low <= high, got low={low:g}, high={high:g}"
        raise SpaceError(msg)
    if prior in ("uniform", "randint") and not low < high:
        msg = f"{name}: {prior} needs low < high, got low={low:g}, high={high:g}"
        raise SpaceError(msg)
    if prior == "randint" and not (low.is_integer() and high.is_integer()):
        msg = f"{name}: randint needs whole numbers, got low={low:g}, high={high:g}"
        raise SpaceError(msg)


def _choices(
    name: str, text: str, args: list[JsonValue], kwargs: dict[str, JsonValue]
) -> Dimension:
    _check_keywords(name, "choices", kwargs, text)
    weights: tuple[float, ...] | None = None
    options: list[JsonValue]
    if len(args) == 1 and isinstance(args[0], dict):
        table = args[0]
        options = list(table)
        numbers = [_real(name, "choices", f"the weight of {k!r}", w) for k, w in table.items()]
        if any(w < 0 for w in numbers) or not math.isclose(sum(numbers), 1.0, abs_tol=1e-6):
            msg = f"{name}: choices' probabilities must be >= 0 and sum to 1, got {sum(numbers):g}"
            raise SpaceError(msg)
        weights = tuple(numbers)
    elif len(args) == 1 and isinstance(args[0], list | tuple):
        options = list(args[0])
    else:
        options = list(args)
    if not options:
        msg = f"{name}: choices needs at least one option (in {text!r})"
        raise SpaceError(msg)
    bad = [o for o in options if isinstance(o, list | tuple | dict)]
    if bad:
        msg = f"{name}: a choice must be a number, a string, a boolean or None, got {bad[0]!r}"
        raise SpaceError(msg)
    if len({(type(o), o) for o in options}) != len(options):
        msg = f"{name}: choices lists an option twice (in {text!r})"
        raise SpaceError(msg)
    dim = Dimension(name, "choices", text, choices=tuple(options), weights=weights)  # type: ignore[arg-type]
    return _with_default(dim, kwargs.get("default_value"), "default_value" in kwargs)


def _with_default(dim: Dimension, default: JsonValue, given: bool) -> Dimension:
    if given and not dim.contains(default):
        msg = f"{dim.name}: default_value={default!r} is outside {dim.text}"
        raise SpaceError(msg)
    return dataclasses.replace(dim, default=default) if given else dim
