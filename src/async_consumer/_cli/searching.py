"""
A search from the command line: priors in the command (Orion's syntax), ``--space`` and the
config template; the sampler, pruner, seed and total; the search a worker finds in its store.
"""

from __future__ import annotations

import argparse

from .._errors import SpaceError
from .._experiment import Experiment
from .._search.samplers import default_pruner, default_sampler
from .._search.search import Search, SearchPlan
from .._search.space import Space, rewrite_command, rewrite_config
from .._trial.command import ConfigTemplate
from ..stores import TrialStore
from .consumer_setup import slot_demand
from .experiment import command_of
from .usage_checks import UsageError

__all__ = ["DEFAULT_TRIALS", "plan_of", "search_for_worker", "search_of"]

DEFAULT_TRIALS = 100
"""A search's total when ``-n`` is not given."""


_OPTIONS = {
    "max_trials": "n",
    "sampler": "sampler",
    "pruner": "pruner",
    "seed": "seed",
    "metric": "metric",
}
"""The options of a search, and the field of the plan each sets."""


def _space_of(args: argparse.Namespace) -> Space:
    """
    The space the command's priors, its ``--space`` file and its config template declare;
    their placeholders are put in ``args`` (``search_command``, ``search_config``).
    """
    command, space = rewrite_command(command_of(args))
    args.search_command = command
    if getattr(args, "space", None):
        space = space + Space.load(args.space)
    if args.config_template:
        template = ConfigTemplate.load(args.config_template)
        data, declared = rewrite_config(template.data)
        if declared:
            args.search_config = ConfigTemplate(
                path=template.path, data=data, is_yaml=template.is_yaml
            )
            space = space + declared
    return space


def plan_of(args: argparse.Namespace) -> SearchPlan | None:
    """
    The search ``run`` is asked for (``None``: no prior anywhere, a list of trials instead).

    Raises:
        SpaceError: a prior is unknown or impossible, or the sampler or pruner is (one line).
        UsageError: search options without a space, or a space beside ``--params``/``--grid``.
    """
    space = _space_of(args)
    searching = [o for o in _OPTIONS if getattr(args, o, None) is not None]
    # what the command leaves out is the experiment's, once it is recorded (``keeping``)
    args.search_given = frozenset(_OPTIONS[o] for o in searching)
    if not space:
        if searching:
            option = "-n" if searching[0] == "max_trials" else f"--{searching[0]}"
            msg = f"{option} needs a search space: a prior in the command, e.g. --lr~'loguniform(1e-5, 1)', or --space FILE"
            raise UsageError(msg)
        return None
    if getattr(args, "params", None) or getattr(args, "grid", None):
        msg = "a search space (priors) and --params/--grid cannot be mixed: give one or the other"
        raise UsageError(msg)
    return SearchPlan(
        space=space,
        sampler=args.sampler or default_sampler(),
        pruner=args.pruner or default_pruner(),
        n=args.max_trials or DEFAULT_TRIALS,
        seed=args.seed,
        metric=args.metric,
    )


def search_of(
    args: argparse.Namespace, store: TrialStore, plan: SearchPlan, *, maximize: bool
) -> Search:
    """The search ``run`` suggests for, at the experiment version (and direction) it belongs to."""
    return Search(
        store,
        plan,
        experiment=args.experiment,
        version=args.experiment_version,
        maximize=maximize,
        slots=slot_demand(args.slots_per_trial, args.slots),
    )


async def search_for_worker(args: argparse.Namespace, store: TrialStore) -> Search | None:
    """
    The search a ``worker`` takes part in: the one its experiment's record in the store holds
    (``None``: the experiment is not a search). The worker's command may hold the same priors
    (they are replaced by their placeholders); the plan is the store's, not the command's.

    Raises:
        SpaceError: the worker's command declares another space than the recorded one.
    """
    recorded: Experiment | None = await store.experiment(args.experiment)
    space = _space_of(args)
    if recorded is None or recorded.search is None:
        if space:
            raise SpaceError(_no_search_yet(args.experiment))
        return None
    plan = SearchPlan.from_json(recorded.search)
    if space and space.spec() != {n: t for n, t in plan.space.spec().items() if n in space.names}:
        msg = f"experiment {args.experiment!r} searches another space than this command's priors"
        raise SpaceError(msg)
    args.experiment_version = recorded.version
    return Search(
        store,
        plan,
        experiment=args.experiment,
        version=recorded.version,
        maximize=recorded.maximize,
        slots=slot_demand([], args.slots),
    )


def _no_search_yet(experiment: str) -> str:
    """Why a worker with priors has no search to join, and how to start one (one line)."""
    return (
        f"experiment {experiment!r} has no search in this store: a worker joins a search that `run` or `launch` "
        f"started; start it with `async-consumer run -n N --store URL --experiment {experiment} "
        "-- COMMAND` (the same command, priors and all), then start workers"
    )
