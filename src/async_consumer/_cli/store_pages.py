"""Reading a large store a page at a time: the checks before a run, the summary after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Container, Mapping

from .._models import StoredTrial, TrialStatus
from .._ranking import best_trial
from ..stores import TrialStore

__all__ = ["PAGE", "Tally", "holds_only", "pages", "tally"]

PAGE = 1000
"""Trials read from the store at once."""

Tally = tuple[dict[TrialStatus, int], StoredTrial | None]
"""How many trials are in each status (all are keys), and the best completed one."""


async def pages(store: TrialStore, size: int = PAGE) -> AsyncIterator[list[StoredTrial]]:
    """
    The store's trials in the order they were added, a page each.

    Every trial, whatever its status: trials are only ever appended, so no page boundary moves
    while other workers change statuses (a list by status would shift under them: a trial that
    reaches that status meanwhile makes the next page repeat one).
    """
    offset = 0
    while page := await store.list(offset=offset, limit=size):
        yield page
        if len(page) < size:
            return
        offset += len(page)


def holds_only(counts: Mapping[TrialStatus, int], total: int | None) -> bool:
    """
    Whether a store with these counts holds ``total`` trials: a set of that many, all of them
    in the store, is then the store's every trial (trials are only ever appended).
    """
    return sum(counts.values()) == total


async def tally(
    store: TrialStore,
    wanted: Container[str] | None = None,
    *,
    maximize: bool = False,
    total: int | None = None,
) -> Tally:
    """
    The counts and the best trial among the store's trials (those in ``wanted``, if given).

    When every trial is wanted (``wanted`` not given, or the store holds ``total`` trials, as
    many as ``wanted`` has: only those, for none is ever removed), the store counts them and
    finds the best; else every trial is read, a page at a time.
    """
    counts = await store.counts()
    if wanted is not None and not holds_only(counts, total):
        return await _tally_read(store, wanted, maximize=maximize)
    return counts, await store.best(maximize=maximize)


async def _tally_read(store: TrialStore, wanted: Container[str], *, maximize: bool) -> Tally:
    """The counts and the best of the wanted trials, every trial read to find them."""
    counts = dict.fromkeys(TrialStatus, 0)
    best: StoredTrial | None = None
    async for page in pages(store):
        chosen = [t for t in page if t.id in wanted]
        for trial in chosen:
            counts[trial.status] += 1
        # the best so far first: of equal objectives, the first added wins, as in one list;
        # of the completed trials, as ``store.best`` ranks them
        done = [t for t in chosen if t.status is TrialStatus.COMPLETED]
        best = best_trial([*([best] if best else []), *done], maximize=maximize)
    return counts, best
