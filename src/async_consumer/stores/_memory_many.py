"""The memory store's batched calls: the single calls' work, done with no await in between."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence

import anyio.lowlevel

from .._errors import LeaseLost
from .._models import Lease, TrialStatus
from ._protocol import Finish
from ._rules import check_count, check_finishes

__all__ = ["MemoryBatches"]


class MemoryBatches:
    """
    ``reserve_many``, ``heartbeat_many`` and ``finish_many`` over a store's synchronous steps.

    Nothing awaits between the steps of one call, so no other task sees a batch half done: in
    one process, that is what a transaction is.
    """

    def _reserve(
        self,
        n: int,
        worker: str,
        *,
        host: str,
        skip: Collection[str],
        hold: bool,
        holder: str,
        suspects: bool,
    ) -> builtins.list[Lease]:
        raise NotImplementedError  # pragma: no cover - the store's own step

    def _beat(self, lease: Lease) -> None:
        raise NotImplementedError  # pragma: no cover - the store's own step

    def _finish(self, item: Finish) -> TrialStatus:
        raise NotImplementedError  # pragma: no cover - the store's own step

    async def reserve_many(
        self,
        worker: str,
        n: int,
        *,
        host: str = "",
        skip: Collection[str] = (),
        hold: bool = True,
        holder: str = "",
        suspects: bool = True,
    ) -> builtins.list[Lease]:
        """Lease up to ``n`` trials at once; see ``TrialStore.reserve_many``."""
        check_count(n)
        await anyio.lowlevel.checkpoint()
        return self._reserve(
            n, worker, host=host, skip=skip, hold=hold, holder=holder, suspects=suspects
        )

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Renew the leases still current; see ``TrialStore.heartbeat_many``."""
        if not leases:
            return []
        await anyio.lowlevel.checkpoint()
        lost = []
        for lease in leases:
            try:
                self._beat(lease)
            except LeaseLost:
                lost.append(lease.trial_id)
        return lost

    async def finish_many(self, items: Sequence[Finish]) -> builtins.list[TrialStatus | LeaseLost]:
        """Record several outcomes at once; see ``TrialStore.finish_many``."""
        check_finishes(items)
        if not items:
            return []
        await anyio.lowlevel.checkpoint()
        answers: builtins.list[TrialStatus | LeaseLost] = []
        for item in items:
            try:
                answers.append(self._finish(item))
            except LeaseLost as exc:  # a repeat of an item of this batch is lost too
                answers.append(exc)
        return answers
