"""
A worker's signals: SIGTERM, SIGINT and SIGUSR1 make it leave, its trials left for other workers.

SIGUSR1 is the early warning a batch scheduler sends before a job's time limit (Slurm's
``--signal=B:USR1@S``): the worker takes it as its cue to leave, as it does SIGTERM.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from .._worker import Worker

__all__ = ["handle_worker_signals"]

logger = logging.getLogger("async_consumer")


async def _watch_worker(worker: Worker, received: list[signal.Signals]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGUSR1) as signals:
        async for signum in signals:
            received.append(signum)
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


@asynccontextmanager
async def handle_worker_signals(worker: Worker) -> AsyncIterator[list[signal.Signals]]:
    """
    While the block runs, SIGINT, SIGTERM and SIGUSR1 make the worker leave instead of dying.

    The first signal makes the worker reserve nothing more and stop its running trials
    gracefully (SIGTERM to each script's process group, then SIGKILL after the consumer's
    grace); their attempts are recorded interrupted (reason ``preempted``) so that other
    workers resume them. A second SIGINT or SIGTERM SIGKILLs every process group at once; a
    second SIGUSR1 changes nothing. Yields the list of signals received.
    """
    received: list[signal.Signals] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_worker, worker, received)
        try:
            yield received
        finally:
            tg.cancel_scope.cancel()
