"""The consumer and the store that the command line's options describe."""

from __future__ import annotations

import argparse

from .._consumer import Consumer
from .._limits import Limits
from .._retry import RetryPolicy
from .._supervise.contain import choose
from .._supervise.heartbeat import HeartbeatTarget
from .._supervise.metrics import MetricCallback
from .._trial.paths import safe_name
from .trial_params import SourceError, parse_assignment

__all__ = ["consumer_from", "containment_line", "default_store_url", "slot_demand"]


def _slot_pools(assignments: list[str]) -> dict[str, list[str]]:
    pools = {}
    for text in assignments:
        kind, ids = parse_assignment(text, "--slots")
        pools[kind] = [i.strip() for i in ids if i.strip()]
    return pools


def slot_demand(assignments: list[str], pools: list[str]) -> dict[str, int]:
    """``--slots-per-trial gpu=1`` as ``{"gpu": 1}``; by default one of each kind in ``pools``."""
    demand = {parse_assignment(text, "--slots")[0]: 1 for text in pools}
    for text in assignments:
        kind, values = parse_assignment(text, "--slots-per-trial")
        if len(values) != 1 or not values[0].isdigit():
            msg = f"--slots-per-trial {text!r}: expected KIND=COUNT"
            raise SourceError(msg)
        demand[kind] = int(values[0])
    return demand


def default_store_url(experiment: str) -> str:
    """Where ``run`` keeps its trials unless told otherwise."""
    return f"sqlite:///.async-consumer/{safe_name(experiment)}.db"


def consumer_from(
    args: argparse.Namespace,
    store: HeartbeatTarget | None = None,
    on_metric: MetricCallback | None = None,
) -> Consumer:
    """
    The consumer that the command's options describe.

    Raises:
        SourceError: no command after ``--``, or a malformed ``--slots``.
    """
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    # a search's command and config template: its priors replaced by placeholders (searching.py)
    command = getattr(args, "search_command", None) or command
    if not command:
        msg = "no command: put the script to run after --, e.g. -- python train.py --x {x}"
        raise SourceError(msg)
    return Consumer(
        command,
        base_dir=args.base_dir,
        run_in_working_dir=args.cd_trial_dir,
        config_template=getattr(args, "search_config", None) or args.config_template,
        env_deny=args.env_deny,
        timeout=args.timeout,
        grace=args.grace,
        store=store,
        heartbeat=args.heartbeat,
        stall_timeout=args.stall_timeout,
        on_metric=on_metric,
        slots=_slot_pools(args.slots),
        retry=RetryPolicy.of(args.retries),
        code_change=args.code_change,
        experiment_version=getattr(args, "experiment_version", 1),
        max_concurrency=args.jobs,
        watchdog=True,
        echo=args.echo,
        child_watcher=True,
        limits=_limits(args),
        containment=args.containment,
    )


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(memory=args.memory, cpus=args.cpus, pids=args.pids)


def containment_line(args: argparse.Namespace) -> str:
    """The containment the options give, as the line shown at start-up."""
    return choose(args.containment, _limits(args)).describe()
