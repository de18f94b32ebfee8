"""
Signals for programs: the first Ctrl-C stops trials gracefully, the second kills them at once.

Opt-in, for command-line programs: a library must not take over a process's signals. Without a
handler, SIGTERM to an orchestrator orphans every child; with this one, nothing is left.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from ._consumer import Consumer

__all__ = ["handle_signals"]

logger = logging.getLogger("async_consumer")


async def _watch(consumer: Consumer, received: list[signal.Signals]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            received.append(signum)
            if len(received) == 1:
                logger.warning("%s: stopping every trial (again to kill them now)", signum.name)
                consumer.interrupt()
            else:
                logger.warning("%s: killing every trial now", signum.name)
                consumer.kill()


@asynccontextmanager
async def handle_signals(consumer: Consumer) -> AsyncIterator[list[signal.Signals]]:
    """
    While the block runs, SIGINT and SIGTERM stop the consumer's trials instead of the program.

    The first signal stops every running trial gracefully (outcome interrupted) and starts no
    new one; a second SIGKILLs every process group at once. Yields the list of signals received,
    so the program can exit with the conventional status (130 for SIGINT) afterwards.
    """
    received: list[signal.Signals] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch, consumer, received)
        try:
            yield received
        finally:
            tg.cancel_scope.cancel()
