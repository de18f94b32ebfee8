"""A set of trial ids in little memory: 8 bytes an id, for files of any size."""

from __future__ import annotations

import heapq
import itertools
from array import array
from bisect import bisect_left
from collections.abc import Iterable

__all__ = ["IdSet"]


class IdSet:
    """
    Trial ids kept as their 64-bit hashes, sorted: a parameter file's ids without its strings.

    A Python set of 100,000 ids takes about 10 MB; this takes 0.8 MB. Two ids with the same hash
    are told apart by whoever asks (see ``repeats``): among the ids of one search, that happens
    about once in 10^9 searches of a million trials, and then costs a second look, nothing more.
    Membership is by hash alone: an id outside the set is taken for one inside it with a
    chance of one in 10^13 at a million ids.
    """

    def __init__(self) -> None:
        self._runs: list[array[int]] = []  # sorted runs, merged by ``seal``
        self._hashes: array[int] = array("q")

    def extend(self, trial_ids: Iterable[str]) -> None:
        """Add a batch of ids (a chunk of a file: kept as one sorted run until ``seal``)."""
        self._runs.append(array("q", sorted(hash(i) for i in trial_ids)))

    def seal(self) -> set[int]:
        """Merge what was added; return the hashes that were added more than once."""
        merged: array[int] = array("q", heapq.merge(self._hashes, *self._runs))
        self._runs.clear()
        self._hashes = merged
        return {a for a, b in itertools.pairwise(merged) if a == b}

    def __contains__(self, trial_id: object) -> bool:
        value = hash(trial_id)
        at = bisect_left(self._hashes, value)
        return at < len(self._hashes) and self._hashes[at] == value

    def __len__(self) -> int:
        return len(self._hashes) + sum(len(run) for run in self._runs)
