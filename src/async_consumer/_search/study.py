"""
Optuna's samplers and pruners on an in-memory study over a search space, fed the search's
trials (of every process) as they come: what ``tpe``, ``cmaes``, ``gp``, ``qmc``, ``grid`` and the
pruners ``median``, ``asha``, ``hyperband`` run on. The study holds the trials that run here,
those that run elsewhere (as running trials with the values they reported, once they reported
one) and those that finished: the picture an Optuna study shared by every process would give.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue

from .._errors import SpaceError
from .dimension import Dimension
from .samplers import Finished
from .space import Space

if TYPE_CHECKING:
    import optuna

__all__ = ["OptunaStudy", "Shape"]


def _distribution(dim: Dimension) -> Any:
    from optuna import distributions as d

    if dim.prior == "choices":
        return d.CategoricalDistribution(dim.choices)
    if dim.prior == "normal":  # Optuna has no normal prior: its 3-sigma interval, uniform
        low, high = dim.low - 3 * dim.high, dim.low + 3 * dim.high
        if dim.discrete:
            return d.IntDistribution(math.ceil(low), math.floor(high))
        return d.FloatDistribution(low, high)
    log = dim.prior == "loguniform"
    if dim.discrete:
        high = dim.high - 1 if dim.prior == "randint" else dim.high
        return d.IntDistribution(math.ceil(dim.low), math.floor(high), log=log)
    return d.FloatDistribution(dim.low, dim.high, log=log)


def _grid(space: Space) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for dim in space.dimensions:
        if dim.prior == "choices":
            grid[dim.name] = list(dim.choices)
        elif dim.discrete and dim.prior != "normal" and dim.high - dim.low <= 1000:
            high = dim.high - 1 if dim.prior == "randint" else dim.high
            grid[dim.name] = list(range(math.ceil(dim.low), math.floor(high) + 1))
        elif dim.prior != "fidelity":
            msg = f"{dim.name}: the grid sampler needs choices or a small discrete range"
            raise SpaceError(msg)
    return grid


def _make_sampler(name: str, space: Space, seed: int | None) -> Any:
    import optuna

    samplers = optuna.samplers
    if name == "tpe":
        return samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "cmaes":
        return samplers.CmaEsSampler(seed=seed)
    if name == "gp":
        return samplers.GPSampler(seed=seed)
    if name == "qmc":
        return samplers.QMCSampler(seed=seed)
    if name == "grid":

        class Grid(samplers.GridSampler):
            """Optuna's grid, without its ``study.stop()`` when the grid is done: the search's
            total and :meth:`OptunaStudy.ask` end a search here, not an optimize loop."""

            def after_trial(self, *args: object, **kwargs: object) -> None:
                return None

        return Grid(_grid(space), seed=seed)
    return samplers.RandomSampler(seed=seed)


@dataclass(frozen=True, slots=True)
class Shape:
    """
    A space as Optuna's distributions, and how a sampled point becomes a trial's parameters.

    Attributes:
        distributions: each sampled dimension's Optuna distribution (a fidelity is not one).
        fixed: the values every trial gets as they are (a fidelity: its ``high``).
    """

    space: Space
    distributions: dict[str, Any]
    fixed: dict[str, JsonValue]

    @classmethod
    def of(cls, space: Space) -> Shape:
        """The shape of ``space`` (Optuna must be installed)."""
        fidelity = [d for d in space.dimensions if d.prior == "fidelity"]
        fixed: dict[str, JsonValue] = {d.name: d.sample(random.Random()) for d in fidelity}
        sampled = {d.name: _distribution(d) for d in space.dimensions if d.prior != "fidelity"}
        return cls(space, sampled, fixed)

    def cast(self, params: Mapping[str, Any]) -> dict[str, JsonValue]:
        """Optuna's point as the parameters of a trial: rounded to each prior's precision."""
        dims = {d.name: d for d in self.space.dimensions}
        values: dict[str, JsonValue] = dict(self.fixed)
        for name, value in params.items():
            dim = dims[name]
            values[name] = dim.cast(value) if dim.kind in ("real", "integer") else value
        return values


class OptunaStudy:
    """
    An in-memory Optuna study over a space, fed the search's trials as they come.

    Args:
        space: the search space (a fidelity dimension is not sampled: it is set to its ``high``).
        sampler: ``tpe``, ``cmaes``, ``gp``, ``qmc``, ``grid`` or ``random``.
        pruner: ``median``, ``asha``, ``hyperband`` or ``none``.
        seed: the sampler's seed.
        maximize: higher objectives are better.
        name: the study's name, the same in every process of the search (Hyperband hashes it).
    """

    def __init__(
        self,
        space: Space,
        sampler: str = "tpe",
        pruner: str = "none",
        *,
        seed: int | None = None,
        maximize: bool = False,
        name: str = "default",
    ) -> None:
        import optuna

        from .pruners import make_pruner

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        fidelity = [d for d in space.dimensions if d.prior == "fidelity"]
        self.space = space
        self.shape = Shape.of(space)
        self.fixed = self.shape.fixed
        self.distributions = self.shape.distributions
        max_resource = int(fidelity[0].high) if fidelity else None
        # each process its own stream: several processes of one search must not all suggest
        # the same points (the startup's random trials are the k-th trial's, see Search)
        own = None if seed is None else (seed * 1_000_003 + os.getpid()) % 2**32
        self.study: optuna.Study = optuna.create_study(
            study_name=name,
            sampler=_make_sampler(sampler, space, own),
            pruner=make_pruner(pruner, max_resource),
            direction="maximize" if maximize else "minimize",
        )
        self.grid_size: int | None = None
        """How many points the grid sampler has (``None``: another sampler)."""
        if sampler == "grid":
            self.grid_size = math.prod(len(values) for values in _grid(space).values())
        self._live: dict[str, optuna.Trial] = {}
        self._steps: dict[str, set[int]] = {}  # the steps reported of each live trial
        self._elsewhere: dict[str, int] = {}  # trials running elsewhere: their study trial ids
        self._done: set[str] = set()  # the trials it was told had finished

    @property
    def _storage(self) -> Any:
        return self.study._storage

    def ask(self, k: int | None = None) -> tuple[dict[str, JsonValue], Any] | None:
        """
        New parameters, and the study's trial they belong to (see :meth:`bind`); ``None``
        when the sampler has nothing left to try (a grid whose every point was tried).

        ``k``: the place in the search the trial will most likely take. The study's trial has
        it before it is sampled, so that under Hyperband the sampler learns from the trials of
        the bracket that ``k`` puts it in (Optuna's sampler sees only those of its trial's
        bracket), the bracket every process puts it in, not one hashed from this process's own
        numbering. A lost race (another process took ``k``) moves it on :meth:`bind`.
        """
        if self.grid_size is not None:
            states = self.study_states()
            tried = self.study.get_trials(
                deepcopy=False, states=(states.COMPLETE, states.RUNNING, states.PRUNED)
            )
            if len(tried) >= self.grid_size:
                return None
        if k is not None:
            self._expect(k)
        trial = self.study.ask(self.distributions)
        return self.shape.cast(trial.params), trial

    def _expect(self, k: int) -> None:
        """A waiting trial that holds ``k``: the one the study's next ask takes and samples."""
        import optuna

        from .pruners import PLACE

        waiting = optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING, system_attrs={PLACE: k}
        )
        self._storage.create_new_trial(self.study._study_id, template_trial=waiting)

    @property
    def finished(self) -> int:
        """How many of the search's trials the study was told had finished."""
        return len(self._done)

    def bind(self, trial_id: str, k: int, trial: Any) -> None:
        """The store took ``trial``'s parameters as the trial ``trial_id``, the search's ``k``-th."""
        from .pruners import PLACE

        self._storage.set_trial_system_attr(trial._trial_id, PLACE, k)
        self._live[trial_id] = trial

    def discard(self, trial: Any) -> None:
        """The store did not take ``trial``'s parameters (the search is full): forget them."""
        import optuna

        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def evidence(self, *, pruned: bool = False) -> int:
        """
        How many trials the sampler learns from: the completed ones the study knows, and the
        pruned ones too with ``pruned`` (TPE's: Optuna's ``n_startup_trials`` counts them).
        """
        states = self.study_states()
        kept = (states.COMPLETE, states.PRUNED) if pruned else (states.COMPLETE,)
        return len(self.study.get_trials(deepcopy=False, states=kept))

    @staticmethod
    def study_states() -> Any:
        """Optuna's trial states."""
        import optuna

        return optuna.trial.TrialState

    def given(self, params: Mapping[str, JsonValue]) -> Any:
        """The study's trial for parameters chosen elsewhere (see :meth:`bind`)."""
        sampled = {k: v for k, v in params.items() if k in self.distributions}
        self.study.enqueue_trial(sampled, skip_if_exists=False)
        return self.study.ask(self.distributions)

    def adopt(self, trial_id: str, k: int, params: Mapping[str, JsonValue]) -> None:
        """
        Follow a trial that runs here, suggested by another process (for its pruner): the
        study's trial it had as running elsewhere, with the values reported there, if any.
        """
        import optuna

        if trial_id in self._live or trial_id in self._done:
            return
        number = self._elsewhere.pop(trial_id, None)
        if number is None:
            self.bind(trial_id, k, self.given(params))
            return
        self._live[trial_id] = optuna.Trial(self.study, number)
        self._steps[trial_id] = set(self._storage.get_trial(number).intermediate_values)

    def is_following(self, trial_id: str) -> bool:
        """Whether the trial runs here, its values reported to this study as they come."""
        return trial_id in self._live

    def report(self, trial_id: str, step: int, value: float) -> bool:
        """Report a trial's objective at ``step``; whether the pruner says to stop it."""
        trial = self._live.get(trial_id)
        steps = self._steps.setdefault(trial_id, set())
        if trial is None or step in steps:
            return False  # a step reported twice (a resumed attempt): the first one counts
        steps.add(step)
        trial.report(value, step)
        return bool(trial.should_prune())

    def elsewhere(
        self, trial_id: str, k: int, params: Mapping[str, JsonValue], values: Mapping[int, float]
    ) -> None:
        """
        Values reported by a trial that runs in another process: the study holds it as a
        running trial with them, and with the rungs they complete (as if its pruner ran here).
        """
        import optuna

        if trial_id in self._live or trial_id in self._done:
            return
        from .pruners import PLACE

        number = self._elsewhere.get(trial_id)
        if number is not None:
            self._add_values(number, values)
            return
        try:
            frozen = optuna.trial.create_trial(
                params=self._sampled(params),
                distributions=self.distributions,
                state=optuna.trial.TrialState.RUNNING,
                intermediate_values=dict(values),
                system_attrs={PLACE: k},
            )
        except ValueError:
            return  # not a point of this space (another version's): not its business
        number = self._storage.create_new_trial(self.study._study_id, template_trial=frozen)
        self._elsewhere[trial_id] = number
        self._replay(number)

    def _sampled(self, params: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
        """A trial's parameters that the study samples (not a fidelity's, for one)."""
        sampled = {k: v for k, v in params.items() if k in self.distributions}
        if set(sampled) != set(self.distributions):
            msg = "not a point of this space"
            raise ValueError(msg)
        return sampled

    def _replay(self, number: int) -> None:
        """
        Record on a trial run elsewhere the rungs of successive halving its values completed,
        as its own pruner recorded them there (``asha``, and each ``hyperband`` bracket's).
        """
        from .pruners import Halving, Hyperband, rungs_of

        pruner = self.study.pruner
        if not isinstance(pruner, Halving | Hyperband):
            return
        frozen = self._storage.get_trial(number)
        halving = pruner.halving_of(self.study, frozen)
        if halving is None:
            return
        for key, value in rungs_of(halving, frozen.intermediate_values).items():
            if key not in frozen.system_attrs:
                self._storage.set_trial_system_attr(number, key, value)

    def knows_elsewhere(self, trial_id: str) -> bool:
        """Whether the study holds the trial as running in another process."""
        return trial_id in self._elsewhere

    def unsettled(self, more: Sequence[int] = ()) -> tuple[int, int] | None:
        """
        What this process proposes for the fleet's pruner (its step in the search's resource
        record, and the value), if the pruner waits for one and the study has evidence: its
        completed trials' last steps, and ``more`` (those of completed trials to be fed).
        """
        from .pruners import Halving, Hyperband

        pruner = self.study.pruner
        if not isinstance(pruner, Halving | Hyperband) or pruner.settled:
            return None
        states = (self.study_states().COMPLETE,)
        trials = self.study.get_trials(deepcopy=False, states=states)
        value = pruner.proposal([t.last_step for t in trials if t.last_step is not None] + [*more])
        return None if value is None else (pruner.step, value)

    def settle(self, step: int, value: float) -> None:
        """The fleet's estimate for the pruner (the first recorded): the running trials' rungs."""
        from .pruners import Halving, Hyperband

        pruner = self.study.pruner
        if not isinstance(pruner, Halving | Hyperband) or pruner.step != step:
            return
        pruner.settle(self.study, int(value))
        for number in self._elsewhere.values():
            self._replay(number)

    def feed(self, finished: Finished, k: int) -> None:
        """Tell the study how a trial ended (once a trial; its own trial if it ran here)."""
        import optuna

        states = optuna.trial.TrialState
        state = {"complete": states.COMPLETE, "pruned": states.PRUNED}.get(
            finished.state, states.FAIL
        )
        if state == states.COMPLETE and finished.value is None:
            state = states.FAIL
        if finished.trial_id in self._done:
            return
        trial = self._live.pop(finished.trial_id, None)
        steps = self._steps.pop(finished.trial_id, set())
        if trial is not None:
            self._done.add(finished.trial_id)
            for step, value in finished.curve.items():
                if step not in steps:
                    trial.report(value, step)
            final = finished.value if state == states.COMPLETE else None
            self.study.tell(trial, final, state=state)
            return
        self.elsewhere(finished.trial_id, k, finished.params, finished.curve)
        self._done.add(finished.trial_id)
        number = self._elsewhere.pop(finished.trial_id, None)
        if number is None:
            return  # not a point of this space
        complete = state == states.COMPLETE and finished.value is not None
        self._storage.set_trial_state_values(number, state, [finished.value] if complete else None)

    def _add_values(self, number: int, curve: Mapping[int, float]) -> None:
        """Add the steps of ``curve`` the study's trial ``number`` lacks, and their rungs."""
        known = self._storage.get_trial(number).intermediate_values
        for step, value in curve.items():
            if step not in known:
                self._storage.set_trial_intermediate_value(number, step, value)
        self._replay(number)

    def is_finished(self, trial_id: str) -> bool:
        """Whether the study was told this trial had finished."""
        return trial_id in self._done
