"""Reading a large store a page at a time: the checks before a run, the summary after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Container

from .._models import StoredTrial, TrialStatus
from .._ranking import best_trial
from ..stores import TrialStore

__all__ = ["PAGE", "Tally", "pages", "tally"]

PAGE = 1000
"""Trials read from the store at once."""

Tally = tuple[dict[TrialStatus, int], StoredTrial | None]
"""How many trials are in each status (all are keys), and the best completed one."""


async def pages(store: TrialStore, size: int = PAGE) -> AsyncIterator[list[StoredTrial]]:
    """
    The store's trials in the order they were added, a page each.

    Every trial, whatever its status: trials are only ever appended, so no page boundary moves
    while other workers change statuses (a list by status would shift under them).
    """
    offset = 0
    while page := await store.list(offset=offset, limit=size):
        yield page
        if len(page) < size:
            return
        offset += len(page)


async def tally(
    store: TrialStore, wanted: Container[str] | None = None, *, maximize: bool = False
) -> Tally:
    """The counts and the best trial among the store's trials (those in ``wanted``, if given)."""
    counts = dict.fromkeys(TrialStatus, 0)
    best: StoredTrial | None = None
    async for page in pages(store):
        chosen = [t for t in page if wanted is None or t.id in wanted]
        for trial in chosen:
            counts[trial.status] += 1
        # the best so far first: of equal objectives, the first added wins, as in one list
        best = best_trial([*([best] if best else []), *chosen], maximize=maximize)
    return counts, best
