"""How the memory store keeps one trial: its state, its lease and its attempts."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import datetime

from .._models import Attempt, Outcome, StoredTrial, Trial, TrialStatus

__all__ = ["Record"]


@dataclass(slots=True)
class Record:
    """One trial of a memory store, as the store changes it in place."""

    seq: int
    trial: Trial
    status: TrialStatus = TrialStatus.NEW
    token: int = 0
    worker: str | None = None
    heartbeat_at: datetime | None = None
    lost_count: int = 0
    holder: str = ""
    attempts: builtins.list[Attempt] = field(default_factory=builtins.list)
    not_before: datetime | None = None

    def stored(self) -> StoredTrial:
        trial = self.trial.model_copy(update={"attempt": max(len(self.attempts), 1)})
        return StoredTrial(
            trial=trial,
            status=self.status,
            token=self.token,
            worker=self.worker,
            heartbeat_at=self.heartbeat_at,
            lost_count=self.lost_count,
            attempts=tuple(self.attempts),
        )

    def end_attempt(self, outcome: Outcome) -> None:
        last = self.attempts[-1]
        update = {"outcome": outcome, "heartbeat_at": self.heartbeat_at}
        self.attempts[-1] = last.model_copy(update=update)
