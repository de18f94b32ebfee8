"""
The batch script of a worker fleet: a Slurm job array, one ``async-consumer worker`` per task.

A pure function of its spec, so that what ``launch slurm --dry-run`` prints is what is submitted,
and a user can keep the script, edit it and submit it by hand.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["FleetSpec", "batch_script", "slurm_seconds"]

_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")
_MEMORY = re.compile(r"\d+[KMGT]?", re.IGNORECASE)
_WORD = re.compile(r"[^\s'\"\\]+")


def slurm_seconds(text: str) -> int:
    """
    Seconds in a Slurm time limit: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M`` or ``D-H:M:S``.

    Raises:
        ValueError: the text is none of these forms, or a zero limit.
    """
    if not _TIME.fullmatch(text.strip()):
        msg = f"--time {text!r}: expected minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]"
        raise ValueError(msg)
    days, _, rest = text.strip().rpartition("-")
    parts = [int(part) for part in rest.split(":")]
    if days:  # D-H, D-H:M, D-H:M:S: hours first
        parts += [0] * (3 - len(parts))
        seconds = int(days) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:  # M, M:S, H:M:S
        units = {1: (60,), 2: (60, 1), 3: (3600, 60, 1)}[len(parts)]
        seconds = sum(part * unit for part, unit in zip(parts, units, strict=True))
    if seconds <= 0:
        msg = f"--time {text!r}: a time limit must be more than 0"
        raise ValueError(msg)
    return seconds


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """
    What a fleet's batch script asks of Slurm, and the worker each array task becomes.

    Attributes:
        workers: how many array tasks (one worker each).
        worker_argv: the full command line of one worker (``async-consumer worker ...``).
        cpus_per_worker: ``--cpus-per-task``.
        gpus_per_worker: ``--gres=gpu:N``; Slurm sets ``CUDA_VISIBLE_DEVICES`` for the worker.
        mem: ``--mem`` per worker, e.g. ``8G``.
        time: ``--time``, the time limit of each worker, e.g. ``04:00:00``.
        partition: ``--partition``.
        account: ``--account``.
        signal_before: seconds before the time limit at which Slurm sends the worker SIGUSR1
            (``--signal=B:USR1@S``), so it stops its trials while they can still checkpoint.
        job_name: ``--job-name``.
        chdir: ``--chdir``: where the workers start (relative paths in the command resolve there).
        output: ``--output``: where each worker's own output goes.
        sbatch_args: more ``#SBATCH`` options, each as given (e.g. ``--qos=high``).
    """

    workers: int
    worker_argv: Sequence[str]
    cpus_per_worker: int | None = None
    gpus_per_worker: int | None = None
    mem: str | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    signal_before: int | None = None
    job_name: str = "async-consumer"
    chdir: str | None = None
    output: str | None = None
    sbatch_args: Sequence[str] = field(default_factory=tuple)

    def check(self) -> None:
        """
        Raise ``ValueError`` naming the first option that Slurm could not take as it is.

        Raises:
            ValueError: a bad count, time, memory size, or a value with spaces or a newline.
        """
        for name, count in (
            ("--workers", self.workers),
            ("--cpus-per-worker", self.cpus_per_worker),
            ("--gpus-per-worker", self.gpus_per_worker),
        ):
            if count is not None and count < 1:
                msg = f"{name} must be 1 or more, not {count}"
                raise ValueError(msg)
        if self.mem is not None and not _MEMORY.fullmatch(self.mem):
            msg = f"--mem {self.mem!r}: expected a size such as 4000M or 8G"
            raise ValueError(msg)
        limit = slurm_seconds(self.time) if self.time is not None else None
        if self.signal_before is not None and limit is not None and self.signal_before >= limit:
            msg = f"--signal-before {self.signal_before} s is not less than --time {self.time}"
            raise ValueError(msg)
        for name, value in self._words():
            if not _WORD.fullmatch(value):
                msg = f"{name} {value!r}: expected one word without spaces or quotes"
                raise ValueError(msg)
        for arg in self.sbatch_args:
            if "\n" in arg or not arg.startswith("-"):
                msg = f"--sbatch-arg {arg!r}: expected one sbatch option such as --qos=high"
                raise ValueError(msg)

    def _words(self) -> list[tuple[str, str]]:
        """The options given, whose value is one word: each with its flag."""
        named = [
            ("--partition", self.partition),
            ("--account", self.account),
            ("--job-name", self.job_name),
            ("--chdir", self.chdir),
            ("--output", self.output),
        ]
        return [(name, value) for name, value in named if value is not None]

    def directives(self) -> list[str]:
        """The ``#SBATCH`` options, in the order they are written."""
        options = [f"--job-name={self.job_name}", f"--array=1-{self.workers}"]
        pairs = [
            ("--cpus-per-task", self.cpus_per_worker),
            ("--mem", self.mem),
            ("--time", self.time),
            # the one-word options but the job name, written first
            *((name, word) for name, word in self._words() if name != "--job-name"),
        ]
        options += [f"{name}={value}" for name, value in pairs if value is not None]
        if self.gpus_per_worker is not None:
            options.append(f"--gres=gpu:{self.gpus_per_worker}")
        if self.signal_before is not None:
            options.append(f"--signal=B:USR1@{self.signal_before}")
        return options + list(self.sbatch_args)


def batch_script(spec: FleetSpec) -> str:
    """
    The batch script of a fleet: ``#SBATCH`` options, then ``exec`` of one worker per task.

    ``exec`` makes the worker the batch step's main process, so that Slurm's signals reach it
    (a shell in between would not pass SIGTERM on).

    Raises:
        ValueError: an option Slurm could not take (see :meth:`FleetSpec.check`).
    """
    spec.check()
    lines = ["#!/bin/bash", *_header(spec)]
    lines += [f"#SBATCH {option}" for option in spec.directives()]
    lines += ["", "exec " + _command(spec.worker_argv), ""]
    return "\n".join(lines)


def _header(spec: FleetSpec) -> list[str]:
    lines = [
        f"# A fleet of {spec.workers} async-consumer workers sharing one store, a Slurm job array.",
        "# Written by `async-consumer launch slurm`; keep it, edit it, submit it again with",
        "#     sbatch THIS_FILE",
        "# Each array task runs one worker until the store has nothing left to run. On SIGTERM",
        "# (scancel, preemption, the time limit) a worker stops reserving, stops its trials",
        "# (they see SIGTERM: checkpoint and exit with the interrupt code) and records them",
        "# interrupted, so that another worker resumes each one in its own working directory.",
    ]
    if spec.signal_before is not None:
        lines.append(
            f"# SIGUSR1, {spec.signal_before} s before the time limit, does the same "
            "while trials can still checkpoint."
        )
    return lines


def _command(argv: Sequence[str]) -> str:
    """One option a line, the trial's command (after ``--``) on the last one."""
    parts: list[str] = []
    for index, word in enumerate(argv):
        if word == "--":
            parts.append(" \\\n    -- " + shlex.join(argv[index + 1 :]))
            break
        starts_option = word.startswith("-") and index > 0
        parts.append((" \\\n    " if starts_option else " ") + shlex.quote(word))
    return "".join(parts).lstrip()
