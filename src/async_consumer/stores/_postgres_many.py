"""The PostgreSQL store's batched calls: one statement each, whatever the size of the batch."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from .._errors import LeaseLost
from .._models import Lease, Status, TrialStatus
from ._protocol import Finish
from ._rows import load_trial, new_lease
from ._rules import check_count, check_finishes, not_renewed, settled_status, unique_leases

__all__ = ["PostgresBatches"]


class PostgresBatches:
    """
    ``reserve_many``, ``heartbeat_many`` and ``finish_many`` for a store in PostgreSQL.

    Each is one statement over arrays (``unnest``): one round trip and one commit for the
    batch. Beats and finishes lock their rows in the order of the trials' ids first.
    """

    _q: dict[str, str]
    _max_lost: int

    def _connection(self) -> AbstractAsyncContextManager[Any]:
        raise NotImplementedError  # pragma: no cover - the store's own pool

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
        args = (worker, host, builtins.list(skip), hold, holder, suspects, check_count(n))
        async with self._connection() as conn:
            rows = await conn.fetch(self._q["reserve_many"], *args)
        return [
            new_lease(load_trial(text, token), token, worker, lost) for text, token, lost in rows
        ]

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Renew the leases still current; see ``TrialStore.heartbeat_many``."""
        if not leases:
            return []
        ids, tokens = [lease.trial_id for lease in leases], [lease.token for lease in leases]
        async with self._connection() as conn:
            rows = await conn.fetch(self._q["beat_many"], ids, tokens)
        return not_renewed(leases, {(trial_id, token) for trial_id, token in rows})

    async def finish_many(self, items: Sequence[Finish]) -> builtins.list[TrialStatus | LeaseLost]:
        """Record several outcomes at once; see ``TrialStore.finish_many``."""
        check_finishes(items)
        if not items:
            return []
        # a repeat of a lease in the batch is sent once: the statement would apply one at random
        firsts = [items[place] for place in unique_leases(items)]
        async with self._connection() as conn:
            rows = await conn.fetch(self._q["finish_many"], *_columns(firsts, self._max_lost))
        done = {(trial_id, token): TrialStatus(status) for trial_id, token, status in rows}
        answers: builtins.list[TrialStatus | LeaseLost] = []
        for item in items:
            status = done.pop((item.lease.trial_id, item.lease.token), None)
            answers.append(LeaseLost(item.lease.trial_id) if status is None else status)
        return answers


def _columns(items: Sequence[Finish], max_lost: int) -> tuple[object, ...]:
    """The arrays (and ``max_lost``) of the ``finish_many`` statement, in its parameters' order."""
    return (
        [item.lease.trial_id for item in items],
        [item.lease.token for item in items],
        max_lost,
        [int(item.outcome.status is Status.LOST) for item in items],
        [
            settled_status(item.outcome.status, item.requeue, item.outcome.reason).value
            for item in items
        ],
        [item.outcome.model_dump_json() for item in items],
        [float(item.hold) for item in items],
    )
