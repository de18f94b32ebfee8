"""
The beat loop beside each running trial: prove to the store that the trial is still ours.

Each call is bounded, so a hanging store cannot hold the loop; a failed beat is retried sooner
than the next regular one, so a single slow call never lets the lease expire. ``LeaseLost``, too
many errors in a row, or no beat getting through for as long as a lease lives (``max_failures``
intervals: an unreachable or hanging store) end the trial as lost; an outage shorter than that
costs the trial nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import anyio

from .._errors import LeaseLost, StoreUnavailable
from .._models import Lease

__all__ = ["HeartbeatTarget", "beat"]

logger = logging.getLogger("async_consumer")


class HeartbeatTarget(Protocol):
    """Anything that can refresh a lease: every trial store is one."""

    async def heartbeat(self, lease: Lease) -> None:
        """Refresh the lease, or raise :class:`LeaseLost` if it is no longer ours."""
        ...


async def beat(
    target: HeartbeatTarget,
    lease: Lease,
    *,
    interval: float,
    max_failures: int,
    on_lost: Callable[[str], None],
) -> None:
    """
    Beat every ``interval`` seconds until cancelled; call ``on_lost`` and return if the lease is gone.

    The first beat comes one interval after the start (the reservation itself counts as one).
    """
    failures = 0
    retry = interval / 3
    last_ok = anyio.current_time()
    next_at = last_ok + interval
    while True:
        await anyio.sleep(max(0.0, next_at - anyio.current_time()))
        began = anyio.current_time()
        try:
            with anyio.fail_after(retry):
                await target.heartbeat(lease)
        except LeaseLost as exc:
            on_lost(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any store failure is retried, then the trial is lost
            problem = "timed out" if isinstance(exc, TimeoutError) else f"{exc!r}"
            # an unreachable store is logged once by the worker's store link, not once a trial
            if not isinstance(exc, TimeoutError | StoreUnavailable):
                failures += 1
                extra = {"trial_id": lease.trial_id}
                logger.warning("heartbeat %d/%d %s", failures, max_failures, problem, extra=extra)
            silent = anyio.current_time() - last_ok
            if failures >= max_failures:
                on_lost(f"{failures} heartbeats failed in a row, the last {problem}")
                return
            if silent >= interval * max_failures:
                on_lost(f"no heartbeat got through for {silent:.1f} s, the last {problem}")
                return
            next_at = anyio.current_time() + retry
        else:
            failures = 0
            last_ok = began
            next_at += interval
            next_at = max(next_at, anyio.current_time())
