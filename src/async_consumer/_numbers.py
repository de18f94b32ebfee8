"""The numbers a results file may hold: finite floats, and lists of them except for an objective."""

from __future__ import annotations

import math
import numbers
from typing import Annotated

from pydantic import PlainValidator, TypeAdapter, ValidationInfo
from pydantic_core import PydanticCustomError

__all__ = ["FiniteFloat", "ResultValue"]

_KINDS = {bool: "a boolean", str: "a string", type(None): "null", dict: "an object", list: "a list"}
_NOT_FINITE = "finite_number"
_NOT_FINITE_MESSAGE = "must be a finite number, not {kind}"
_OBJECTIVE_LIST = "objective_list"
_OBJECTIVE_LIST_MESSAGE = "must be a single number for an objective, not a list"


def _finite_float(value: object) -> float:
    """
    Accept a real number that is finite as a float; refuse bools, strings and NaN or infinity.

    Raises:
        PydanticCustomError: ``finite_number``, saying what was found instead.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = _KINDS.get(type(value), type(value).__name__)
        raise PydanticCustomError(_NOT_FINITE, _NOT_FINITE_MESSAGE, {"kind": kind})
    try:
        number = float(value)
    except OverflowError:  # an int beyond the largest float
        number = math.inf
    if not math.isfinite(number):
        kind = "NaN" if math.isnan(number) else "an infinite or too large number"
        raise PydanticCustomError(_NOT_FINITE, _NOT_FINITE_MESSAGE, {"kind": kind})
    return number


FiniteFloat = Annotated[float, PlainValidator(_finite_float, json_schema_input_type=float)]
"""A finite float: JSON integers are accepted, bools, strings, NaN and infinities are not."""

_FINITE_FLOATS: TypeAdapter[list[float]] = TypeAdapter(list[FiniteFloat])


def _result_value(value: object, info: ValidationInfo) -> float | list[float]:
    """
    Accept a finite number, or a list of them except for an objective.

    Raises:
        PydanticCustomError: ``finite_number`` or ``objective_list``.
        ValidationError: for the items of a list, each at its own index.
    """
    if not isinstance(value, list):
        return _finite_float(value)
    if info.data.get("type") == "objective":
        raise PydanticCustomError(_OBJECTIVE_LIST, _OBJECTIVE_LIST_MESSAGE)
    return _FINITE_FLOATS.validate_python(value)


ResultValue = Annotated[
    float | list[float],
    PlainValidator(_result_value, json_schema_input_type=float | list[float]),
]
"""A finite number or a list of finite numbers (an objective must be a single number)."""
