"""
The trials of ``--params`` and ``--grid``, read once, checked whole, never held all at once.

A command checks every line of its parameter file (its JSON or CSV, that no trial repeats
another, that the command can be rendered for it) before anything is recorded, keeping the
checked trials on disk (:class:`~.checked_trials.CheckedTrials`); they are then added to the store in
chunks of :data:`CHUNK`, without reading the file again. Memory follows the chunk, not the
file: a 100,000-line file costs 8 bytes a line (the ids' hashes) beyond one chunk.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from collections.abc import Callable, Iterator

from pydantic import JsonValue

from .._models import Trial
from .checked_trials import CheckedTrials
from .consumer_setup import slot_demand
from .idset import IdSet
from .trial_params import TrialMaker, grid_params, id_at, read_params
from .usage_checks import UsageError

__all__ = ["CHUNK", "TrialSource"]

CHUNK = 1000
"""Trials read, checked or kept together; one ``store.add`` transaction in a run (``add``: five)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TrialSource:
    """
    Where a command's trials come from: its ``--params`` file, then its ``--grid``.

    Attributes:
        params: the parameter file, if one was given.
        grid: the ``--grid NAME=V1,V2`` options.
        experiment: the trials' experiment.
        slots: the slots each trial asks for.
    """

    params: str | None
    grid: tuple[str, ...]
    experiment: str
    slots: dict[str, int]

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

    def _given(self) -> Iterator[tuple[str | None, dict[str, JsonValue]]]:
        """Each trial's given id (its ``"id"`` key, if any) and its other parameters, in order."""
        from_file = read_params(self.params) if self.params else iter(())
        # each a fresh dict from its reader: taking the id out of it touches nothing else
        for values in itertools.chain(from_file, grid_params(self.grid) if self.grid else ()):
            given = values.pop("id", None)
            yield (None if given is None else str(given)), values

    def check(self, check: Callable[[Trial], None] | None = None) -> CheckedTrials:
        """
        Read and check every trial once, each passed to ``check`` if given; keep them to add.

        The caller closes what this returns (a context manager) once the trials are added.

        Raises:
            SourceError: a line is malformed, or a trial repeats an earlier one's parameters.
            UsageError: there are no trials at all.
            pydantic.ValidationError: a line is not a valid trial (an empty id, say).
        """
        checked = CheckedTrials(self.experiment, self.slots)
        try:
            # the ids' hashes only while checking: a run does not keep them (nor their peak)
            repeats = self._check_into(checked, check).seal()
            if not len(checked):
                empty = f"no trials: {self.params} holds none (one JSON object a line, or CSV rows)"
                raise UsageError(empty if self.params else _NO_TRIALS)
            if repeats:
                checked.find_repeat(repeats)
        except BaseException:
            checked.close()
            raise
        return checked

    def _check_into(self, checked: CheckedTrials, check: Callable[[Trial], None] | None) -> IdSet:
        """Check and keep every trial in ``checked``; return their ids."""
        maker = TrialMaker(self.experiment, self.slots)
        ids = IdSet()
        given = self._given()
        while chunk := list(itertools.islice(given, CHUNK)):
            rows = [(id_at(g, params, 1), g, params) for g, params in chunk]
            for tid, _, params in rows:
                if check is None:
                    maker.check(tid, params)
                else:
                    check(maker.make(tid, params))
            checked.write(rows)
            ids.extend(tid for tid, _, _ in rows)
        return ids


_NO_TRIALS = "no trials: give --params FILE (.jsonl or .csv) or --grid NAME=V1,V2"
