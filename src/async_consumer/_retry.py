"""Which failed attempts run again, how often, and after how long."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._models import Outcome, Reason, Status

__all__ = ["DEFAULT_RETRY_REASONS", "RetryPolicy", "log_retry", "retry_delay"]

logger = logging.getLogger("async_consumer")

DEFAULT_RETRY_REASONS = frozenset({Reason.LEASE_LOST, Reason.SIGNAL})
"""Lost leases and signals (the OOM killer, a node's hiccup) are worth another try by default;
invalid results or changed code would fail the same way again."""

_NEVER = frozenset(
    {Reason.INVALID_RESULTS, Reason.CODE_CHANGED, Reason.STOPPED, Reason.CANCELLED, Reason.PRUNED}
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """
    Retry failed attempts by reason, with exponential backoff and jitter.

    Attributes:
        retries: extra attempts after the first (0 turns retries off).
        reasons: the reasons worth a retry; ``invalid_results``, ``code_changed``, ``stopped``
            and ``cancelled`` are never retried.
        backoff: seconds before the first retry; doubled for each further one.
        max_backoff: the longest wait between two attempts.
    """

    retries: int = 2
    reasons: frozenset[Reason] = DEFAULT_RETRY_REASONS
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: float = field(default=0.1, repr=False)

    def __post_init__(self) -> None:
        if self.retries < 0:
            msg = f"retries must be 0 or more, not {self.retries}"
            raise ValueError(msg)
        if self.backoff < 0 or self.max_backoff < 0:
            msg = "backoff and max_backoff must not be negative"
            raise ValueError(msg)

    @classmethod
    def of(cls, retries: int, reasons: Iterable[Reason | str] | None = None) -> RetryPolicy:
        """A policy with ``retries`` retries for ``reasons`` (the defaults when ``None``)."""
        chosen = DEFAULT_RETRY_REASONS if reasons is None else frozenset(map(Reason, reasons))
        return cls(retries=retries, reasons=chosen)

    def should_retry(self, outcome: Outcome) -> bool:
        """Whether this failed attempt gets another one."""
        return (
            outcome.status in {Status.BROKEN, Status.LOST}
            and outcome.reason in self.reasons - _NEVER
            and outcome.attempt <= self.retries
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt + 1``."""
        # the exponent capped: 2.0 ** 1024 overflows, and 2 ** 64 backoffs exceed any cap
        base = min(self.max_backoff, self.backoff * 2.0 ** min(attempt - 1, 64))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


def retry_delay(policy: RetryPolicy, outcome: Outcome, *, halted: bool) -> float | None:
    """
    Seconds to wait before this attempt's retry, or ``None`` if it gets none.

    The one place where retries are decided: a consumer retrying a trial in place and a worker
    handing a leased trial back to its store both ask here. Nothing is retried once halted.
    """
    if halted or not policy.should_retry(outcome):
        return None
    return policy.delay(outcome.attempt)


def log_retry(outcome: Outcome, delay: float) -> None:
    """Say that an attempt will be retried, and when."""
    extra = {"trial_id": outcome.trial_id}
    message = "attempt %d %s; retrying in %.1f s"
    logger.warning(message, outcome.attempt, outcome.message, delay, extra=extra)
