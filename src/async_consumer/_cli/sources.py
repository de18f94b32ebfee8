"""Trials from files and from the command line: JSONL, CSV, and grids."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from pydantic import JsonValue

from .._models import Trial

__all__ = [
    "SourceError",
    "grid_params",
    "parse_assignment",
    "read_params",
    "trial_id",
    "trials_from",
    "version_of",
]


class SourceError(ValueError):
    """A trial source cannot be read; the message names the file and line."""


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
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


def _jsonl(path: Path, lines: Iterable[str]) -> Iterator[dict[str, JsonValue]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
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


def trials_from(
    params: Iterable[dict[str, JsonValue]],
    *,
    experiment: str,
    slots: dict[str, int] | None = None,
    version: int = 1,
) -> Iterator[Trial]:
    """
    Trials with stable ids, made as ``params`` are read; a ``"id"`` key, if present, is the id.

    For an experiment version after the first, a given id gets ``-v<version>`` appended.
    Repeated ids are not looked for here (see ``TrialSource.check``).
    """
    for values in params:
        values = dict(values)
        given = values.pop("id", None)
        tid = str(given) if given is not None else trial_id(values, version)
        if given is not None and version > 1:
            tid = f"{tid}-v{version}"
        yield Trial(id=tid, params=values, experiment=experiment, slots=slots or {})
