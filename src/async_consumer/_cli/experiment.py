"""
Which version of an experiment a ``run`` belongs to: the store's record of its command decides.

The first run of an experiment records its command template, config template and code version.
A later run with the same command resumes that version; with a different one it is refused
(results of two commands would be mixed silently) unless ``--new-version`` starts a new version,
which runs every trial again and keeps the old version's records.
"""

from __future__ import annotations

import argparse
import json

from .._experiment import Experiment, differences
from .._trial.codeversion import code_version, script_directory
from .._trial.command import ConfigTemplate
from ..stores import TrialStore

__all__ = ["ExperimentChanged", "command_of", "experiment_version"]


class ExperimentChanged(ValueError):
    """``run`` under an experiment's name with another command than the one recorded."""


def command_of(args: argparse.Namespace) -> list[str]:
    """The command after ``--`` (empty if there is none)."""
    argv: list[str] = args.argv
    return argv[1:] if argv[:1] == ["--"] else argv


async def _asked(args: argparse.Namespace, version: int) -> Experiment:
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
        search=getattr(args, "search_plan", None),
    )


async def experiment_version(args: argparse.Namespace, store: TrialStore) -> tuple[int, str]:
    """
    The version this run belongs to (recorded now if new), and a note for the user ("" if none).

    Raises:
        ExperimentChanged: the command or config differs from the recorded version's and
            ``--new-version`` was not given.
    """
    recorded = await store.experiment(args.experiment)
    if recorded is None:
        await store.add_experiment(await _asked(args, 1))
        return 1, ""
    asked = await _asked(args, recorded.version + 1)
    if args.new_version:
        await store.add_experiment(asked)
        note = (
            f"experiment {args.experiment!r} version {asked.version}: every trial runs "
            f"again (the records of version {recorded.version} are kept)"
        )
        return asked.version, note
    changes = differences(recorded, asked)
    if changes:
        msg = (
            f"experiment {args.experiment!r} (version {recorded.version}) ran another command: "
            f"{'; '.join(changes)}. Give a new --experiment NAME for a separate experiment, or "
            f"--new-version to start version {asked.version} of this one (every trial runs "
            f"again; the records of version {recorded.version} are kept)"
        )
        raise ExperimentChanged(msg)
    return recorded.version, ""
