"""What a worker's store traffic came to: one line for the log (``-v`` shows it)."""

from __future__ import annotations

import logging
import statistics

from .._supervise.beats import BeatCoalescer
from .commit import GroupCommit

__all__ = ["log_traffic"]

logger = logging.getLogger("async_consumer")


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
