"""The rules every store shares: argument checks, and how an ended attempt settles a trial."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import LeaseLost, TrialNotFound
from .._models import Lease, Outcome, Reason, Status, StoredTrial, TrialStatus

if TYPE_CHECKING:
    from ._protocol import Finish

__all__ = [
    "DEFAULT_MAX_LOST",
    "PENDING",
    "Cleared",
    "check_count",
    "check_finishes",
    "check_hold",
    "check_max_lost",
    "check_older_than",
    "check_outcome",
    "check_rerun",
    "clear_loss",
    "fenced",
    "gone_outcome",
    "lost_outcome",
    "not_renewed",
    "settle",
    "settled_status",
    "stalled_ends",
    "stalled_outcome",
    "the_trial",
    "unique_leases",
]

DEFAULT_MAX_LOST = 2
"""A trial is broken at its third lost lease: as no trial runs beside two suspects, nor a suspect
beside another, a healthy trial loses a lease to a neighbour's crash at most once, and a poison
trial that kills every worker it runs on is stopped after three deaths."""

PENDING = (TrialStatus.NEW, TrialStatus.INTERRUPTED)
"""The statuses ``reserve`` takes trials from."""

_SETTLED = {
    Status.COMPLETED: TrialStatus.COMPLETED,
    Status.BROKEN: TrialStatus.BROKEN,
    Status.INTERRUPTED: TrialStatus.INTERRUPTED,
    Status.LOST: TrialStatus.INTERRUPTED,
}


RERUNNABLE = frozenset({TrialStatus.BROKEN, TrialStatus.INTERRUPTED})


def _require(valid: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless the argument checked is ``valid``."""
    if not valid:
        raise ValueError(message)


def check_rerun(statuses: Collection[TrialStatus]) -> list[str]:
    """The statuses as text, if each may be run again; else raise ``ValueError``."""
    wrong = sorted(str(s) for s in statuses if s not in RERUNNABLE)
    _require(
        not wrong, f"only broken and interrupted trials can be run again, not {', '.join(wrong)}"
    )
    return sorted(str(s) for s in statuses)


def check_hold(hold: float) -> float:
    """Return ``hold`` if it is a finite number of seconds, 0 or more; else raise ``ValueError``."""
    _require(
        hold >= 0 and math.isfinite(hold),
        f"hold must be a finite number of seconds, 0 or more, not {hold}",
    )
    return float(hold)


def check_max_lost(max_lost: int) -> int:
    """Return ``max_lost`` if it is a count, else raise ``ValueError``."""
    _require(max_lost >= 0, f"max_lost must be 0 or more, not {max_lost}")
    return max_lost


def check_older_than(older_than: float) -> float:
    """Return ``older_than`` if it is a duration, else raise ``ValueError``."""
    _require(older_than >= 0, f"older_than must be 0 or more seconds, not {older_than}")
    return older_than


def check_outcome(lease: Lease, outcome: Outcome) -> None:
    """Raise ``ValueError`` if the outcome belongs to another trial than the lease."""
    _require(
        outcome.trial_id == lease.trial_id,
        f"outcome of trial {outcome.trial_id!r} given for lease on {lease.trial_id!r}",
    )


def check_count(n: int) -> int:
    """Return ``n`` if at least one trial is asked for, else raise ``ValueError``."""
    _require(n >= 1, f"n must be 1 or more, not {n}")
    return n


def check_finishes(items: Sequence[Finish]) -> None:
    """Raise ``ValueError`` for the first item that ``finish`` would refuse, before any write."""
    for item in items:
        check_outcome(item.lease, item.outcome)
        check_hold(item.hold)


def fenced(
    finish: Callable[[Lease, Outcome, bool, float], TrialStatus], item: Finish
) -> TrialStatus | LeaseLost:
    """
    One item of a batch recorded by a store's synchronous ``finish`` step, or the ``LeaseLost``
    it raised: items are fenced one by one, a lost item writes nothing, and a repeat of an item
    finds it done.
    """
    try:
        return finish(*item)
    except LeaseLost as exc:
        return exc


def unique_leases(items: Sequence[Finish]) -> list[int]:
    """The places of the items whose lease no earlier item names (a repeat is already done)."""
    seen: set[tuple[str, int]] = set()
    firsts = []
    for place, item in enumerate(items):
        key = (item.lease.trial_id, item.lease.token)
        if key not in seen:
            seen.add(key)
            firsts.append(place)
    return firsts


def not_renewed(leases: Sequence[Lease], renewed: Collection[tuple[str, int]]) -> list[str]:
    """The ids of the leases, in order, whose ``(trial id, token)`` is not among ``renewed``."""
    return [lease.trial_id for lease in leases if (lease.trial_id, lease.token) not in renewed]


def settled_status(
    status: Status, requeue: bool = False, reason: Reason | None = None
) -> TrialStatus:
    """The trial's status after an attempt ends so, before counting losses against ``max_lost``."""
    if reason is Reason.PRUNED and status is Status.INTERRUPTED:
        return TrialStatus.PRUNED  # final: a pruned trial never runs again
    return TrialStatus.INTERRUPTED if requeue else _SETTLED[status]


def settle(
    status: Status,
    lost_count: int,
    max_lost: int,
    requeue: bool = False,
    reason: Reason | None = None,
) -> tuple[TrialStatus, int]:
    """Return the trial's new status and lost count once an attempt ended with ``status``."""
    if status is not Status.LOST:
        return settled_status(status, requeue, reason), lost_count
    lost_count += 1
    return (TrialStatus.BROKEN if lost_count > max_lost else TrialStatus.INTERRUPTED), lost_count


def lost_outcome(trial_id: str, attempt: int, older_than: float) -> Outcome:
    """
    The outcome recorded on an attempt whose lease the store reclaimed from a silent holder: a
    loss, until its holder comes back (:func:`clear_loss`).
    """
    message = (
        f"no heartbeat for {older_than:g} s or more; the store reclaimed the lease (its worker "
        "died, froze or was cut off: a loss, unless it comes back)"
    )
    return gone_outcome(trial_id, attempt, message)


def stalled_outcome(trial_id: str, attempt: int, older_than: float, alive: bool) -> Outcome:
    """
    The outcome recorded on an attempt whose stale lease the store reclaimed: lost, or, when
    its holder is known to still run (``alive``), interrupted: no loss counted.
    """
    if not alive:
        return lost_outcome(trial_id, attempt, older_than)
    message = (
        f"no heartbeat for {older_than:g} s or more while its worker still ran (frozen or "
        "overloaded, not killed): the store reclaimed the lease, no loss counted"
    )
    return gone_outcome(trial_id, attempt, message, Status.INTERRUPTED)


def stalled_ends(rows: Iterable[Sequence[Any]], older_than: float) -> list[tuple[str, str, int]]:
    """(outcome JSON, trial id, attempt) for each stale lease reclaimed, from ``(id, token,
    alive)`` rows (see :func:`stalled_outcome`): what the store writes on those attempts."""
    return [
        (stalled_outcome(i, n, older_than, bool(alive)).model_dump_json(), i, n)
        for i, n, alive in rows
    ]


def gone_outcome(
    trial_id: str, attempt: int, message: str, status: Status = Status.LOST
) -> Outcome:
    """
    The outcome recorded on an attempt whose lease the store took back: lost, as when its
    holding process is known to be gone, unless ``status`` says otherwise.
    """
    return Outcome(
        trial_id=trial_id,
        attempt=attempt,
        status=status,
        reason=Reason.LEASE_LOST,
        message=message,
    )


@dataclass(frozen=True, slots=True)
class Cleared:
    """A loss cleared: the attempt's outcome rewritten, and the trial's new status and count."""

    outcome: Outcome
    status: TrialStatus
    lost_count: int


def clear_loss(
    charged: Outcome | None,
    status: TrialStatus,
    lost_count: int,
    latest: Outcome | None,
    max_lost: int,
) -> Cleared | None:
    """
    What clearing the loss of an attempt whose holder came back makes of it and of its trial.

    The holder of the attempt (whose outcome is ``charged``) still runs: it was frozen or cut
    off, not killed, so a loss recorded on that attempt is no evidence against the trial. The
    attempt is recorded interrupted instead, the trial's ``lost_count`` loses one, and a trial
    broken by losses (its ``latest`` attempt lost) is interrupted again if the count is within
    ``max_lost`` once more. ``None``: the attempt is not lost (running, already cleared, or ended
    otherwise), nothing changes.
    """
    if charged is None or charged.status is not Status.LOST:
        return None
    lost_count = max(lost_count - 1, 0)
    by_losses = latest is not None and latest.status is Status.LOST
    if status is TrialStatus.BROKEN and by_losses and lost_count <= max_lost:
        status = TrialStatus.INTERRUPTED
    message = f"{charged.message}; its worker came back: frozen or cut off, not dead, no loss"
    outcome = charged.model_copy(update={"status": Status.INTERRUPTED, "message": message})
    return Cleared(outcome, status, lost_count)


def the_trial(found: Sequence[StoredTrial], trial_id: str) -> StoredTrial:
    """The one trial ``get`` found, or ``TrialNotFound`` if it found none."""
    if not found:
        raise TrialNotFound(trial_id)
    return found[0]
