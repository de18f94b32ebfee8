"""
Named resources (GPU ids) handed to trials: each slot to one trial at a time.

Trials are served first come, first served, and a trial that waits for slots holds back those
behind it (no backfill): with backfill, a stream of one-GPU trials could keep a four-GPU trial
waiting for ever. Among free slots, the least used so far are handed out first, so that wear and
warm caches spread evenly.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from types import MappingProxyType

import anyio

from ._errors import SlotError

__all__ = ["SlotPool", "slot_environment"]


def slot_environment(granted: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """``CUDA_VISIBLE_DEVICES`` for GPUs, ``ASYNC_CONSUMER_SLOTS_<KIND>`` for every kind."""
    env = {f"ASYNC_CONSUMER_SLOTS_{kind.upper()}": ",".join(ids) for kind, ids in granted.items()}
    if "gpu" in granted:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(granted["gpu"])
    return env


_NO_SLOTS: AbstractAsyncContextManager[Mapping[str, tuple[str, ...]]] = nullcontext(
    MappingProxyType({})
)


class SlotPool:
    """The slots of a consumer, e.g. ``{"gpu": ["0", "1", "2", "3"]}``."""

    def __init__(self, slots: Mapping[str, Sequence[str]]) -> None:
        self.slots = {kind: tuple(ids) for kind, ids in slots.items()}
        for kind, ids in self.slots.items():
            if len(set(ids)) != len(ids):
                msg = f"slots of kind {kind!r} must be distinct: {list(ids)}"
                raise ValueError(msg)
        self._free = {kind: set(ids) for kind, ids in self.slots.items()}
        self._uses: Counter[tuple[str, str]] = Counter()
        self._waiters: deque[tuple[Mapping[str, int], anyio.Event]] = deque()

    def check(self, demand: Mapping[str, int]) -> None:
        """
        Raise :class:`SlotError` if the demand can never be met.

        Raises:
            SlotError: a kind is unknown, or more slots are asked for than exist.
        """
        for kind, count in demand.items():
            have = len(self.slots.get(kind, ()))
            if count > have:
                msg = f"asks for {count} {kind!r} slot(s) but the consumer has {have}"
                raise SlotError(msg)

    def _fits(self, demand: Mapping[str, int]) -> bool:
        return all(len(self._free[kind]) >= n for kind, n in demand.items() if n)

    def _take(self, demand: Mapping[str, int]) -> dict[str, tuple[str, ...]]:
        granted: dict[str, tuple[str, ...]] = {}
        for kind, count in demand.items():
            if count:
                order = self.slots[kind]
                ranked = sorted(
                    self._free[kind], key=lambda s: (self._uses[kind, s], order.index(s))
                )
                granted[kind] = tuple(ranked[:count])
                self._free[kind].difference_update(granted[kind])
                self._uses.update((kind, s) for s in granted[kind])
        return granted

    def _wake(self) -> None:
        if self._waiters and self._fits(self._waiters[0][0]):
            self._waiters[0][1].set()

    def acquire(
        self, demand: Mapping[str, int]
    ) -> AbstractAsyncContextManager[Mapping[str, tuple[str, ...]]]:
        """Wait for the demanded slots, hold them for the block, then give them back."""
        self.check(demand)
        if not any(demand.values()):
            return _NO_SLOTS  # most trials: nothing to wait for, nothing to allocate
        return self._acquire(demand)

    @asynccontextmanager
    async def _acquire(
        self, demand: Mapping[str, int]
    ) -> AsyncIterator[dict[str, tuple[str, ...]]]:
        if self._waiters or not self._fits(demand):
            entry = (demand, anyio.Event())
            self._waiters.append(entry)
            try:
                self._wake()
                await entry[1].wait()
            except BaseException:
                self._waiters.remove(entry)
                self._wake()  # a cancelled head must not block the next waiter
                raise
            self._waiters.remove(entry)
        granted = self._take(demand)
        self._wake()
        try:
            yield granted
        finally:
            for kind, ids in granted.items():
                self._free[kind].update(ids)
            self._wake()
