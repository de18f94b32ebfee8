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

__all__ = ["ResumePolicy", "interrupted_itself", "preempted", "stopped_here"]


def interrupted_itself(outcome: Outcome) -> bool:
    """Whether the script ended the attempt by exiting with the interrupt code."""
    return outcome.status is Status.INTERRUPTED and outcome.reason is Reason.EXIT_CODE


def preempted(outcome: Outcome, signal_name: str | None) -> Outcome:
    """
    The outcome of an attempt that ended after its worker was told to leave (``signal_name``).

    Unless it completed (or its lease was lost), it is interrupted with reason ``preempted``,
    even when the script exited with the interrupt code itself: a batch scheduler signals the
    scripts too, and one may exit before its worker stops it. The worker's doing, so the trial
    is held back from no one and another worker resumes it at once, in the same working
    directory. ``signal_name`` ``None`` (the worker was not told to leave): ``outcome`` itself.
    """
    if signal_name is None or outcome.status in (Status.COMPLETED, Status.LOST):
        return outcome
    message = f"the worker got {signal_name} and stopped it; another worker resumes it"
    update = {"status": Status.INTERRUPTED, "reason": Reason.PREEMPTED, "message": message}
    return outcome.model_copy(update=update)


def stopped_here(outcome: Outcome, signal_name: str | None) -> Outcome:
    """
    The outcome a worker records for an attempt it ran: :func:`preempted`, and more.

    A trial its own heartbeats gave up on (lost: ``lease_lost``) is recorded as interrupted:
    the store accepts the outcome only under the lease's token, so if it is recorded at all the
    lease was still ours and no one took the trial; the worker stopped it, not a crash. It is
    resumed at once and counts no loss (a loss marks a trial suspected of killing its worker,
    run one at a time: a busy worker whose beats fell behind would otherwise make its trials
    suspects).
    """
    outcome = preempted(outcome, signal_name)
    if outcome.status is not Status.LOST or outcome.reason is not Reason.LEASE_LOST:
        return outcome
    message = f"stopped by its worker: {outcome.message}"
    return outcome.model_copy(update={"status": Status.INTERRUPTED, "message": message})


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
