"""A worker's presence in its store: registered when it starts, beaten on a timer, gone when it leaves."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from .._fleet import WorkerInfo, WorkerState
from ..stores import TrialStore

__all__ = ["Presence"]

logger = logging.getLogger("async_consumer")

_RECORD_BOUND = 5.0
"""The longest one record of the worker may take (a store that does not answer)."""


class Presence:
    """
    Keeps a worker's row in the store's ``workers`` table current, for ``status`` to show.

    A store that fails for a moment costs a warning, never the worker: its trials' own
    heartbeats are what keep their leases.

    Args:
        store: the worker's store.
        snapshot: the worker as it is now (trials running, state).
        interval: seconds between two beats.
    """

    def __init__(
        self, store: TrialStore, snapshot: Callable[[], WorkerInfo], interval: float
    ) -> None:
        self.store = store
        self.snapshot = snapshot
        self.interval = interval
        self._warned = False

    async def record(self, *, starting: bool = False, state: WorkerState | None = None) -> None:
        """Record the worker now (``starting``: register it afresh); a failure is logged once."""
        worker = self.snapshot()
        if state is not None:
            worker = worker.model_copy(update={"state": state})
        try:
            # shielded: the last record ("exited") is written while the worker is being
            # cancelled; bounded: a worker told to leave must be gone before Slurm's KillWait
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + min(self.interval, _RECORD_BOUND)
                await self.store.record_worker(worker, starting=starting)
            if scope.cancelled_caught:
                msg = f"no answer in {min(self.interval, _RECORD_BOUND):g} s"
                raise TimeoutError(msg)
        except Exception as exc:  # noqa: BLE001 - the store may be down for a moment
            if not self._warned:
                logger.warning("could not record this worker in the store: %r", exc)
            self._warned = True
        else:
            self._warned = False

    async def beat_forever(self) -> None:
        """Record the worker every ``interval`` seconds, until cancelled."""
        while True:
            await anyio.sleep(self.interval)
            await self.record()
