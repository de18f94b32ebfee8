"""Turn how a script ended into a classified outcome: status, reason and a one-line message."""

from __future__ import annotations

import signal
from dataclasses import dataclass

from .._errors import MissingResults, ResultsError
from .._models import Reason, Result, Status

__all__ = ["Abort", "Verdict", "classify", "signal_name"]


@dataclass(frozen=True, slots=True)
class Abort:
    """Why the consumer stopped a trial before it ended by itself."""

    status: Status
    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classification of one attempt."""

    status: Status
    reason: Reason | None
    message: str
    results: tuple[Result, ...] = ()
    returncode: int | None = None
    signal: str | None = None


def signal_name(returncode: int) -> str:
    """Name the signal of a negative return code, e.g. ``SIGSEGV``."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def classify(
    returncode: int | None,
    abort: Abort | None,
    *,
    interrupt_code: int,
    results: tuple[Result, ...] | ResultsError | None,
) -> Verdict:
    """
    Classify an attempt. ``returncode`` is how the script ended (negative for a signal; ``None``
    if it never started or could not be reaped); ``results`` is what reading the results file
    gave, if it was read.

    An abort (timeout, stall, stop, lost lease, cancellation) wins over the exit status: the
    script ended because we stopped it.
    """
    sig = signal_name(returncode) if returncode is not None and returncode < 0 else None
    if abort is not None:
        return Verdict(abort.status, abort.reason, abort.message, (), returncode, sig)
    if returncode is None:  # pragma: no cover - only when the kernel would not reap the child
        return Verdict(Status.BROKEN, Reason.SIGNAL, "the script could not be reaped", ())
    if returncode == interrupt_code:
        message = f"exited with the interrupt code {interrupt_code}"
        return Verdict(Status.INTERRUPTED, Reason.EXIT_CODE, message, (), returncode)
    if sig is not None:
        return Verdict(Status.BROKEN, Reason.SIGNAL, f"killed by {sig}", (), returncode, sig)
    if returncode != 0:
        message = f"exited with code {returncode}"
        return Verdict(Status.BROKEN, Reason.EXIT_CODE, message, (), returncode)
    if isinstance(results, ResultsError):
        reason = (
            Reason.MISSING_RESULTS
            if isinstance(results, MissingResults)
            else Reason.INVALID_RESULTS
        )
        return Verdict(Status.BROKEN, reason, str(results), (), returncode)
    return Verdict(Status.COMPLETED, None, "", results or (), returncode)
