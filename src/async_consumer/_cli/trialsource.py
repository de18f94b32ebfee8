"""
The trials of ``--params`` and ``--grid``, read afresh on each pass and never held all at once.

A command reads its parameter file twice: a first pass checks every line (its JSON or CSV, that
no trial repeats another, that the command can be rendered for it) before anything is recorded,
and a second adds the trials to the store in chunks of :data:`CHUNK`. Memory follows the chunk,
not the file: a 100,000-line file costs 8 bytes a line (the ids' hashes) beyond one chunk.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from collections.abc import Callable, Iterator

from .._models import Trial
from .checks import UsageError
from .described import slot_demand
from .idset import IdSet
from .sources import SourceError, grid_params, read_params, trials_from

__all__ = ["CHUNK", "TrialSource"]

CHUNK = 1000
"""Trials read, checked or added together: one ``store.add`` transaction."""


@dataclasses.dataclass(frozen=True, slots=True)
class TrialSource:
    """
    Where a command's trials come from: its ``--params`` file, then its ``--grid``.

    Attributes:
        params: the parameter file, if one was given.
        grid: the ``--grid NAME=V1,V2`` options.
        experiment: the trials' experiment.
        slots: the slots each trial asks for.
        version: the experiment's version (it changes the trials' ids).
    """

    params: str | None
    grid: tuple[str, ...]
    experiment: str
    slots: dict[str, int]
    version: int = 1

    @classmethod
    def of(cls, args: argparse.Namespace) -> TrialSource:
        """
        The source a command's options give; the ``--grid`` options are checked now.

        Raises:
            UsageError: neither ``--params`` nor ``--grid`` was given.
            SourceError: a ``--grid`` option is malformed.
        """
        if not args.params and not args.grid:
            raise UsageError(_NO_TRIALS)
        grid = tuple(args.grid or ())
        grid_params(grid)
        demand = slot_demand(args.slots_per_trial, getattr(args, "slots", []))
        return cls(args.params, grid, args.experiment, demand)

    def at_version(self, version: int) -> TrialSource:
        """The same trials, with the ids of the experiment's ``version``."""
        return dataclasses.replace(self, version=version)

    def __iter__(self) -> Iterator[Trial]:
        from_file = read_params(self.params) if self.params else iter(())
        params = itertools.chain(from_file, grid_params(self.grid) if self.grid else ())
        return trials_from(
            params, experiment=self.experiment, slots=self.slots, version=self.version
        )

    def chunks(self, size: int = CHUNK) -> Iterator[list[Trial]]:
        """The trials, ``size`` at a time."""
        trials = iter(self)
        while chunk := list(itertools.islice(trials, size)):
            yield chunk

    def check(self, check: Callable[[Trial], None] = lambda trial: None) -> int:
        """
        Read every trial once, each passed to ``check``; return how many there are.

        Raises:
            SourceError: a line is malformed, or a trial repeats an earlier one's parameters.
            UsageError: there are no trials at all.
        """
        ids = IdSet()
        for chunk in self.chunks():
            for trial in chunk:
                check(trial)
            ids.extend(t.id for t in chunk)
        if not len(ids):
            raise UsageError(_NO_TRIALS)
        repeats = ids.seal()
        if repeats:
            self._find_repeat(repeats)
        return len(ids)

    def _find_repeat(self, hashes: set[int]) -> None:
        """Name the first trial that repeats an earlier one (among ids of these hashes), if any."""
        seen: set[str] = set()
        for number, trial in enumerate(self, start=1):
            if hash(trial.id) not in hashes:
                continue
            if trial.id in seen:
                msg = f"trial {number} repeats the parameters (or id) of an earlier one: {trial.id}"
                raise SourceError(msg)
            seen.add(trial.id)


_NO_TRIALS = "no trials: give --params FILE (.jsonl or .csv) or --grid NAME=V1,V2"
