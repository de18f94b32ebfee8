"""
A consumer's leases by its own clock: renewed from their reservation on, and a watchdog told
when they run out, so that a frozen consumer's scripts stop before another worker re-runs them.
"""

from __future__ import annotations

import math
import time

import anyio

from .._models import Lease
from .beats import BeatCoalescer, Kept
from .process import Exit, on_asyncio
from .running import Running
from .watchdog import Watchdog

__all__ = ["LocalLeases"]


class LocalLeases:
    """
    The leases a consumer keeps, and its watchdog (started with the first script, if asked).

    Args:
        beats: the coalescer that renews them (``None``: each trial beats alone, or no store).
        interval: the heartbeat interval; ``failures``: intervals a lease lives unrenewed.
        grace: seconds from SIGTERM to SIGKILL; ``watchdog``: whether to start a watchdog.
    """

    def __init__(
        self,
        beats: BeatCoalescer | None,
        interval: float,
        failures: int,
        grace: float,
        watchdog: bool,
    ) -> None:
        self.beats = beats
        self.interval = interval
        self.grace = grace
        self.lease = interval * failures
        self.watchdog: Watchdog | None = None
        self._wants_watchdog = watchdog
        self._ends = math.inf  # (time.monotonic) the watchdog stops the scripts from then
        self._lapsed_at = -math.inf  # when the leases last ran out before a renewal came
        if beats is not None and watchdog:
            beats.on_renewed = self._renewed

    def keep(self, lease: Lease | None) -> Kept | None:
        """
        Start renewing a lease now, before its script starts (``None``: it is renewed once the
        script runs, by a beat loop of its own, or there is no lease). The next beat is due an
        interval after the reservation, however long the files, slots and spawn take: a spawn
        slowed by a busy machine must not let the lease run out. Hand the result to the
        supervision, or to :meth:`drop` if the script does not start.
        """
        if lease is None or self.beats is None or not on_asyncio():
            return None
        return self.beats.enter(lease)

    def drop(self, kept: Kept | None) -> None:
        """Stop renewing a lease :meth:`keep` kept (its script did not start, or ended)."""
        if kept is not None and self.beats is not None:
            self.beats.drop(kept)

    def watch(self, pgid: int, box: tuple[str, ...] = ()) -> Watchdog | None:
        """Have the watchdog (started now if need be) watch a script's process group and box."""
        if not self._wants_watchdog:
            return None
        if self.watchdog is None:
            self.watchdog = Watchdog(self.grace)
            if self.beats is not None:  # the leases kept so far, before the watchdog was there
                self.beats.tell_renewed()
        self.watchdog.register(pgid, box)
        return self.watchdog

    def _renewed(self, oldest: float | None) -> None:
        """
        Tell the watchdog when the leases run out (``oldest``: when the least recently renewed
        lease was renewed, ``None``: no lease kept), a quarter of an interval before the store
        may give them to another worker (SIGTERM a quarter sooner, at most ``grace`` sooner).
        """
        if self.watchdog is None:
            return
        if time.monotonic() >= self._ends:  # renewed too late: the watchdog may have acted
            self._lapsed_at = self._ends
        if oldest is None:
            self._ends = math.inf
            self.watchdog.leases_end(math.inf, math.inf)
            return
        kill_at = time.monotonic() + oldest + self.lease - self.interval / 4 - anyio.current_time()
        self._ends = term_at = kill_at - min(self.grace, self.interval / 4)
        self.watchdog.leases_end(term_at, kill_at)

    def explain(self, running: Running, exit_: Exit | None) -> None:
        """
        A script killed by a signal after the leases ran out since it started: the watchdog's
        doing, so its attempt is lost (its worker then records it interrupted), not broken.
        """
        if running.abort is not None or exit_ is None or exit_.returncode >= 0:
            return
        ends = self._ends if time.monotonic() >= self._ends else self._lapsed_at
        if ends >= running.started:
            running.lost("its lease ran out by this host's clock: the watchdog stopped it")

    def close(self) -> None:
        """Stop the watchdog process, if one was started."""
        if self.watchdog is not None:
            self.watchdog.close()
            self.watchdog = None
