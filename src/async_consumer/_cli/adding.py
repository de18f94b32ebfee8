"""Adding a command's trials to its store, a chunk at a time, with what the run must report."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from .._models import TrialStatus
from ..stores import TrialStore
from .checked_trials import CheckedTrials
from .idset import IdSet

__all__ = ["Added", "add_in_chunks"]


@dataclasses.dataclass(slots=True)
class Added:
    """
    What adding a parameter set did.

    Attributes:
        ids: the set's trial ids (hashes), to tell its trials from the store's others (if counted).
        total: how many trials the set has.
        added: how many of them were new to the store.
        again: how many were made new again (``--rerun``).
        counts: the set's trials in each status once added (all statuses are keys).
    """

    ids: IdSet = dataclasses.field(default_factory=IdSet)
    total: int = 0
    added: int = 0
    again: int = 0
    counts: dict[TrialStatus, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(TrialStatus, 0)
    )


async def add_in_chunks(
    store: TrialStore,
    trials: CheckedTrials,
    *,
    version: int = 1,
    rerun: Collection[TrialStatus] = (),
    count: bool = True,
    together: int = 1,
) -> Added:
    """
    Add checked ``trials`` (ids of ``version``) a chunk at a time, those present left as they are.

    One transaction a chunk, so that a large file neither holds every trial in memory nor
    the store's write lock for seconds while other workers beat. Each chunk is all or none;
    a trial whose id the store already has with other parameters stops the adding there
    (``DuplicateTrial``), the chunks before it recorded: running the command again, fixed,
    finds them already there. A transaction takes ``together`` chunks. Without ``count``,
    ``Added.counts`` stays at zero and ``Added.ids`` empty (``add``, which reports neither).
    """
    done = Added()
    for chunk in trials.chunks(version, together):
        ids = [t.id for t in chunk]
        done.added += await store.add(chunk, exist_ok=True)
        if rerun:
            done.again += await store.rerun(ids, rerun)
        if count:
            for status, n in (await store.counts(ids)).items():
                done.counts[status] += n
            done.ids.extend(ids)
        done.total += len(ids)
    done.ids.seal()
    return done
