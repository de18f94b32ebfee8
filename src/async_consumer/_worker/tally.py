"""What a worker has done, in counts: kept small so that a long-running worker stays small."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._models import Outcome

__all__ = ["Tally"]


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
