"""Trials' parameters from files and from the command line (JSONL, CSV, grids), and their ids."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from pydantic import JsonValue

from .._models import Trial

__all__ = [
    "SourceError",
    "TrialMaker",
    "grid_params",
    "id_at",
    "parse_assignment",
    "read_params",
    "trial_id",
    "version_of",
]


class SourceError(ValueError):
    """A trial source cannot be read; the message names the file and line."""


# no check for circular references: parameters read from JSON, CSV or a store have none
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
)
"""How ``trial_id`` writes parameters: one encoder for every trial (``json.dumps`` makes one a call)."""


def trial_id(params: dict[str, JsonValue], version: int = 1) -> str:
    """
    A stable id from the parameters, so that running the same file again resumes.

    Each experiment version after the first has ids of its own: it runs every trial again.
    """
    canonical = _CANONICAL.encode(params)
    if version > 1:
        canonical += f"\x00version {version}"
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


_DECODER = json.JSONDecoder()
"""The decoder ``json.loads`` uses (its defaults), called without ``json.loads``'s wrapping."""


def _loads(line: str) -> object:
    """
    ``json.loads(line)``, at two thirds of its cost for a line that is one JSON document.

    ``raw_decode`` is ``json.loads`` without the look for whitespace around the document; any
    other line (space before it, text after it, not JSON) goes to ``json.loads`` itself, which
    returns the same value or raises the same error.
    """
    try:
        value, end = _DECODER.raw_decode(line)
    except ValueError:
        return json.loads(line)
    return value if end == len(line) or line[end:] == "\n" else json.loads(line)


def _jsonl(path: Path, lines: Iterable[str]) -> Iterator[dict[str, JsonValue]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = _loads(line)
        except ValueError as exc:
            msg = f"{path}:{number}: not JSON: {exc}"
            raise SourceError(msg) from None
        if not isinstance(value, dict):
            msg = (
                f"{path}:{number}: expected a JSON object of parameters, got {type(value).__name__}"
            )
            raise SourceError(msg)
        yield value


def _scalar(text: str) -> JsonValue:
    """A CSV cell or a grid value: a number or boolean when it reads as one, else text."""
    try:
        value: JsonValue = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float | bool) else text


def _csv(path: Path, lines: Iterable[str]) -> Iterator[dict[str, JsonValue]]:
    # strict: an unterminated quoted field is an error, not a cell that eats the rest of the file
    reader = csv.DictReader(lines, strict=True)
    while True:
        start = max(reader.line_num + 1, 2)  # the line where the next row begins
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            msg = f"{path}:{start}: not valid CSV ({exc}): is a quoted field left open?"
            raise SourceError(msg) from None
        if None in row or any(v is None for v in row.values()):
            msg = f"{path}:{reader.line_num}: expected {len(reader.fieldnames or [])} columns"
            raise SourceError(msg)
        yield {name: _scalar(value) for name, value in row.items()}


def read_params(path: str | Path) -> Iterator[dict[str, JsonValue]]:
    """
    Parameter objects from a ``.jsonl`` (one object a line) or ``.csv`` file, read as they come.

    The file is read line by line: a file of any size takes little memory, and each pass over
    it (a check, then the adding) reads it again.

    Raises:
        SourceError: the file cannot be read, or a line is malformed (its number is given).
    """
    path = Path(path)
    is_csv = path.suffix.lower() == ".csv"
    try:
        # utf-8-sig: a spreadsheet's byte order mark is not part of the first column's name
        with path.open(encoding="utf-8-sig", newline="" if is_csv else None) as lines:
            yield from (_csv if is_csv else _jsonl)(path, lines)
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"
        raise SourceError(msg) from None


def parse_assignment(text: str, option: str) -> tuple[str, list[str]]:
    """
    Split ``name=a,b,c`` into its name and values.

    Raises:
        SourceError: no ``=``, an empty name or no values.
    """
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values:
        msg = f"{option} {text!r}: expected NAME=VALUE[,VALUE...]"
        raise SourceError(msg)
    return name.strip(), values.split(",")


def grid_params(assignments: Sequence[str]) -> Iterator[dict[str, JsonValue]]:
    """
    Every combination of ``--grid name=v1,v2`` options, values typed like CSV cells.

    The options are checked at once; the combinations are made as they are read.
    """
    axes = [parse_assignment(a, "--grid") for a in assignments]
    names = [name for name, _ in axes]
    values = [[_scalar(v) for v in vs] for _, vs in axes]
    return (dict(zip(names, combo, strict=True)) for combo in itertools.product(*values))


def version_of(trial: Trial, latest: int) -> int:
    """
    Which version of its experiment (up to ``latest``) a trial belongs to, by its id.

    Each version after the first gives ids of its own; a trial whose id is none of theirs is
    version 1 (as are trials added with ids of their own, unless they end in ``-v<version>``).
    """
    params = dict(trial.params)
    for version in range(latest, 1, -1):
        if trial.id == trial_id(params, version) or trial.id.endswith(f"-v{version}"):
            return version
    return 1


def id_at(given: str | None, params: dict[str, JsonValue], version: int) -> str:
    """
    A trial's id at an experiment ``version``: its given id (its ``"id"`` key), or its own.

    For a version after the first, a given id gets ``-v<version>`` appended.
    """
    if given is None:
        return trial_id(params, version)
    return given if version == 1 else f"{given}-v{version}"


_SCALARS = frozenset({str, int, float, bool, type(None)})
"""The types of a parameter that ``Trial`` takes as it is, whatever its value."""


@dataclasses.dataclass(slots=True)
class TrialMaker:
    """
    Trials of one experiment from ids and parameters, validated only where it can change anything.

    The first trial is validated in full (the experiment and the slots then need no other look).
    A later one whose id is non-empty text without NUL and whose parameters are all scalars
    (as JSON, CSV and ``--grid`` give) is one ``Trial`` would take unchanged: it is a copy of
    the first with its own id and parameters, at a third of the cost. Any other is validated
    in full, and so fails with the same message as ever (nesting deeper than pydantic takes,
    an empty id).
    """

    experiment: str
    slots: dict[str, int]
    _first: Trial | None = None

    def make(self, tid: str, params: dict[str, JsonValue]) -> Trial:
        """
        The trial of ``params`` with id ``tid``.

        Raises:
            pydantic.ValidationError: it is not a valid trial.
        """
        first = self._first
        if first is not None and _is_taken_as_is(tid, params):
            return _copy_of(first, tid, params)
        trial = Trial(id=tid, params=params, experiment=self.experiment, slots=self.slots)
        self._first = first or trial
        return trial

    def check(self, tid: str, params: dict[str, JsonValue]) -> None:
        """
        Check the trial ``make`` would make, making one only where it must be validated.

        Raises:
            pydantic.ValidationError: it is not a valid trial.
        """
        if self._first is None or not _is_taken_as_is(tid, params):
            self.make(tid, params)


def _copy_of(first: Trial, tid: str, params: dict[str, JsonValue]) -> Trial:
    """
    ``first.model_copy(update={"id": tid, "params": params})`` (its own slots), at half the cost.

    What pydantic's shallow copy does, without its generic copying of the extra and private
    attributes a ``Trial`` has none of (``tests/test_checked_trials.py`` holds the two equal).
    """
    trial = Trial.__new__(Trial)
    values = {**first.__dict__, "id": tid, "params": params, "slots": dict(first.slots)}
    object.__setattr__(trial, "__dict__", values)
    object.__setattr__(trial, "__pydantic_fields_set__", set(first.__pydantic_fields_set__))
    object.__setattr__(trial, "__pydantic_extra__", None)
    object.__setattr__(trial, "__pydantic_private__", None)
    return trial


def _is_taken_as_is(tid: str, params: dict[str, JsonValue]) -> bool:
    """Whether ``Trial`` takes this id and these parameters unchanged (all scalars: no nesting)."""
    return bool(tid) and "\x00" not in tid and _SCALARS.issuperset(map(type, params.values()))
