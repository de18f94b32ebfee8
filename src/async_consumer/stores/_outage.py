"""
Whether the store is reachable: calls retried with capped, jittered backoff, up to a limit.

One line is logged when the store goes away and one when it is back; a call gives up only when
the store has been away longer than the limit (or past a deadline of the caller's).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from .._errors import StoreUnavailable

__all__ = ["DEFAULT_OUTAGE_LIMIT", "Outage"]

logger = logging.getLogger("async_consumer")

_T = TypeVar("_T")

DEFAULT_OUTAGE_LIMIT = 300.0
"""Seconds a worker waits for an unreachable store before it gives up (five minutes)."""


class Outage:
    """
    Whether the store is reachable, as every call through one retrying store has seen it.

    Args:
        limit: seconds the store may stay unreachable before calls give up.
        backoff: seconds before the first retry; doubled for each further one.
        max_backoff: the longest wait between two tries (so a return is noticed soon).
    """

    def __init__(
        self,
        limit: float = DEFAULT_OUTAGE_LIMIT,
        *,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
    ) -> None:
        if not limit > 0:
            msg = f"the store outage limit must be positive, not {limit}"
            raise ValueError(msg)
        self.limit = limit
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.down_since: float | None = None
        self.back_at: float | None = None
        """When the last outage that was logged ended (``anyio.current_time``)."""
        self.outages = 0
        """How many outages were logged."""
        self._logged = False
        self.given_up = False
        """Calls are no longer retried (see :meth:`give_up`)."""

    def give_up(self) -> None:
        """Retry nothing from now on: a call that fails raises (its worker is leaving)."""
        self.given_up = True

    async def call(self, op: Callable[[], Awaitable[_T]], *, until: float | None = None) -> _T:
        """
        Await ``op()``, again and again while it raises ``StoreUnavailable``.

        Raises:
            StoreUnavailable: the store has been away longer than ``limit``, or past ``until``
                (``anyio.current_time``), whichever comes first, or :meth:`give_up` was called.
        """
        delay, failures = self.backoff, 0
        while True:
            try:
                result = await op()
            except StoreUnavailable as exc:
                failures += 1
                wait = self._failed(exc, failures, until)
                if self.given_up:
                    raise
                await anyio.sleep(min(delay, wait) * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.max_backoff)
            else:
                self._succeeded()
                return result

    def _failed(self, exc: StoreUnavailable, failures: int, until: float | None) -> float:
        """Note a failure; return how long retries may go on, or raise if they may not."""
        now = anyio.current_time()
        if self.down_since is None:
            self.down_since = now
        # a single failure that the next try gets through (a terminated connection) is no outage
        if failures > 1 and not self._logged:
            self._logged = True
            self.outages += 1
            logger.warning("store unreachable, retrying for up to %g s: %s", self.limit, exc)
        end = self.down_since + self.limit
        if now >= end:
            msg = f"the store was unreachable for {now - self.down_since:.0f} s: {exc}"
            raise StoreUnavailable(msg) from exc
        if until is not None and now >= until:
            raise exc
        return min(end, until if until is not None else end) - now

    def _succeeded(self) -> None:
        if self.down_since is None:
            return
        now = anyio.current_time()
        if self._logged:
            logger.warning("store reachable again after %.1f s", now - self.down_since)
            self.back_at = now
        self.down_since = None
        self._logged = False
