"""
When an interrupted trial runs again: which interrupts hold a trial back, and for how long.

Two kinds of interrupt end an attempt. A script that exits with the interrupt code (Orion's
``interrupt_trial()``, a checkpoint-and-exit) interrupted *itself*: the worker that ran it does not
start it again, and the store holds it back from every worker for a while, longer each time (so a
script that always exits 130 never makes a tight loop). A trial interrupted *from outside* (the
worker was signalled: Ctrl-C, SIGTERM, a Slurm preemption; or its lease was lost) did nothing
wrong: it is held back from no one, and another worker resumes it at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._models import Outcome, Reason, Status

__all__ = ["ResumePolicy", "interrupted_itself"]


def interrupted_itself(outcome: Outcome) -> bool:
    """Whether the script ended the attempt by exiting with the interrupt code."""
    return outcome.status is Status.INTERRUPTED and outcome.reason is Reason.EXIT_CODE


@dataclass(frozen=True, slots=True)
class ResumePolicy:
    """
    How long the store holds back a trial whose script interrupted itself.

    After its n-th attempt the trial waits ``backoff * 2 ** (n - 1)`` seconds, at most
    ``max_backoff``, before any worker may reserve it again (by the store's clock).

    Attributes:
        backoff: seconds after the first attempt.
        max_backoff: the cap, however many attempts the trial has had.
    """

    backoff: float = 5.0
    max_backoff: float = 300.0

    def __post_init__(self) -> None:
        if not 0 <= self.backoff <= self.max_backoff:
            msg = f"expected 0 <= backoff <= max_backoff, not {self.backoff}, {self.max_backoff}"
            raise ValueError(msg)

    def hold(self, outcome: Outcome) -> float:
        """Seconds the trial is held back after this outcome (0: not held)."""
        if not interrupted_itself(outcome):
            return 0.0
        return min(self.max_backoff, self.backoff * 2.0 ** min(outcome.attempt - 1, 60))
