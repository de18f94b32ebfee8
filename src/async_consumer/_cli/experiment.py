"""
Which version of an experiment a ``run`` belongs to: the store's record of its command decides.

The first run of an experiment records its command template, config template, code version and
direction (``--maximize``). A later run with the same command resumes that version; with a
different one it is refused (results of two commands would be mixed silently) unless
``--new-version`` starts a new version, which runs every trial again and keeps the old
version's records. A version none of whose attempts ever started a script (a typo in the
program) holds no result to mix: a corrected command simply replaces the recorded one.

Every command that ranks trials (``status``, ``trials``, ``report``, a second ``run``) takes
the direction recorded with the experiment; a flag that contradicts it is refused. A search's
sampler, pruner, total, seed and metric are the recorded ones too, unless the command gives them.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from .._experiment import Experiment, differences
from .._models import Reason
from .._search.plan import SearchPlan
from .._trial.codeversion import code_version, script_directory
from .._trial.command import ConfigTemplate
from ..stores import TrialStore
from .store_pages import pages
from .trial_params import version_of

__all__ = [
    "Chosen",
    "ExperimentChanged",
    "command_of",
    "direction_of",
    "experiment_version",
    "misplaced_options",
]

_NEVER_STARTED = frozenset({Reason.NOT_EXECUTABLE, Reason.CODE_CHANGED})
"""Reasons of attempts whose script never started."""


class ExperimentChanged(ValueError):
    """``run`` under an experiment's name with another command than the one recorded."""


@dataclass(frozen=True, slots=True)
class Chosen:
    """
    The experiment version a run belongs to.

    Attributes:
        version: its number.
        maximize: its direction, as recorded.
        note: a line for the user ("" if none).
        replaced: the recorded command was replaced (no script of the version ever started):
            its trials that broke without starting run again.
    """

    version: int
    maximize: bool
    note: str = ""
    replaced: bool = False


def command_of(args: argparse.Namespace) -> list[str]:
    """The command after ``--`` (empty if there is none)."""
    argv: list[str] = args.argv
    return argv[1:] if argv[:1] == ["--"] else argv


def _flag(maximize: bool) -> str:
    return "--maximize" if maximize else "--minimize"


async def _asked(args: argparse.Namespace, version: int, maximize: bool) -> Experiment:
    command = command_of(args)
    config = None
    if args.config_template:
        data = ConfigTemplate.load(args.config_template).data
        config = json.dumps(data, sort_keys=True, ensure_ascii=False)
    directory = script_directory(command)
    code = await code_version(directory) if directory is not None else None
    return Experiment(
        name=args.experiment,
        version=version,
        command=tuple(command),
        config=config,
        code_version=code,
        maximize=maximize,
        search=getattr(args, "search_plan", None),
    )


def misplaced_options(
    recorded: tuple[str, ...], asked: tuple[str, ...], options: frozenset[str]
) -> list[str]:
    """
    The options of ``run`` (among ``options``) that ``asked`` adds at the end of ``recorded``:
    given after ``--``, they went to the script's command instead of ``run``.
    """
    if len(asked) <= len(recorded) or asked[: len(recorded)] != recorded:
        return []
    return [item for item in asked[len(recorded) :] if item.split("=", 1)[0] in options]


async def _ever_started(store: TrialStore, recorded: Experiment) -> bool:
    """Whether some attempt of the recorded version started its script (or may be running)."""
    async for page in pages(store):
        for stored in page:
            trial = stored.trial
            if trial.experiment != recorded.name:
                continue
            if version_of(trial, recorded.version) != recorded.version:
                continue
            for attempt in stored.attempts:
                outcome = attempt.outcome
                if outcome is None or outcome.reason not in _NEVER_STARTED:
                    return True
    return False


async def experiment_version(
    args: argparse.Namespace,
    store: TrialStore,
    options: Callable[[], frozenset[str]] = frozenset,
) -> Chosen:
    """
    The version this run belongs to (recorded now if new), its direction, and a note.

    ``options()``: the options of ``run``, to recognise one given after ``--`` by mistake
    (asked for only when the command differs from the recorded one).

    Raises:
        ExperimentChanged: the command, config or direction differs from the recorded
            version's and ``--new-version`` was not given.
    """
    flag: bool | None = args.maximize
    recorded = await store.experiment(args.experiment)
    if recorded is None:
        await store.add_experiment(await _asked(args, 1, bool(flag)))
        return Chosen(1, bool(flag))
    maximize = recorded.maximize if flag is None else flag
    _keep_search(args, recorded)
    asked = await _asked(args, recorded.version + 1, maximize)
    if args.new_version:
        return await _new_version(store, recorded, asked)
    changes = differences(recorded, asked)
    if not changes:
        await _record_total(store, recorded, asked)
        return Chosen(recorded.version, maximize)
    _refuse_misplaced(recorded, asked, options())
    same_direction = recorded.maximize == asked.maximize
    if same_direction and not await _ever_started(store, recorded):
        return await _replace(store, recorded, asked)
    msg = (
        f"experiment {args.experiment!r} (version {recorded.version}) ran another command: "
        f"{'; '.join(changes)}. Give a new --experiment NAME for a separate experiment, or "
        f"--new-version (before the --) to start version {asked.version} of this one (every "
        f"trial runs again; the records of version {recorded.version} are kept)"
    )
    raise ExperimentChanged(msg)


def _keep_search(args: argparse.Namespace, recorded: Experiment) -> None:
    """A search's options the command left out are the recorded experiment's, as its direction is."""
    asked: str | None = getattr(args, "search_plan", None)
    if recorded.search is not None and asked is not None:
        plan = SearchPlan.from_json(asked)
        kept = plan.keeping(SearchPlan.from_json(recorded.search), args.search_given)
        args.search_plan = kept.to_json()


async def _record_total(store: TrialStore, recorded: Experiment, asked: Experiment) -> None:
    """A search's new total (``-n``, the one change allowed) is the experiment's from now on."""
    if asked.search != recorded.search:
        await store.add_experiment(
            recorded.model_copy(update={"search": asked.search}), replace=True
        )


async def _new_version(store: TrialStore, recorded: Experiment, asked: Experiment) -> Chosen:
    """Record ``asked`` as the experiment's next version (``--new-version``)."""
    await store.add_experiment(asked)
    note = (
        f"experiment {recorded.name!r} version {asked.version}: every trial runs "
        f"again (the records of version {recorded.version} are kept)"
    )
    return Chosen(asked.version, asked.maximize, note)


async def _replace(store: TrialStore, recorded: Experiment, asked: Experiment) -> Chosen:
    """Record ``asked``'s command as ``recorded``'s version's (no script of it ever started)."""
    await store.add_experiment(asked.model_copy(update={"version": recorded.version}), replace=True)
    note = (
        f"experiment {recorded.name!r}: no script of it ever started, so its command is "
        f"now {shlex.join(asked.command)!r}"
    )
    return Chosen(recorded.version, asked.maximize, note, replaced=True)


def _refuse_misplaced(recorded: Experiment, asked: Experiment, options: frozenset[str]) -> None:
    """Say so when the command differs only by options of ``run`` put after ``--``."""
    wrong = misplaced_options(recorded.command, asked.command, options)
    if wrong and recorded.config == asked.config:
        shown = " ".join(asked.command[len(recorded.command) :])
        msg = (
            f"{shown!r} came after --, so it went to the script's command: put the options of "
            f"run before the --, e.g. async-consumer run ... {shown} -- "
            f"{' '.join(recorded.command)}"
        )
        raise ExperimentChanged(msg)


async def direction_of(args: argparse.Namespace, store: TrialStore) -> bool:
    """
    Whether higher objectives are better for a command that reads ``args.experiment``: the
    direction recorded with the experiment, else the flag (lower is better by default).

    Raises:
        ExperimentChanged: the flag contradicts the recorded direction.
    """
    flag: bool | None = getattr(args, "maximize", None)
    recorded = await store.experiment(args.experiment)
    if recorded is None:
        return bool(flag)
    if flag is not None and flag != recorded.maximize:
        msg = (
            f"experiment {args.experiment!r} ranks its trials with {_flag(recorded.maximize)} "
            f"(recorded by its first run): leave out {_flag(flag)}, or start a new version "
            f"with run --new-version {_flag(flag)}"
        )
        raise ExperimentChanged(msg)
    return recorded.maximize
