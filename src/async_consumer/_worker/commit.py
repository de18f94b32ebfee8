"""
Group commit: the outcomes a worker's lanes record at about the same time go in one write.

A lane that records an outcome while no write is under way writes at once, alone; the outcomes
that come while a write is under way wait for it, then go together in the next one
(``finish_many``: one transaction, each outcome still fenced by its own lease). Nothing waits
for a batch to fill, so a lone outcome is not delayed, and a crash between two writes loses no
more than a crash between two single finishes: what was not written is an attempt whose lease
runs out, re-run like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from .._errors import LeaseLost
from .._models import Lease, Outcome, TrialStatus
from ..stores import Finish
from ..stores._retrying import RetryingStore

__all__ = ["GroupCommit"]


@dataclass(slots=True)
class _Waiting:
    finish: Finish
    written: anyio.Event = field(default_factory=anyio.Event)
    result: TrialStatus | Exception | None = None


class GroupCommit:
    """
    Records outcomes through ``store.finish_many``, those that arrive together in one write.

    Args:
        store: the worker's store, wrapped to wait out outages.
    """

    def __init__(self, store: RetryingStore) -> None:
        self.store = store
        self.writes = 0
        self._queue: list[_Waiting] = []
        self._writing = False

    async def finish(
        self, lease: Lease, outcome: Outcome, *, requeue: bool = False, hold: float = 0.0
    ) -> TrialStatus:
        """
        Record an attempt's outcome, as ``TrialStore.finish`` does.

        Shielded: once asked, the write happens even if the caller is cancelled meanwhile.

        Raises:
            LeaseLost: the lease moved on before the outcome was written.
        """
        mine = _Waiting(Finish(lease, outcome, requeue, hold))
        self._queue.append(mine)
        with anyio.CancelScope(shield=True):
            if self._writing:
                await mine.written.wait()
            else:
                await self._write_all()
        if isinstance(mine.result, Exception):
            raise mine.result.with_traceback(None)
        assert mine.result is not None
        return mine.result

    async def _write_all(self) -> None:
        """Write the queued outcomes, then those queued meanwhile, until none is left."""
        self._writing = True
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._write(batch)
        finally:
            self._writing = False
            left, self._queue = self._queue, []
            for waiting in left:  # only after a BaseException: the process is going down
                waiting.result = LeaseLost(waiting.finish.lease.trial_id, "not recorded")
                waiting.written.set()

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            results = await self.store.finish_many([waiting.finish for waiting in batch])
        except Exception as exc:  # noqa: BLE001 - each caller gets the error as its own
            for waiting in batch:
                waiting.result = exc
        else:
            for waiting, result in zip(batch, results, strict=True):
                waiting.result = result
        finally:
            self.writes += 1
            for waiting in batch:
                if waiting.result is None:  # a BaseException went through: nothing recorded
                    waiting.result = LeaseLost(waiting.finish.lease.trial_id, "not recorded")
                waiting.written.set()
