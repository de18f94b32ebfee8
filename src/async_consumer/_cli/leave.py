"""
A worker's signals: SIGTERM, SIGINT and SIGUSR1 make it leave, its trials left for other workers.

SIGUSR1 is the early warning a batch scheduler sends before a job's time limit (Slurm's
``--signal=B:USR1@S``): the worker takes it as its cue to leave, as it does SIGTERM.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio

from .._worker.worker import Worker

__all__ = ["early_signals", "handle_worker_signals"]

logger = logging.getLogger("async_consumer")

_EARLY = (signal.SIGTERM, signal.SIGUSR1)
"""Kept while a worker starts (SIGINT keeps raising KeyboardInterrupt, as a user expects)."""


@contextmanager
def early_signals() -> Iterator[list[signal.Signals]]:
    """
    Keep the SIGTERM and SIGUSR1 that come while the worker starts, for it to act on once able.

    Slurm may send its early warning up to a minute before it is due, so even while the worker
    starts; SIGUSR1's default action would kill it, silently. Kept, the worker leaves as soon
    as it runs, before it reserves anything.
    """
    received: list[signal.Signals] = []

    def keep(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum))

    previous = {signum: signal.signal(signum, keep) for signum in _EARLY}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _on_signal(worker: Worker, signum: signal.Signals) -> None:
    if worker.left_on is None:
        logger.warning(
            "%s: reserving nothing more; stopping %d running trial(s) for "
            "other workers to resume (again to kill them now)",
            signum.name,
            len(worker.consumer.running),
        )
        worker.leave(signum.name)
    elif signum is not signal.SIGUSR1:
        logger.warning("%s: killing every trial now", signum.name)
        worker.consumer.kill()


async def _watch_worker(
    worker: Worker, received: list[signal.Signals], early: list[signal.Signals]
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGUSR1) as signals:
        # the receiver is in place: what came before it is all in ``early`` by now
        for signum in early:
            received.append(signum)
            _on_signal(worker, signum)
        async for signum in signals:
            received.append(signum)
            _on_signal(worker, signum)


@asynccontextmanager
async def handle_worker_signals(
    worker: Worker, early: list[signal.Signals] | None = None
) -> AsyncIterator[list[signal.Signals]]:
    """
    While the block runs, SIGINT, SIGTERM and SIGUSR1 make the worker leave instead of dying.

    The first signal makes the worker reserve nothing more and stop its running trials
    gracefully (SIGTERM to each script's process group, then SIGKILL after the consumer's
    grace); their attempts are recorded interrupted (reason ``preempted``) so that other
    workers resume them. A second SIGINT or SIGTERM SIGKILLs every process group at once; a
    second SIGUSR1 changes nothing. Signals kept by :func:`early_signals` count as received
    first. Yields the list of signals received.
    """
    received: list[signal.Signals] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_worker, worker, received, early or [])
        try:
            yield received
        finally:
            tg.cancel_scope.cancel()
