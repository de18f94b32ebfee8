"""
A worker's lanes, coordinated: they reserve together, idle together, and leave together.

Lanes asking for a trial at the same time are served by one reservation (see
:meth:`Leasing.reserve`); lanes with nothing to reserve do not each poll the store: one of them
does for them all (see :meth:`Leasing.idle`); and lanes that may leave share one count of the
store (see :meth:`Leasing.is_drained`). Ten thousand lanes thus cost the store and the event loop
about what one costs. Which trials may be reserved at all is decided beside: suspects run one at
a time (:mod:`.alone`), and a host that cannot create trials' files pauses every lane
(:mod:`.file_faults`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Self

import anyio

from .._errors import TrialFilesError
from .._models import Lease, TrialStatus
from ..stores import Reservation, TrialStore
from .alive import clear_loss
from .alone import Alone
from .file_faults import FileFaults

__all__ = ["Lane", "Leasing"]

logger = logging.getLogger("async_consumer")


class Leasing:
    """
    Reserves trials for a worker's lanes and gives back those this host could not start.

    Args:
        store: the worker's store (one that waits out outages).
        name: the worker's name.
        host: the worker's host.
        holder: the worker's process, as its leases name it (``host/pid/start``).
        file_faults: the host's file faults, which pause every lane (default: a fresh count).
        on_reserved: told the leases of each reservation, and when (``anyio.current_time``)
            it was asked for: their heartbeats count from then.
    """

    empty_for = 0.2
    """Seconds the lanes take a store that had no trial for them as still empty."""

    def __init__(
        self,
        store: TrialStore,
        name: str,
        host: str,
        holder: str,
        file_faults: FileFaults | None = None,
        on_reserved: Callable[[Sequence[Lease], float], None] | None = None,
    ) -> None:
        self.store = store
        self._on_reserved = on_reserved
        self.name = name
        self.host = host
        self.holder = holder
        self.file_faults = file_faults or FileFaults()
        self.holding: dict[tuple[str, int], Lease] = {}
        """The leases reserved and not yet done, by (trial id, token)."""
        self.by_id: dict[str, Lease] = {}
        """The same, by trial id (the newest lease of a trial reserved again meanwhile)."""
        self._alone = Alone()
        self._reserving = anyio.Lock()
        self._asking = 0
        """Lanes asking for a lease now."""
        self._ready: deque[Lease] = deque()
        """Leases reserved for a lane that has not taken them yet."""
        self._empty_until = 0.0
        """No lane asks the store again before this time: it had nothing."""
        self._counting = anyio.Lock()
        self._counted: _Counts | None = None
        self._poller: Lane | None = None
        """The idle lane that polls for the others."""
        self._polled = anyio.Event()
        """Set when the poller stops idling: the others look again."""
        self._nudged = anyio.Event()
        """Set to make the poller look at once."""

    async def reserve(
        self,
        skip: Collection[str] = (),
        hold: bool = True,
        stop: Callable[[], bool] = bool,
        lane: Lane | None = None,
    ) -> Lease | None:
        """
        A lease on the next trial this worker may run now (``None``: nothing for it now).

        ``skip`` and ``hold`` are passed on to the store; ``stop()`` true (the worker halted
        while the lane waited for its turn): nothing. Lanes asking together are served by
        one reservation: the first reserves for every lane then waiting (with at most one
        suspect, and none while one runs here). ``lane`` (from :meth:`lane`), given a
        lease, stops idling (:meth:`busy`).
        """
        await self.file_faults.wait()
        if anyio.current_time() < self._empty_until:
            return None  # the store had nothing a moment ago: a thousand idle lanes ask once
        self._asking += 1
        try:
            async with self._reserving:
                if stop():  # each reservation is an attempt: none for a lane that will not run it
                    return None
                if not self._ready:
                    await self._reserve_for(self._asking, skip, hold)
                if not self._ready:
                    self._empty_until = anyio.current_time() + self.empty_for
                    return None
                self.busy(lane)
                return self._ready.popleft()
        finally:
            self._asking -= 1

    async def idle(self, lane: Lane, poll: float) -> None:
        """
        Wait before ``lane``, which found nothing to reserve, looks again.

        One idle lane, the poller, looks every ``poll`` seconds (at once after a :meth:`nudge`);
        the others wait until it stops idling (:meth:`busy`: it got a trial, or left because the
        store was drained or the worker halted), then look again together (one reservation, one
        count for them all). Ten thousand idle lanes thus cost the store and the event loop what
        one lane costs.
        """
        if self._poller is None or self._poller is lane:
            self._poller = lane
            with anyio.move_on_after(poll):
                await self._nudged.wait()
        else:
            await self._polled.wait()

    def nudge(self) -> None:
        """The idle lanes look again now, not at the next poll (a lane found the store drained)."""
        self._nudged.set()
        self._nudged = anyio.Event()

    def news(self) -> None:
        """Trials were put back in the store (stale leases reclaimed): the idle lanes ask now."""
        self._empty_until = 0.0
        self.nudge()

    def lane(self) -> Lane:
        """A lane's token for :meth:`idle` and :meth:`busy` (with it, the lane stops idling)."""
        return Lane(self)

    def busy(self, lane: Lane | None) -> None:
        """``lane`` stops idling (it got a trial, or leaves): if it polled, the others look again."""
        if lane is not None and self._poller is lane:
            self._poller = None
            self._polled.set()
            self._polled = anyio.Event()

    async def _reserve_for(self, lanes: int, skip: Collection[str], hold: bool) -> None:
        """
        Reserve for ``lanes`` lanes into ``_ready``: one when the worker holds nothing (its
        first trial starts at once), and suspects only while none runs here, one at a time.
        """
        idle = not self.holding
        request = Reservation(self.host, skip, hold, self.holder, suspects=self._alone.may_take)
        asked_at = anyio.current_time()
        reserved = await self.store.reserve_many(self.name, 1 if idle else lanes, request)
        if self._on_reserved is not None and reserved:
            self._on_reserved(reserved, asked_at)
        # suspects come first (the oldest trials): all but one go back for other workers
        leases, extra = self._alone.first_suspect(reserved)
        self.holding.update(((lease.trial_id, lease.token), lease) for lease in leases)
        self.by_id.update((lease.trial_id, lease) for lease in leases)
        self._ready.extend(leases)
        for lease in extra:
            await self._unreserve(lease)

    async def release(self) -> None:
        """Hand back the leases reserved for lanes that stopped before taking them."""
        while self._ready:
            lease = self._ready.popleft()
            await self.hand_back(lease, "its worker stopped before starting it")
            self.done(lease)

    def done(self, lease: Lease) -> None:
        """The lease's attempt has ended (recorded or not): another may be reserved."""
        self.holding.pop((lease.trial_id, lease.token), None)
        if self.by_id.get(lease.trial_id) is lease:
            del self.by_id[lease.trial_id]
        self._alone.done(lease)

    async def hand_back(self, lease: Lease, why: str) -> None:
        """Give back a trial whose attempt never started, its attempt number with it (unused)."""
        await self._unreserve(lease)
        logger.info("given back, not started: %s", why, extra={"trial_id": lease.trial_id})

    async def give_back(self, lease: Lease, exc: TrialFilesError) -> None:
        """
        Hand back a trial this host could not start, without counting a loss; pause the lanes.

        Raises:
            TrialFilesError: the ``file_faults`` limit reached, failures in a row.
        """
        await self._unreserve(lease)
        self.file_faults.failed(lease, exc, "trial given back")

    async def _unreserve(self, lease: Lease) -> None:
        """
        Undo the lease's reservation (shielded: once asked, it is done even if cancelled); if
        the lease moved on meanwhile, clear the loss the store counted when it took it.
        """
        with anyio.CancelScope(shield=True):
            undone = await self.store.unreserve(lease)
        if not undone:
            await clear_loss(self.store, lease)

    async def may_leave(self, interrupted: Collection[str] = ()) -> bool:
        """
        Whether a lane that found nothing to reserve may leave; if so, the idle lanes look too.

        It may when none of this worker's trials is running (they may come back to the queue)
        and the store is drained. The idle lanes then look at once: one count for them all, not
        one a lane as each trial ends.
        """
        if self.holding or not await self.is_drained(interrupted):
            return False
        self.nudge()
        return True

    async def is_drained(self, interrupted: Collection[str] = ()) -> bool:
        """
        Whether no trial is left for this lane (``interrupted``: those the worker will not start).

        The trials this worker runs itself are not waiting for the lane: the lane whose trial
        comes back to the queue (a retry) is still there to run it again.
        """
        counts = await self._counts()
        waiting = (TrialStatus.NEW, TrialStatus.INTERRUPTED, TrialStatus.RESERVED)
        left = sum(counts.get(status, 0) for status in waiting) - len(self.holding)
        if interrupted and left > 0:
            # the trials this worker will not start again are not waiting for it
            mine = await self.store.counts(interrupted)
            left -= mine[TrialStatus.INTERRUPTED]
        return left <= 0

    async def _counts(self) -> dict[TrialStatus, int]:
        """
        The store's counts, taken at most ``empty_for`` seconds before this call began.

        Lanes asking together share one query. Safe for :meth:`is_drained`: a trial this worker
        has since reserved counts as waiting and is held, one it ended still counts as waiting
        (a lane idles, never leaves too soon); other processes' changes are seen ``empty_for``
        seconds late, as :meth:`reserve` sees them after the store had nothing.
        """
        oldest = anyio.current_time() - self.empty_for
        async with self._counting:
            if self._counted is not None and self._counted.taken_at >= oldest:
                return self._counted.counts
            began = anyio.current_time()
            counts = await self.store.counts()
            self._counted = _Counts(began, counts)
            return counts


@dataclass(frozen=True, slots=True)
class _Counts:
    """The store's counts of trials by status, and when (by anyio's clock) they were taken."""

    taken_at: float
    counts: dict[TrialStatus, int]


class Lane:
    """A lane of a worker, to its leasing; leaving its ``with`` block, it stops idling."""

    __slots__ = ("_leasing",)  # ten thousand lanes: no dict each

    def __init__(self, leasing: Leasing) -> None:
        self._leasing = leasing

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._leasing.busy(self)
