"""
Validate a trial's results, as read from its file; one readable error lists every problem.

Three shapes are accepted, all written as UTF-8 JSON:

* Orion's list of ``{"name", "type", "value"}`` entries with exactly one ``objective``;
* a bare number, the objective (Orion accepts it too);
* a mapping ``{"objective": 0.1, "accuracy": 0.9}``: the objective plus one statistic per other key.

Each problem is one line ``location: what is wrong``, where the location is a path into the
document (``[2].value``, ``accuracy``) or ``results.json`` for the file as a whole.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, TypeAdapter, ValidationError
from pydantic_core import from_json

from .._errors import InvalidResults, MissingResults
from .._models import Result
from .._numbers import FiniteFloat, ResultValue

__all__ = ["WHOLE_FILE", "parse_results"]

WHOLE_FILE = "results.json"
"""The location of a problem with the file as a whole."""
_SHAPE_MESSAGE = (
    'results must be a JSON list of {"name", "type", "value"} entries, '
    'a number, or an object with the key "objective"'
)
_NO_OBJECTIVE = 'No objective found: one entry must have "type": "objective"'


class _Shorthand(BaseModel):
    """The mapping shape: ``objective`` and any other keys, each a statistic."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    __pydantic_extra__: dict[str, ResultValue]

    objective: FiniteFloat


def _shape(value: object) -> str | None:
    """
    Name the shape of a parsed document, or ``None`` for one we refuse.

    A lone Orion entry (a mapping with ``type`` but no ``objective``) is refused as a shape, so
    its message tells the writer to put it in a list.
    """
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return None if "type" in value and "objective" not in value else "mapping"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return None


_TAGS = frozenset({"list", "mapping", "number"})
_DOCUMENT: TypeAdapter[list[Result] | float | _Shorthand] = TypeAdapter(
    Annotated[
        Annotated[list[Result], Tag("list")]
        | Annotated[FiniteFloat, Tag("number")]
        | Annotated[_Shorthand, Tag("mapping")],
        Discriminator(
            _shape, custom_error_type="results_shape", custom_error_message=_SHAPE_MESSAGE
        ),
    ]
)


def parse_results(raw: bytes, *, path: str = "<results>") -> tuple[Result, ...]:
    """
    Validate the bytes of a results file.

    Args:
        raw: the file's content.
        path: the file's name, kept on the error.

    Returns:
        The results, the objective among them (first, for a number or a mapping).

    Raises:
        MissingResults: the content is empty or only whitespace.
        InvalidResults: anything else wrong; its ``problems`` list every problem found.
    """
    if not raw or raw.isspace():
        raise MissingResults(path, [f"{WHOLE_FILE}: file is empty: the script wrote no results"])
    try:
        document = _DOCUMENT.validate_json(raw)
    except ValidationError as exc:
        raise InvalidResults(path, _encoding_problems(raw) or _schema_problems(exc, raw)) from exc
    except (RecursionError, ValueError) as exc:  # pydantic bounds nesting; this is a safety net
        raise InvalidResults(path, [f"{WHOLE_FILE}: cannot be parsed: {exc}"]) from exc
    results = _to_results(document)
    problems = _objective_problems([result.type for result in results])
    if problems:
        raise InvalidResults(path, problems)
    return results


def _to_results(document: list[Result] | float | _Shorthand) -> tuple[Result, ...]:
    """Turn a validated document of any shape into Orion's list of results."""
    if isinstance(document, list):
        return tuple(document)
    if isinstance(document, float):
        return (Result(name="objective", type="objective", value=document),)
    statistics = document.__pydantic_extra__.items()
    return (
        Result(name="objective", type="objective", value=document.objective),
        *(Result(name=name, type="statistic", value=value) for name, value in statistics),
    )


def _encoding_problems(raw: bytes) -> list[str]:
    """Name the first byte that is not UTF-8, if any."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = raw[exc.start]
        return [f"{WHOLE_FILE}: not UTF-8: byte 0x{byte:02x} at offset {exc.start} ({exc.reason})"]
    return []


def _schema_problems(exc: ValidationError, raw: bytes) -> list[str]:
    """List pydantic's errors as ``location: message`` lines, then the objective count."""
    errors = exc.errors(include_url=False)
    problems = [_problem(error["loc"], error["type"], error["msg"]) for error in errors]
    if not any(error["type"] == "json_invalid" for error in errors):
        problems += _objective_problems(_entry_types(raw))
    return problems


def _problem(loc: tuple[int | str, ...], kind: str, message: str) -> str:
    """Write one pydantic error as a line; a mapping without its objective says so plainly."""
    if kind == "missing" and loc == ("mapping", "objective"):
        return f'{WHOLE_FILE}: No objective found: a mapping of results needs the key "objective"'
    return f"{_location(loc)}: {message}"


def _entry_types(raw: bytes) -> list[object] | None:
    """The ``type`` of each entry of a list document, or ``None`` when it is not a list."""
    try:
        document = from_json(raw)
    except (RecursionError, ValueError):
        return None
    if not isinstance(document, list):
        return None
    return [entry.get("type") if isinstance(entry, dict) else None for entry in document]


def _objective_problems(types: list[object] | None) -> list[str]:
    """Demand exactly one objective among the entries' types; ``None`` means not a list."""
    if types is None:
        return []
    where = [index for index, kind in enumerate(types) if kind == "objective"]
    if not where:
        return [f"{WHOLE_FILE}: {_NO_OBJECTIVE}"]
    first = where[0]
    return [
        f"[{i}]: another objective, after the one at [{first}]; only one is allowed"
        for i in where[1:]
    ]


def _location(loc: tuple[int | str, ...]) -> str:
    """Write pydantic's location as a path like ``[2].value``, without the shape's tag."""
    if loc and loc[0] in _TAGS:
        loc = loc[1:]
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or WHOLE_FILE
