"""
The pull loop: reserve a trial from the store, run it, record its outcome; reclaim dead leases.

Each lane takes a place (one of ``max_concurrency``), then reserves a trial and runs it; spare
lanes start trials while others record outcomes (:func:`.._admission.lanes`, :mod:`.lanes`,
:mod:`.recording`); a reclaimer takes stale leases (:mod:`.reclaim`). An unreachable store is
waited for (up to ``outage_limit`` s); an error not the trials' own stops its trials, gives
them back, and is raised. A trial reserved that this worker cannot run (an unknown placeholder
in its command, more slots than it has) is handed back unstarted, and ends the worker once its
running trials end: trials are checked as they are reserved, not read in advance.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from functools import partial

import anyio

from .._admission import Place, lanes
from .._consumer import Consumer, beats_of
from .._errors import SlotError, StoreError, StoreUnavailable, TemplateError, TrialFilesError
from .._fleet import WorkerInfo, WorkerState
from .._models import Lease, Outcome, Status, Trial
from .._resume import ResumePolicy, interrupted_itself, stopped_here
from .._retry import log_retry, retry_delay
from .._supervise.holder import holder_name
from .._supervise.plain import run_copies
from ..stores import TrialStore
from ..stores._retrying import DEFAULT_OUTAGE_LIMIT, Outage, RetryingStore
from .commit import GroupCommit
from .file_faults import FileFaults
from .lanes import Leasing
from .presence import Presence
from .reclaim import Reclaimer
from .recording import Recorder
from .tally import Tally, log_traffic

__all__ = ["Worker", "retrying_store"]

logger = logging.getLogger("async_consumer")
Done = Callable[[], None] | None


class Worker:
    """
    Pulls trials from a store and runs them with a consumer until the store is drained.

    Args:
        store: where the trials are; shared with other workers.
        consumer: runs each trial; its ``store`` must be this store (for the heartbeats), and
            its ``heartbeat`` and ``max_concurrency`` set the worker's pace and lanes.
        name: this worker's name in the store (default: ``host:pid``).
        follow: keep waiting for new trials instead of stopping when the store is drained.
        lost_after: a lease is stale after this many heartbeat intervals without a beat.
        poll: seconds between two looks at an empty store (by one idle lane for them all).
        max_broken: reserve nothing more after this many broken outcomes.
        on_outcome: called with each outcome as it is recorded.
        outage_limit: seconds the store may stay unreachable before the worker gives up (when
            ``store`` is not already a :class:`RetryingStore`, which brings its own).
        max_file_faults: give up after failing this many times in a row to create a trial's
            files (a full or read-only disk); each failure gives the trial back and backs off.
        resume: how long a trial whose script exited with the interrupt code is held back from
            every worker (not started here again unless ``follow``); one a signal stopped is not.
        job_id, task_id: the scheduler's job it runs in (a Slurm array's id), and its index there.
        reserve_until: reserve no trial after this time (seconds since the epoch): a trial
            started later could not finish before the job's end.
    """

    file_fault_backoff = 0.5
    """Seconds of the first pause after a file fault (then doubled)."""

    def __init__(
        self,
        store: TrialStore,
        consumer: Consumer,
        *,
        name: str | None = None,
        follow: bool = False,
        lost_after: float = 3.0,
        poll: float = 0.5,
        max_broken: int | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        outage_limit: float = DEFAULT_OUTAGE_LIMIT,
        max_file_faults: int = 5,
        resume: ResumePolicy | None = None,
        job_id: str | None = None,
        task_id: str | None = None,
        reserve_until: float | None = None,
    ) -> None:
        if lost_after <= 1:
            msg = f"lost_after must be more than 1 heartbeat, not {lost_after}"
            raise ValueError(msg)
        retrying = retrying_store(store, consumer, outage_limit, lost_after)
        host = socket.gethostname()
        holder = holder_name(host)
        self._store = retrying
        self._consumer = consumer
        self._host = host
        self._name = name or f"{host}:{os.getpid()}"
        self._file_faults = FileFaults(max_file_faults, self.file_fault_backoff)
        beats = beats_of(consumer)
        on_reserved = None if beats is None else beats.reserved
        self._leasing = Leasing(retrying, self._name, host, holder, self._file_faults, on_reserved)
        # the reclaimer spares the worker's own leases, or takes those it knows not of (orphans)
        known = self._leasing.holding.keys
        self._reclaimer = Reclaimer(
            retrying, host, consumer.heartbeat, lost_after, holder, known, self._leasing.news
        )
        self._follow = follow
        self._poll = poll
        self._max_broken = max_broken
        self._on_outcome = on_outcome
        self._resume = resume or ResumePolicy()
        self._tally = Tally()
        self._recorder = Recorder(retrying, GroupCommit(retrying), self._tally, self._resume)
        self._interrupted: set[str] = set()
        self._job_id = job_id
        self._task_id = task_id
        self._reserve_until = reserve_until
        self._left_on: str | None = None
        """The signal the worker was told to leave by."""
        self._error: Exception | None = None
        """The error that ends the worker early."""
        self._said_out_of_time = False
        """Whether the "too late" line was logged (once, by the first lane to stop)."""
        self._presence = Presence(store, self.info, consumer.heartbeat)

    # -- configuration and counts, read-only -----------------------------------------------

    @property
    def store(self) -> RetryingStore:
        """Where the trials are (wrapped so as to wait out outages)."""
        return self._store

    @property
    def consumer(self) -> Consumer:
        """What runs each trial."""
        return self._consumer

    @property
    def host(self) -> str:
        """This host's name, as given to the store."""
        return self._host

    @property
    def name(self) -> str:
        """This worker's name in the store."""
        return self._name

    @property
    def ran(self) -> int:
        """Attempts this worker ran and recorded."""
        return self._tally.ran

    @property
    def trial_ids(self) -> AbstractSet[str]:
        """The trials it ran (ids only: a long-running worker must not keep every outcome)."""
        return self._tally.trial_ids

    @property
    def slowest(self) -> list[Outcome]:
        """Its three slowest attempts, slowest first (a copy)."""
        return list(self._tally.slowest)

    @property
    def rejected(self) -> int:
        """Results the store refused because the lease had moved on (a late worker's)."""
        return self._tally.rejected

    @property
    def broken(self) -> int:
        """Broken outcomes recorded (retried ones not counted)."""
        return self._tally.broken

    @property
    def error(self) -> Exception | None:
        """The error that ended the worker early, if one did."""
        return self._error

    def running_trial(self, trial_id: str) -> Trial | None:
        """The trial of that id this worker holds a lease on now, if any (``None`` after)."""
        lease = self._leasing.by_id.get(trial_id)
        return None if lease is None else lease.trial

    @property
    def interrupted(self) -> AbstractSet[str]:
        """Trials whose script interrupted itself here (not started again without ``follow``)."""
        return self._interrupted

    @property
    def is_halted(self) -> bool:
        """Whether the worker reserves no more trials (interrupted, ``max_broken``, an error)."""
        broken_out = self._max_broken is not None and self._tally.broken >= self._max_broken
        return self._consumer.is_halted or broken_out or self._error is not None

    @property
    def left_on(self) -> str | None:
        """The signal the worker was told to leave by (see :meth:`leave`), if any."""
        return self._left_on

    @property
    def is_out_of_time(self) -> bool:
        """Whether it is too late to start a trial (``reserve_until`` has passed)."""
        return self._reserve_until is not None and time.time() >= self._reserve_until

    def _stopping(self) -> bool:
        return self.is_halted or self.is_out_of_time

    def leave(self, signal_name: str) -> None:
        """Reserve nothing more, stop every running trial; what does not complete is preempted."""
        self._left_on = self._left_on or signal_name
        self._recorder.leave()  # an outcome the store cannot take now stays on disk
        self._consumer.interrupt()

    def info(self) -> WorkerInfo:
        """This worker as its store's ``workers`` table shows it."""
        return WorkerInfo(
            name=self._name,
            host=self._host,
            pid=os.getpid(),
            job_id=self._job_id,
            task_id=self._task_id,
            running=len(self._consumer.running),
            state=WorkerState.STOPPING if self._stopping() else WorkerState.RUNNING,
        )

    async def run(self) -> None:
        """
        Run lanes and the reclaimer until every lane is done (drained, halted or cancelled).

        Raises:
            StoreUnavailable: the store stayed unreachable longer than the outage limit.
            StoreError: the store failed in a way no retry can mend (a newer schema...).
            TrialFilesError: creating trials' files failed ``max_file_faults`` times in a row.
            TemplateError, SlotError: a trial reserved is one this consumer cannot run (an
                unknown placeholder, more slots than it has): it was handed back unstarted,
                still waiting, and the trials running then ran to their end.
        """
        await self._presence.record(starting=True)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._until_error, self._reclaimer.run_forever)
                tg.start_soon(self._presence.beat_forever)
                lane = partial(self._until_error, self._run_lane, self._left_lane)
                await run_copies(lane, lanes(self.consumer.max_concurrency, self._max_broken))
                tg.cancel_scope.cancel()
                await self._until_error(self._leasing.release)
            log_traffic(beats_of(self.consumer), self._recorder.commits, self._tally.ran)
        finally:
            await self._presence.record(state=WorkerState.EXITED)
        if self._error is not None:
            raise self._error

    async def _until_error(self, work: Callable[[], Awaitable[None]], then: Done = None) -> None:
        """Run ``work``, then ``then``; an error not the trials' own ends the worker (and its trials)."""
        try:
            await work()
        except (StoreError, TrialFilesError) as exc:
            # leaving, an unreachable store is no error
            if not (isinstance(exc, StoreUnavailable) and self._left_on is not None):
                self._error = self._error or exc
            # after file faults the running trials run to their end; a store error stops them
            if not isinstance(exc, TrialFilesError):
                self._consumer.interrupt()
        if then is not None:
            then()

    def _left_lane(self) -> None:
        # the idle lanes look now, not at their next poll (the worker may have halted)
        self._leasing.nudge()
        if self.is_out_of_time and not self._said_out_of_time:
            self._said_out_of_time = True
            logger.warning("too late to start another trial before the job ends: leaving")

    async def _run_lane(self) -> None:
        leasing = self._leasing
        with leasing.lane() as lane:
            while not self._stopping():
                skip = () if self._follow else self._interrupted
                # the place first, so that a trial reserved starts at once
                async with self.consumer.place() as place:
                    lease = await leasing.reserve(skip, self._follow, self._stopping, lane)
                    if lease is not None:
                        try:
                            await self._run(lease, place)
                        finally:
                            leasing.done(lease)
                        continue
                if not self._follow and await leasing.may_leave(self._interrupted):
                    return
                await leasing.idle(lane, self._poll)

    async def _run(self, lease: Lease, place: Place) -> None:
        if not self._follow and lease.trial_id in self._interrupted:
            await self._leasing.hand_back(lease, "its script interrupted itself earlier here")
            return
        try:
            outcome = await self._recorder.run(self.consumer, lease, place)
        except TrialFilesError as exc:
            await self._leasing.give_back(lease, exc)
            return
        except (TemplateError, SlotError) as exc:
            # this worker's command or slots cannot run it: the worker's misfit, not the
            # trial's fault; halted before the lanes look again, it reserves nothing more
            self._error = self._error or exc
            await self._leasing.hand_back(lease, f"this worker cannot run it: {exc}")
            return
        except BaseException as exc:
            # nothing ran (or the error is the caller's): nothing is kept
            await self._leasing.hand_back(lease, f"{type(exc).__name__}: {exc}")
            raise
        if outcome is None:
            return  # it never started (the worker halted first): its reservation is undone
        outcome = stopped_here(outcome, self._left_on)
        if interrupted_itself(outcome):
            self._interrupted.add(outcome.trial_id)
        delay = retry_delay(self.consumer.retry, outcome, halted=self.is_halted)
        requeue = delay is not None
        if not await self._recorder.finish(lease, outcome, requeue):
            return
        if delay is not None:
            log_retry(outcome, delay)
            await anyio.sleep(delay)
        self._tally.count(outcome, broken=outcome.status is Status.BROKEN and not requeue)
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        self._file_faults.ran(lease, outcome)


def retrying_store(
    store: TrialStore, consumer: Consumer, outage_limit: float, lost_after: float
) -> RetryingStore:
    """
    The worker's store, wrapped in a :class:`RetryingStore` that waits out outages.

    A store already wrapped is used as it is. When the consumer's heartbeats go through the same
    wrapper, it knows when each lease was last renewed, so a finish is retried for as long as
    its lease can be valid; else for the whole outage limit.
    """
    if isinstance(store, RetryingStore):
        retrying = store
    else:
        retrying = RetryingStore(store, outage=Outage(outage_limit))
    if retrying.lease_seconds is None and consumer.store is retrying:
        retrying.lease_seconds = lost_after * consumer.heartbeat
    return retrying
