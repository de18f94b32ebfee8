"""
The beat loop beside each running trial: prove to the store that the trial is still ours.

Each call is bounded, so a hanging store cannot hold the loop; a failed beat is retried sooner
than the next regular one, so a single slow call never lets the lease expire. ``LeaseLost``, too
many errors in a row, or no beat getting through for as long as a lease lives (``max_failures``
intervals: an unreachable or hanging store) and then one last try of a whole interval failing
too, end the trial as lost; an outage shorter than that costs the trial nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import anyio

from .._errors import LeaseLost, StoreUnavailable
from .._models import Lease

__all__ = ["BeatState", "HeartbeatTarget", "beat"]

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
    Each beat is bounded by a third of an interval (a whole one for the last try).
    """
    state = BeatState(interval, max_failures, lease.trial_id)
    while True:
        await anyio.sleep(max(0.0, state.next_at - anyio.current_time()))
        began = anyio.current_time()
        try:
            with anyio.fail_after(state.retry):
                await target.heartbeat(lease)
        except LeaseLost as exc:
            on_lost(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any store failure is retried, then the trial is lost
            lost = state.failed(exc)
            if lost is not None:
                on_lost(lost)
                return
        else:
            state.succeeded(began)


class BeatState:
    """
    When a lease's next beat is due, and whether the failures so far mean the lease is lost.

    Used by the beat loop of one trial and, for each of its leases, by a coalescer.
    """

    __slots__ = (  # one for each running trial: no dict each
        "confirmed",
        "failures",
        "interval",
        "last_ok",
        "max_failures",
        "next_at",
        "retry",
        "trial_id",
    )

    def __init__(
        self, interval: float, max_failures: int, trial_id: str, since: float | None = None
    ) -> None:
        self.interval = interval
        self.max_failures = max_failures
        self.trial_id = trial_id
        self.retry = interval / 3  # the bound of one beat (and the pause before a retry)
        self.confirmed = False  # the lease's time is up and one last, longer try is under way
        self.failures = 0  # errors in a row (an unreachable store or a hang not counted)
        # the lease was renewed last (``since``: its reservation was asked for then), or now
        self.last_ok = anyio.current_time() if since is None else since
        self.next_at = self.last_ok + interval

    def failed(self, exc: Exception) -> str | None:
        """Note a failed beat; why the trial is lost, or ``None`` to retry in a third."""
        problem = "timed out" if isinstance(exc, TimeoutError) else f"{exc!r}"
        # an unreachable store is logged once by the worker's retrying store, not once a trial
        if not isinstance(exc, TimeoutError | StoreUnavailable):
            self.failures += 1
            extra = {"trial_id": self.trial_id}
            logger.warning(
                "heartbeat %d/%d %s", self.failures, self.max_failures, problem, extra=extra
            )
        silent = anyio.current_time() - self.last_ok
        if self.failures >= self.max_failures:
            return f"{self.failures} heartbeats failed in a row, the last {problem}"
        if silent >= self.interval * self.max_failures:
            if self.confirmed:
                return f"no heartbeat got through for {silent:.1f} s, the last {problem}"
            # one more try, bounded by a whole interval: a busy event loop (one that held every
            # beat back) must not end healthy trials; a store that still does not answer does
            self.confirmed, self.retry = True, self.interval
        self.next_at = anyio.current_time() + self.retry
        return None

    def succeeded(self, began: float) -> None:
        """Note a beat that got through (it began at ``began``)."""
        self.failures, self.confirmed, self.retry = 0, False, self.interval / 3
        self.last_ok = began
        self.next_at = max(self.next_at + self.interval, anyio.current_time())
