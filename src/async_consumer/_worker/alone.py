"""
Suspects run one at a time: a worker never runs two trials that may have killed their workers.

A *suspect* is a trial that lost a lease before: its worker may have died of it. A worker takes
a suspect whenever none runs on it, beside its other trials (so a dead worker's trials are
taken up at once by live workers with room, busy or not), and takes no other suspect until it
ends. A suspect whose worker dies is charged its loss when that death stands alone (no other
worker lost a lease since its previous attempt began: ``stores._rules.is_judged``), and each
trial beside it is charged its first; but no trial ever runs beside two suspects, and a trial
beside a suspect is no suspect itself: a healthy trial loses at most one lease to a poison
trial, and the poison trial is broken at its third death (``max_lost`` 2).
"""

from __future__ import annotations

from collections.abc import Sequence

from .._models import Lease

__all__ = ["Alone"]


class Alone:
    """Which suspect a worker runs now, if any: it takes another only when that one ends."""

    def __init__(self) -> None:
        self._running: tuple[str, int] | None = None
        """The suspect's lease running here (trial id, token); ``None`` while none runs."""

    @property
    def may_take(self) -> bool:
        """Whether the worker may take a suspect now (none runs on it)."""
        return self._running is None

    def first_suspect(self, leases: Sequence[Lease]) -> tuple[list[Lease], list[Lease]]:
        """
        The leases reserved that the worker keeps, and the suspects it hands back: every
        suspect after the first, or every one if a suspect runs here already.
        """
        kept: list[Lease] = []
        extra: list[Lease] = []
        taking = self.may_take
        for lease in leases:
            if not lease.lost_count:
                kept.append(lease)
            elif taking:
                kept.append(lease)
                self._running = (lease.trial_id, lease.token)
                taking = False
            else:
                extra.append(lease)
        return kept, extra

    def done(self, lease: Lease) -> None:
        """The lease's attempt has ended: if it was the suspect's, another may be taken."""
        if self._running == (lease.trial_id, lease.token):
            self._running = None
