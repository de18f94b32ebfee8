"""
The trials of a parameter set once checked, kept on disk until they are added.

Checking a file reads, parses and gives an id to every line; adding it used to do all of that
again. The check writes what it found instead, a chunk at a time, to an unnamed temporary file
(``marshal``: a fraction of the cost of parsing and hashing again), and the adding reads it: the
store gets exactly the trials that were checked, even if the file changes in between, and
memory still follows the chunk, not the file (the disk holds about the file's size).
"""

from __future__ import annotations

import marshal
import tempfile
from collections.abc import Iterator
from types import TracebackType
from typing import Self, cast

from pydantic import JsonValue

from .._models import Trial
from .trial_params import SourceError, TrialMaker, id_at

__all__ = ["CheckedTrials", "Row"]

Row = tuple[str, str | None, dict[str, JsonValue]]
"""A checked trial: its id (of the first version), its given id (if any), its parameters."""

_SIZE = 8
"""Bytes of the length before each chunk."""


class CheckedTrials:
    """
    Every trial of a parameter set, checked, in order: what ``TrialSource.check`` returns.

    A context manager: leaving it (or ``close``) frees the disk it takes.
    """

    def __init__(self, experiment: str, slots: dict[str, int]) -> None:
        self._experiment = experiment
        self._slots = slots
        # open until ``close``: the object is the context manager the file's lifetime follows
        self._file = tempfile.TemporaryFile(prefix="async-consumer-checked-")  # noqa: SIM115
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def write(self, rows: list[Row]) -> None:
        """Keep a chunk of checked trials."""
        # one read of a known length back, not ``marshal.load``'s read call for each value
        data = marshal.dumps(rows)
        self._file.write(len(data).to_bytes(_SIZE) + data)
        self._count += len(rows)

    def rows(self) -> Iterator[list[Row]]:
        """The chunks as written."""
        self._file.seek(0)
        while size := int.from_bytes(self._file.read(_SIZE)):
            yield cast("list[Row]", marshal.loads(self._file.read(size)))

    def chunks(self, version: int, together: int = 1) -> Iterator[list[Trial]]:
        """The trials, ``together`` kept chunks at a time, with the ids of ``version``."""
        maker = TrialMaker(self._experiment, self._slots)
        batch: list[Trial] = []
        for number, rows in enumerate(self.rows(), start=1):
            batch += [
                maker.make(tid if version == 1 else id_at(given, params, version), params)
                for tid, given, params in rows
            ]
            if number % together == 0:
                yield batch
                batch = []
        if batch:
            yield batch

    def find_repeat(self, hashes: set[int]) -> None:
        """
        Name the first trial that repeats an earlier one (among ids of these hashes), if any.

        Raises:
            SourceError: one does.
        """
        seen: set[str] = set()
        number = 0
        for rows in self.rows():
            for tid, _, _ in rows:
                number += 1
                if hash(tid) not in hashes:
                    continue
                if tid in seen:
                    msg = f"trial {number} repeats the parameters (or id) of an earlier one: {tid}"
                    raise SourceError(msg)
                seen.add(tid)

    def close(self) -> None:
        """Free the disk the trials take (again: nothing)."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
