"""
A search that lives in the store: any worker with a free place suggests the next trial.

The search's ``k``-th trial has the id ``<experiment>-<k>`` (``-v<version>`` after the first
version), for ``k`` from 1 to ``n``. Suggesting is adding that trial: the store's unique ids make
``n`` the total over every worker (two workers asking for the same ``k`` get one trial, and the
one that lost takes ``k + 1``), and a worker killed while it suggests leaves either the trial,
new in the store for any worker to run, or nothing. The sampler is fed the search's finished
trials from the store (other workers', earlier runs'), read again only when the store's counts
of finished trials change. No process holds anything the search needs but the store.

The values a pruner judges (each trial's objective at each step) are recorded in the store too:
those reported here are kept in memory and written together (:meth:`Search.flush`) with the
worker's own beat, once a heartbeat interval, and before a trial's outcome is recorded; those
recorded by every process are read on from a cursor (:meth:`Search.share`, on the same beat),
so that a trial running in another process is in the study as a running trial with its values,
and a finished trial is fed to it with its whole curve, whichever process ran it. Values are
written with their lease's token, and kept only while it is current. The pruner's ``auto``
resource is recorded among the values too, the first estimate being the fleet's.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from pydantic import JsonValue

from .._errors import DuplicateTrial, TrialNotFound
from .._models import Lease, Outcome, Reason, Status, StoredTrial, Trial, TrialStatus
from .._supervise.metrics import Metric
from .._trial.paths import ATTEMPTS
from ..stores import IntermediateValue, TrialStore
from ..stores._protocol import VALUES_PAGE
from .plan import SearchPlan
from .samplers import Finished, RandomSampler
from .study import OptunaStudy

__all__ = ["Search", "SearchPlan"]  # SearchPlan: from .plan, here for its users

_FINISHED = (TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.BROKEN)
_MODELS = frozenset({"tpe", "gp", "cmaes"})  # samplers that learn from completed trials

STARTUP = 10
"""
Finished trials a model-based sampler (TPE, GP, CMA-ES) waits for, drawing at random: completed
ones, and for TPE pruned ones too (as Optuna's TPE counts its startup; GP and CMA-ES learn from
completed trials only). Counting only completed ones, a search whose pruner stops most trials
would stay random throughout.
"""


class Search:
    """
    Suggests trials into a store for a search plan, and prunes the ones that run here.

    Args:
        store: the experiment's store, shared with every other worker of the search.
        plan: the space, sampler, pruner and total.
        experiment: the experiment's name; ``version``: its version (ids of its own).
        maximize: higher objectives are better (the experiment's direction).
        slots: the slots each trial asks for.
    """

    def __init__(
        self,
        store: TrialStore,
        plan: SearchPlan,
        *,
        experiment: str = "default",
        version: int = 1,
        maximize: bool = False,
        slots: Mapping[str, int] | None = None,
    ) -> None:
        self.store = store
        self.plan = plan
        self.experiment = experiment
        self.version = version
        self.maximize = maximize
        self.slots = dict(slots or {})
        self.random = RandomSampler(plan.space, plan.seed)
        uses_optuna = plan.sampler != "random" or plan.pruner != "none"
        self.study = (
            OptunaStudy(
                plan.space,
                plan.sampler,
                plan.pruner,
                seed=plan.seed,
                maximize=maximize,
                name=self.name,
            )
            if uses_optuna
            else None
        )
        self._next: int | None = None  # every k below it is taken
        self._lock = anyio.Lock()
        self._objective_name: str | None = plan.metric
        self.pruned: dict[str, int] = {}
        """The trials this search pruned here, and the step each was pruned at."""
        self._unsent: list[tuple[IntermediateValue, int]] = []  # not yet written: with tokens
        self._tokens: dict[str, int] = {}  # the token of the latest lease of each trial here
        self._cursor = 0  # the store's values before it were read
        self._curves: dict[str, dict[int, float]] = {}  # others' trials' values, read
        self._strangers: set[str] = set()  # ids with values but no trial in the store

    @property
    def name(self) -> str:
        """The search's name: its experiment's, and version's after the first."""
        return self.experiment if self.version == 1 else f"{self.experiment}-v{self.version}"

    @property
    def resource_id(self) -> str:
        """
        Where the fleet's estimate of the pruner's resource is recorded: among the values, at
        the pruner's step, under an id no trial has (the first value of a step is kept).
        """
        return f"{self.name}:resource"

    def id_of(self, k: int) -> str:
        """The id of the search's ``k``-th trial."""
        suffix = f"-v{self.version}" if self.version > 1 else ""
        return f"{self.experiment}-{k}{suffix}"

    def is_mine(self, trial_id: str) -> bool:
        """Whether the trial is one of this search's."""
        suffix = f"-v{self.version}" if self.version > 1 else ""
        pattern = re.escape(self.experiment) + r"-\d+" + re.escape(suffix)
        return re.fullmatch(pattern, trial_id) is not None

    def k_of(self, trial_id: str) -> int:
        """The place of one of the search's trials (its ``k``)."""
        return int(trial_id[len(self.experiment) + 1 :].split("-", 1)[0])

    async def suggest(self) -> bool:
        """
        Add the search's next trial to the store; ``False`` once it has all ``n`` trials.

        Raises:
            StoreError: the store failed (a ``DuplicateTrial`` is a race lost, not an error).
        """
        async with self._lock:
            if self._next is None:
                self._next = await self._count_taken() + 1
            if self._next > self.plan.n:
                return False
            asked = await self._ask() if self.study is not None else None
            params, handle = asked if asked is not None else ({}, None)
            while self._next <= self.plan.n:
                k = self._next
                self._next += 1
                if handle is None:
                    params = self._random(k)
                if await self._add(
                    Trial(
                        id=self.id_of(k),
                        params=params,
                        experiment=self.experiment,
                        slots=self.slots,
                    )
                ):
                    if handle is not None and self.study is not None:
                        self.study.bind(self.id_of(k), k, handle)
                    return True
            if handle is not None and self.study is not None:
                self.study.discard(handle)
            return False

    async def _ask(self) -> tuple[dict[str, JsonValue], Any] | None:
        """
        The model's next point and its study trial, the study fed first (``None``: the random
        sampler's k-th point instead, or nothing left to try: then the search is complete).
        """
        assert self.study is not None
        assert self._next is not None
        await self._feed()
        if self.plan.sampler == "random" or self._starting():
            return None
        if self.plan.pruner == "hyperband":  # the sampler learns from k's bracket: the k
            # this trial will take, past those other processes took since
            self._next = max(self._next, await self._count_taken() + 1)
        asked = await anyio.to_thread.run_sync(self.study.ask, self._next)
        if asked is None:  # a grid whose every point was tried
            self._next = self.plan.n + 1
        return asked

    def _starting(self) -> bool:
        """
        Whether the model-based sampler has too little evidence yet (fewer finished trials
        than :data:`STARTUP`, as it counts them): the k-th trial is then the random sampler's, so that processes
        starting together try different points, the same ones whichever process suggests.
        """
        assert self.study is not None
        pruned = self.plan.sampler == "tpe"
        return self.plan.sampler in _MODELS and self.study.evidence(pruned=pruned) < STARTUP

    def _random(self, k: int) -> dict[str, JsonValue]:
        params = self.random.ask(k)
        if self.study is not None:
            params.update(self.study.fixed)
        return params

    async def _add(self, trial: Trial) -> bool:
        try:
            return await self.store.add([trial], exist_ok=True) == 1
        except DuplicateTrial:
            return False  # another worker took this k with other parameters

    async def _count_taken(self) -> int:
        counts = await self.store.counts([self.id_of(k) for k in range(1, self.plan.n + 1)])
        return sum(counts.values())

    async def _feed(self) -> None:
        """
        Feed the study the search's trials that finished since it was last fed, each with
        its curve: the values are read after the trials, so a finished trial's are all in.
        """
        assert self.study is not None
        assert self._next is not None
        counts = await self.store.counts([self.id_of(k) for k in range(1, self._next)])
        if sum(counts[status] for status in _FINISHED) <= self.study.finished:
            await self._read_values()
            await self._settle([])
            return  # every finished trial of the search is known here (those run here are)
        new: list[StoredTrial] = []
        for status in _FINISHED:
            offset = 0
            while page := await self.store.list(status, offset=offset, limit=500):
                offset += len(page)
                new += (t for t in page if self.is_mine(t.id) and not self.study.is_finished(t.id))
        await self._read_values()
        finished = [self._finished(stored) for stored in new]
        await self._settle(finished)
        for one in finished:
            self.study.feed(one, self.k_of(one.trial_id))

    async def _settle(self, finished: list[Finished]) -> None:
        """
        Settle the pruner's resource for the fleet, if it waits for one and this process has
        evidence (its completed trials, and ``finished``): record its estimate unless one is
        recorded already, and take the first one recorded. Before the finished trials are fed,
        so that they get their rungs.
        """
        assert self.study is not None
        steps = [max(f.curve) for f in finished if f.state == "complete" and f.curve]
        proposal = self.study.unsettled(steps)
        if proposal is None:
            return
        step, value = proposal
        await self.store.record_values([IntermediateValue(self.resource_id, step, value)])
        await self._read_values()  # the first one recorded: ours, or another process's

    async def _read_values(self) -> None:
        """
        Read the values recorded since the last read: those of other processes' trials go to
        the study as their running trials' values; the fleet's estimate settles the pruner.
        """
        assert self.study is not None
        while True:
            values, self._cursor = await self.store.read_values(self._cursor)
            new: dict[str, dict[int, float]] = {}
            for trial_id, step, value in values:
                if trial_id == self.resource_id:
                    self.study.settle(step, value)
                elif self.is_mine(trial_id) and not (
                    self.study.is_following(trial_id) or self.study.is_finished(trial_id)
                ):
                    self._curves.setdefault(trial_id, {}).setdefault(step, value)
                    new.setdefault(trial_id, {}).setdefault(step, value)
            for trial_id, curve in new.items():
                await self._elsewhere(trial_id, curve)
            if len(values) < VALUES_PAGE:
                return

    async def _elsewhere(self, trial_id: str, curve: dict[int, float]) -> None:
        """Give the study a trial's values reported in another process, as it runs there."""
        assert self.study is not None
        if trial_id in self._strangers:
            return
        if not self.study.knows_elsewhere(trial_id):
            try:
                stored = await self.store.get(trial_id)
            except TrialNotFound:
                self._strangers.add(trial_id)
                return
            params = stored.trial.params
        else:
            params = {}
        self.study.elsewhere(trial_id, self.k_of(trial_id), params, curve)

    async def flush(self) -> None:
        """
        Record in the store the values reported here since the last flush, in one write,
        fenced by their leases' tokens: the store keeps a trial's values only while it is
        reserved under the lease they were reported under (a holder whose lease was reclaimed
        writes nothing). Values of an earlier lease of a trial leased here again are dropped.
        """
        if not self._unsent:
            return
        unsent, self._unsent = self._unsent, []
        current = [value for value, token in unsent if self._tokens.get(value.trial_id) == token]
        tokens = {value.trial_id: self._tokens[value.trial_id] for value in current}
        try:
            await self.store.record_values(current, tokens=tokens)
        except BaseException:
            self._unsent[:0] = unsent  # kept for the next write
            raise

    async def share(self) -> None:
        """Record the values reported here; feed the pruner what other processes recorded."""
        if self.study is None or self.plan.pruner == "none":
            return
        await self.flush()
        async with self._lock:
            if self._next is None:
                self._next = await self._count_taken() + 1
            await self._feed()

    def _finished(self, stored: StoredTrial) -> Finished:
        outcome = stored.outcome
        state = {TrialStatus.COMPLETED: "complete", TrialStatus.PRUNED: "pruned"}
        curve = self._curves.pop(stored.id, None)
        if curve is None:  # none in the store (recorded before it kept values): the file's
            curve = self._curve(outcome) if outcome is not None else {}
        value = outcome.objective if outcome is not None else None
        return Finished(
            stored.id, stored.trial.params, state.get(stored.status, "fail"), value, curve
        )

    def _curve(self, outcome: Outcome) -> dict[int, float]:
        """The objective at each step, from the attempt's metrics file (if this host sees it):
        the curve of a trial that ended before the store kept values."""
        if not outcome.working_dir:
            return {}
        path = Path(outcome.working_dir) / ATTEMPTS / str(outcome.attempt) / "metrics.jsonl"
        curve: dict[int, float] = {}
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return {}
        for line in lines:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                step, value = data.get("step"), self._value_of(data)
                if isinstance(step, int) and value is not None:
                    curve.setdefault(step, value)
        return curve

    def _value_of(self, values: Mapping[str, Any]) -> float | None:
        """The objective's value in a metrics line: ``metric``'s key, else the only number."""
        name = self._objective_name
        if name is None:
            numbers = [k for k, v in values.items() if k != "step" and _is_number(v)]
            name = numbers[0] if len(numbers) == 1 else "objective"
        value = values.get(name)
        return float(value) if isinstance(value, int | float) and _is_number(value) else None

    # -- pruning the trials that run here ----------------------------------------------------

    def adopt(self, lease: Lease) -> None:
        """Follow a trial leased here with the pruner (asked for elsewhere, or here)."""
        trial = lease.trial
        self._tokens[trial.id] = lease.token
        if self.study is not None and self.plan.pruner != "none" and self.is_mine(trial.id):
            self.study.adopt(trial.id, self.k_of(trial.id), trial.params)

    def report(self, metric: Metric) -> bool:
        """
        The consumer's metrics callback: report a trial's objective at a step to the pruner;
        ``True`` (stop the trial) when the pruner says so.
        """
        value = self._value_of(metric.values)
        if self.study is None or metric.step is None or value is None:
            return False
        token = self._tokens.get(metric.trial_id)
        if self.study.is_following(metric.trial_id) and token is not None:
            value_here = IntermediateValue(metric.trial_id, metric.step, value)
            self._unsent.append((value_here, token))
        if not self.study.report(metric.trial_id, metric.step, value):
            return False
        self.pruned[metric.trial_id] = metric.step
        return True

    def ended(self, outcome: Outcome, params: Mapping[str, JsonValue]) -> None:
        """Tell the study how a trial that ran here ended (not an attempt that runs again)."""
        if self.study is None:
            return
        if self._objective_name is None:
            for result in outcome.results:
                if result.type == "objective":
                    self._objective_name = result.name
        if outcome.status is Status.COMPLETED:
            state = "complete"
        elif outcome.reason is Reason.PRUNED:
            state = "pruned"
        elif outcome.status is Status.BROKEN:
            state = "fail"
        else:
            return  # interrupted or lost: it runs again
        if self.is_mine(outcome.trial_id):
            finished = Finished(outcome.trial_id, params, state, outcome.objective)
            self.study.feed(finished, self.k_of(outcome.trial_id))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
