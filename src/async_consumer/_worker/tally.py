"""
What a worker has done, in counts: its attempts (kept small, so that a long-running worker stays
small), and its store traffic, one line for the log (``-v`` shows it).
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field

from .._models import Outcome
from .._supervise.beats import BeatCoalescer
from .commit import GroupCommit

__all__ = ["Tally", "log_traffic"]

logger = logging.getLogger("async_consumer")


@dataclass(slots=True)
class Tally:
    """A worker's counts: attempts recorded, trials run, the slowest three, refusals, breaks."""

    ran: int = 0
    trial_ids: set[str] = field(default_factory=set)
    slowest: list[Outcome] = field(default_factory=list)
    rejected: int = 0
    broken: int = 0

    def count(self, outcome: Outcome, *, broken: bool) -> None:
        """Count a recorded outcome (``broken``: it ended the trial broken, not retried)."""
        self.ran += 1
        self.broken += broken
        self.trial_ids.add(outcome.trial_id)
        if outcome.duration is not None:
            self.slowest.append(outcome)
            self.slowest.sort(key=lambda o: o.duration or 0.0, reverse=True)
            del self.slowest[3:]


def log_traffic(beats: BeatCoalescer | None, commits: GroupCommit, outcomes: int) -> None:
    """Log the heartbeat writes and how late they came, and the outcomes' writes."""
    line = f"store traffic: {commits.writes} finish writes for {outcomes} outcomes"
    if beats is not None and beats.lateness:
        late = sorted(beats.lateness)
        p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
        line += (
            f"; {beats.writes} heartbeat writes, late p50 {statistics.median(late) * 1000:.0f} ms,"
            f" p99 {p99 * 1000:.0f} ms, max {late[-1] * 1000:.0f} ms"
        )
    logger.info(line)
