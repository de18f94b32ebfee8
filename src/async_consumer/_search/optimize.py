"""
``await optimize(study, consumer, n_trials=...)``: an Optuna study's loop over isolated scripts.

Each trial is asked for when a place frees (no batch barrier: the sampler sees every trial
completed so far), runs as its own process under the consumer (timeouts, logs, classified
outcomes), reports the objective of each metrics line to the study's pruner, and is stopped
(SIGTERM, grace) when the pruner says so: Optuna records it ``PRUNED``, its outcome is
interrupted with reason ``pruned``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from .._consumer import Consumer
from .._models import Outcome, Reason, Status, Trial
from .._supervise.metrics import Metric
from .space import Space
from .study import Shape

__all__ = ["optimize", "pruning_callback"]


def pruning_callback(trial: Any, metric: str | None = None) -> Callable[[Metric], bool]:
    """
    A metrics callback that reports an Optuna trial's objective at each step to its pruner,
    and answers ``True`` (stop the trial) when the pruner says so.

    Args:
        trial: an ``optuna.Trial`` (from ``study.ask``).
        metric: the key of a metrics line that holds the objective (``None``: the line's only
            number besides ``step``).
    """
    reported: set[int] = set()

    def report(line: Metric) -> bool:
        value = _value(line.values, metric)
        if line.step is None or value is None or line.step in reported:
            return False
        reported.add(line.step)
        trial.report(value, line.step)
        return bool(trial.should_prune())

    return report


def _value(values: Mapping[str, Any], metric: str | None) -> float | None:
    if metric is None:
        numbers = [k for k, v in values.items() if _is_number(v)]
        metric = numbers[0] if len(numbers) == 1 else "objective"
    value = values.get(metric)
    return float(value) if isinstance(value, int | float) and _is_number(value) else None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


async def optimize(
    study: Any,
    consumer: Consumer,
    n_trials: int,
    *,
    space: Space | Mapping[str, str],
    metric: str | None = None,
    experiment: str = "default",
) -> list[Outcome]:
    """
    Run ``n_trials`` trials of an Optuna study through the consumer; their outcomes, as they end.

    Args:
        study: an ``optuna.Study``; its sampler asks, its pruner prunes, it is told each result.
        consumer: runs each trial; at most its ``max_concurrency`` at once.
        n_trials: how many trials to run.
        space: the parameters, in Orion's syntax (``{"lr": "loguniform(1e-5, 1)"}``) or a
            :class:`Space`.
        metric: the key of a metrics line the pruner reads (``None``: the line's only number).
        experiment: the trials' experiment name (their ids are ``<study name>-<number>``).

    Raises:
        SpaceError: a prior cannot be parsed.
    """
    shape = Shape.of(space if isinstance(space, Space) else Space.of(space))
    outcomes: list[Outcome] = []
    async with anyio.create_task_group() as tg:
        for _ in range(n_trials):
            tg.start_soon(_one, study, consumer, shape, metric, experiment, outcomes)
    return outcomes


async def _one(
    study: Any,
    consumer: Consumer,
    shape: Shape,
    metric: str | None,
    experiment: str,
    outcomes: list[Outcome],
) -> None:
    """Ask the study for a trial once a place is free, run it, tell the study how it ended."""
    async with consumer.place() as place:
        asked = study.ask(shape.distributions)
        trial = Trial(
            id=f"{study.study_name}-{asked.number}",
            params=shape.cast(asked.params),
            experiment=experiment,
        )
        hook = pruning_callback(asked, metric)
        outcome = await consumer.run(trial, place=place, on_metric=hook)
    _tell(study, asked, outcome)
    outcomes.append(outcome)


def _tell(study: Any, asked: Any, outcome: Outcome) -> None:
    """Tell the study how its trial ended: its objective, pruned, or failed."""
    import optuna

    states = optuna.trial.TrialState
    if outcome.status is Status.COMPLETED and outcome.objective is not None:
        study.tell(asked, outcome.objective)
    elif outcome.reason is Reason.PRUNED:
        study.tell(asked, state=states.PRUNED)
    else:
        study.tell(asked, state=states.FAIL)
