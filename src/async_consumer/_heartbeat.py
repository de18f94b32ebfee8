"""
The beat loop beside each running trial: prove to the store that the trial is still ours.

Each call is bounded, so a hanging store cannot hold the loop; a failed beat is retried sooner
than the next regular one, so a single slow call never lets the lease expire; ``LeaseLost`` or
too many failures in a row end the trial as lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import anyio

from ._errors import LeaseLost
from ._models import Lease

__all__ = ["HeartbeatTarget", "Pacer", "beat", "wait_beating"]

logger = logging.getLogger("async_consumer")


class HeartbeatTarget(Protocol):
    """Anything that can refresh a lease: every trial store is one."""

    async def heartbeat(self, lease: Lease) -> None:
        """Refresh the lease, or raise :class:`LeaseLost` if it is no longer ours."""
        ...


class Pacer:
    """
    The heartbeat schedule of one lease: when the next beat is due, and what each answer means.

    The first beat is due one interval after the start (the reservation itself counts as one).
    A failed beat is retried after a third of an interval; after ``max_failures`` in a row, or
    at the first ``LeaseLost``, the lease counts as lost.
    """

    def __init__(self, target: HeartbeatTarget, lease: Lease, *, interval: float,
                 max_failures: int) -> None:  # fmt: skip
        self.target = target
        self.lease = lease
        self.interval = interval
        self.retry = interval / 3
        self.max_failures = max_failures
        self.failures = 0
        self.next_at = anyio.current_time() + interval

    async def beat(self) -> str | None:
        """Beat now, within a third of an interval; return why the lease is lost, or ``None``."""
        try:
            with anyio.fail_after(self.retry):
                await self.target.heartbeat(self.lease)
        except LeaseLost as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - any store failure is retried, then the trial is lost
            self.failures += 1
            problem = "timed out" if isinstance(exc, TimeoutError) else f"{exc!r}"
            extra = {"trial_id": self.lease.trial_id}
            logger.warning("heartbeat %d/%d %s", self.failures, self.max_failures, problem,
                           extra=extra)  # fmt: skip
            if self.failures >= self.max_failures:
                return f"{self.failures} heartbeats failed in a row, the last {problem}"
            self.next_at = anyio.current_time() + self.retry
        else:
            self.failures = 0
            self.next_at = max(self.next_at + self.interval, anyio.current_time())
        return None


async def beat(pacer: Pacer, on_lost: Callable[[str], None]) -> None:
    """Beat on schedule until cancelled; call ``on_lost`` and return if the lease is gone."""
    while True:
        await anyio.sleep(max(0.0, pacer.next_at - anyio.current_time()))
        lost = await pacer.beat()
        if lost is not None:
            on_lost(lost)
            return


async def wait_beating(exit_fd: int, pacer: Pacer) -> str | None:
    """
    Wait until ``exit_fd`` (a process's pidfd) is readable, beating on schedule meanwhile.

    Returns ``None`` once the process has exited, or why its lease was lost. The same task
    waits and beats, so a trial that only needs its heartbeat costs no task of its own; a
    hanging store delays only this trial's outcome, by at most a third of an interval.
    """
    while True:
        with anyio.move_on_after(max(0.0, pacer.next_at - anyio.current_time())):
            await anyio.wait_readable(exit_fd)
            return None
        lost = await pacer.beat()
        if lost is not None:
            return lost
