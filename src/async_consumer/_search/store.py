"""
A worker's store that a search keeps filled: where nothing waits, the search suggests a trial.

:class:`SearchingStore` is the worker's retrying store (a :class:`RetryingStore`) with a
search behind it: a reservation that finds nothing to lease has the search add its next trial,
and leases that, until the search has its ``n`` trials; every lease's trial is followed by the
search's pruner; every recorded outcome is told to the sampler, once the values its trial
reported here are in the store (so that whoever reads it finished reads its whole curve); and
the worker's own beat carries the values its trials reported, and brings back the others'. The worker itself is unchanged:
to it, the store simply does not run dry before the search is complete.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._errors import LeaseLost
from .._fleet import WorkerInfo
from .._models import Lease, Outcome, Reason, Status, TrialStatus
from ..stores import TrialStore
from ..stores._outage import Outage
from ..stores._protocol import Finish, Reservation
from ..stores._retrying import RetryingStore

if TYPE_CHECKING:
    from .search import Search

__all__ = ["SearchingStore"]

_FOR_GOOD = (Status.COMPLETED, Status.BROKEN)


class SearchingStore(RetryingStore):
    """
    A :class:`RetryingStore` whose reservations a search refills (``search`` ``None``: none).

    Args:
        store: the store of the experiment.
        outage: the reachability state to share.
        search: the search to suggest trials and follow them (may be set later).
    """

    def __init__(
        self, store: TrialStore, *, outage: Outage | None = None, search: Search | None = None
    ) -> None:
        super().__init__(store, outage=outage)
        self.search = search

    async def reserve_many(
        self, worker: str, n: int, request: Reservation = Reservation()
    ) -> builtins.list[Lease]:
        """
        Lease up to ``n`` trials, the search's next ones where too few wait; its pruner is
        brought up to date before they start.
        """
        leases = await super().reserve_many(worker, n, request)
        while len(leases) < n and self.search is not None and await self.search.suggest():
            leases += await super().reserve_many(worker, n - len(leases), request)
        if self.search is not None and leases:
            for lease in leases:
                self.search.adopt(lease)
            await self.search.share()  # its pruner knows every trial finished so far
        return leases

    async def record_worker(self, worker: WorkerInfo, *, starting: bool = False) -> None:
        """Record the worker's beat, and with it share the search's values (see ``Search.share``)."""
        await super().record_worker(worker, starting=starting)
        if self.search is not None and not starting:
            await self.search.share()

    async def finish(
        self, lease: Lease, outcome: Outcome, *, requeue: bool = False, hold: float = 0.0
    ) -> TrialStatus:
        """Record an outcome (after its trial's values), and tell the search how it ended."""
        if self.search is not None:
            await self.search.flush()
        status = await super().finish(lease, outcome, requeue=requeue, hold=hold)
        if not requeue:
            await self._ended([(lease, outcome)])
        return status

    async def finish_many(self, items: Sequence[Finish]) -> builtins.list[TrialStatus | LeaseLost]:
        """Record outcomes (after their trials' values), and tell the search how they ended."""
        if self.search is not None:
            await self.search.flush()
        answers = await super().finish_many(items)
        ended = [
            (item.lease, item.outcome)
            for item, answer in zip(items, answers, strict=True)
            if not (isinstance(answer, LeaseLost) or item.requeue)
        ]
        await self._ended(ended)
        return answers

    async def _ended(self, ended: builtins.list[tuple[Lease, Outcome]]) -> None:
        """
        Tell the search how these trials ended; for each that ended for good, suggest the next
        trial now: the lane the next free place goes to then finds it waiting, and starts it
        without waiting for the sampler (a spare, off the path from one script to the next).
        """
        if self.search is None:
            return
        for lease, outcome in ended:
            self.search.ended(outcome, lease.trial.params)
            if outcome.status in _FOR_GOOD or outcome.reason is Reason.PRUNED:
                await self.search.suggest()
