"""What the command line checks before it touches anything: stores, directories, trial ids."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from .._errors import TrialNotFound
from .._models import StoredTrial
from ..stores import TrialStore
from ..stores.sqlite import path_from_url
from .consumer_setup import default_store_url
from .store_pages import pages

__all__ = ["UsageError", "check_program", "find_trial", "read_store_url", "writable_dir"]


class UsageError(Exception):
    """Bad input from the command line: one line to stderr, exit status 2."""


def read_store_url(args: argparse.Namespace) -> str:
    """
    The store a read command looks at: ``--store``, or the one ``run`` uses in this directory.

    Raises:
        UsageError: a SQLite store that does not exist (reading must not create it).
    """
    url: str = args.store or default_store_url(args.experiment)
    if url.lower().startswith("sqlite:"):
        path = Path(path_from_url(url))
        if not path.is_file():
            hint = (
                "--store" if args.store else f"--store, or --experiment (now {args.experiment!r})"
            )
            msg = f"no store at {path}: nothing has run with it yet (check {hint})"
            raise UsageError(msg)
    return url


def check_program(command: list[str], *, in_trial_dir: bool = False) -> None:
    """
    Make sure the command's program can be executed, before any trial is recorded.

    A program given by a placeholder, or by a relative path that the trial's directory will
    resolve (``--cd-trial-dir``), is left to the trials.

    Raises:
        UsageError: the program is not found on PATH, or is not an executable file.
    """
    program = command[0] if command else ""
    if not program or "{" in program or (in_trial_dir and "/" in program and program[0] != "/"):
        return
    if "/" not in program:
        if shutil.which(program) is None:
            msg = f"cannot execute {program!r}: not found on PATH (nothing was run or recorded)"
            raise UsageError(msg)
        return
    if not os.path.isfile(program) or not os.access(program, os.X_OK):
        why = "not an executable file" if os.path.exists(program) else "no such file"
        msg = f"cannot execute {program!r}: {why} (nothing was run or recorded)"
        raise UsageError(msg)


def writable_dir(path: str | Path) -> None:
    """
    Make sure trial directories can be created under ``path``, before any trial is reserved.

    Raises:
        UsageError: the directory cannot be created or written to.
    """
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        msg = f"cannot create trial directories in {path}: {exc.strerror or exc}"
        raise UsageError(msg) from None


async def find_trial(store: TrialStore, prefix: str) -> StoredTrial:
    """
    The trial whose id is ``prefix``, or the only one whose id starts with it.

    Raises:
        UsageError: no trial, or several, match.
    """
    try:
        return await store.get(prefix)
    except TrialNotFound:
        pass
    matches: list[StoredTrial] = []  # the first few: a prefix may match most of a large store
    found = 0
    async for page in pages(store):  # a page at a time: memory stays flat whatever the store
        for trial in page:
            if trial.id.startswith(prefix):
                found += 1
                if len(matches) < 6:
                    matches.append(trial)
    if found == 1:
        return matches[0]
    if not found:
        msg = f"no trial with an id starting with {prefix!r}"
        raise UsageError(msg)
    shown = ", ".join(t.id for t in matches[:5]) + (", ..." if found > 5 else "")
    msg = f"{found} trials have ids starting with {prefix!r} ({shown}): give more of it"
    raise UsageError(msg)
