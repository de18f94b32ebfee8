"""
A worker that outlived a lease of its own says so, and the loss charged to its trial is cleared.

A store that reclaims a stale lease cannot tell a holder that died from one frozen (SIGSTOP, a
stalled machine) or cut off from the store: it counts a loss against the trial, which may have
killed its worker. A worker that later finds one of its leases gone (its finish, or the undoing
of a reservation, refused) still runs: it was frozen or cut off, not killed, so the loss is no
evidence against the trial, and the worker tells the store to clear it
(``TrialStore.clear_losses``). A holder that never comes back leaves the loss counted.
"""

from __future__ import annotations

import logging

import anyio

from .._errors import StoreError
from .._models import Lease
from ..stores import TrialStore

__all__ = ["clear_loss"]

logger = logging.getLogger("async_consumer")


async def clear_loss(store: TrialStore, lease: Lease) -> bool:
    """
    Have the store clear the loss it counted when it took ``lease`` from this (live) worker.

    Whether a loss was cleared: ``False`` when none was counted (the lease ended otherwise) or
    the store could not be told (logged: the loss then stays counted). Shielded: once asked, it
    is done even if the caller is cancelled meanwhile.
    """
    extra = {"trial_id": lease.trial_id}
    try:
        with anyio.CancelScope(shield=True):
            cleared = await store.clear_losses([lease])
    except StoreError as exc:
        logger.warning("could not clear the loss of a lease it outlived: %s", exc, extra=extra)
        return False
    if cleared:
        logger.info(
            "the store had taken the lease while this worker was frozen or cut off: no loss",
            extra=extra,
        )
    return bool(cleared)
