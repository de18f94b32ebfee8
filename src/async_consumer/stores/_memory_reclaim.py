"""How a memory store's leases end without a finish: reclaimed (the holder is gone or silent),
or undone (the attempt never started)."""

from __future__ import annotations

import builtins
import heapq
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

import anyio.lowlevel

from .._models import Lease, Outcome, TrialStatus
from ._memory_record import Record
from ._protocol import HeldLease
from ._rules import PENDING, check_older_than, gone_outcome, settle, stalled_outcome

__all__ = ["MemoryReclaims"]


class MemoryReclaims:
    """``reclaim_leases``, ``reclaim_stale`` and ``unreserve`` of the memory store."""

    _max_lost: int
    _records: dict[str, Record]
    _pending: builtins.list[tuple[int, str]]

    async def reclaim_leases(self, leases: Sequence[HeldLease], message: str) -> builtins.list[str]:
        """Interrupt these leases if still current; see ``TrialStore.reclaim_leases``."""
        await anyio.lowlevel.checkpoint()
        taken = []
        for trial_id, token, _ in leases:
            record = self._records.get(trial_id)
            if record and record.status is TrialStatus.RESERVED and record.token == token:
                self._settle(record, gone_outcome(trial_id, len(record.attempts), message))
                taken.append(trial_id)
        return taken

    def _settle(self, record: Record, outcome: Outcome, requeue: bool = False) -> None:
        record.end_attempt(outcome)
        record.status, record.lost_count = settle(
            outcome.status, record.lost_count, self._max_lost, requeue, outcome.reason
        )
        if record.status in PENDING:
            heapq.heappush(self._pending, (record.seq, record.trial.id))

    async def reclaim_stale(
        self, older_than: float, *, spare: str = "", alive: Collection[str] = ()
    ) -> builtins.list[str]:
        """Interrupt reserved trials whose heartbeat is too old; see ``TrialStore.reclaim_stale``."""
        await anyio.lowlevel.checkpoint()
        limit = datetime.now(UTC) - timedelta(seconds=check_older_than(older_than))
        stale = [
            record
            for record in self._records.values()
            if record.status is TrialStatus.RESERVED
            and record.heartbeat_at is not None
            and record.heartbeat_at <= limit
            and not (spare and record.holder == spare)
        ]
        for record in stale:
            ran = record.holder in alive
            number = len(record.attempts)
            self._settle(record, stalled_outcome(record.trial.id, number, older_than, ran))
        return [record.trial.id for record in stale]

    async def unreserve(self, lease: Lease) -> bool:
        """Undo a reservation that never started; see ``TrialStore.unreserve``."""
        await anyio.lowlevel.checkpoint()
        record = self._records.get(lease.trial_id)
        if record is None or record.status is not TrialStatus.RESERVED:
            return False
        if record.token != lease.token:
            return False
        record.token -= 1
        record.attempts.pop()
        record.status = TrialStatus.INTERRUPTED if record.attempts else TrialStatus.NEW
        heapq.heappush(self._pending, (record.seq, record.trial.id))
        return True
