"""
The version-control state of the user's code, and what to do when it changes between trials.

Orion's consumer records the git commit and the uncommitted diff of the user script's repository
and refuses (or warns) when they change during a search, since results from two versions of the
code are not comparable. We do the same, off the event loop's critical path: ``git`` runs as an
async subprocess, at most once per ``interval`` seconds, and its answer serves every trial that
starts in that window.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

import anyio

__all__ = ["CodeChangePolicy", "CodeVersionWatch", "script_directory"]

logger = logging.getLogger("async_consumer")

_INTERPRETER = re.compile(r"(python|pypy)[\d.]*|.*/(python|pypy)[\d.]*")


class CodeChangePolicy(StrEnum):
    """What to do when the user's code changed since the consumer started."""

    WARN = "warn"
    ERROR = "error"
    IGNORE = "ignore"


def script_directory(argv: Sequence[str], cwd: Path | None = None) -> Path | None:
    """
    The directory of the user's script: argv[0], or the first file after an interpreter.

    ``None`` when no argument names an existing file (``python -c ...``, ``python -m ...``).
    """
    base = cwd or Path.cwd()
    candidates = list(argv[1:]) if _INTERPRETER.fullmatch(argv[0]) else [argv[0]]
    for arg in candidates:
        if arg in {"-c", "-m"}:
            return None
        if arg.startswith("-"):
            continue
        path = base / arg
        if path.is_file():
            return path.resolve().parent
        found = shutil.which(arg) if arg == argv[0] else None
        return Path(found).resolve().parent if found else None
    return None


async def _git(directory: Path, *args: str) -> bytes | None:
    try:
        result = await anyio.run_process(
            ["git", "-C", str(directory), *args],
            stdin=subprocess.DEVNULL,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except OSError:
        return None  # no git on this machine: no check, no error
    return result.stdout if result.returncode == 0 else None


async def code_version(directory: Path) -> str | None:
    """
    ``<commit>`` or ``<commit>+<hash of the uncommitted diff>``; ``None`` outside a repository.
    """
    commit = await _git(directory, "rev-parse", "HEAD")
    if commit is None:
        return None
    diff = await _git(directory, "diff", "HEAD", "--no-ext-diff", "--binary")
    version = commit.decode().strip()
    if diff:
        version += "+" + hashlib.sha256(diff).hexdigest()[:12]
    return version


class CodeVersionWatch:
    """
    Remembers the first version of the user's code and reports whether it changed since.

    Attributes:
        policy: what the consumer does on a change.
        interval: seconds during which one ``git`` answer is reused.
    """

    def __init__(self, policy: CodeChangePolicy, interval: float = 2.0) -> None:
        self.policy = policy
        self.interval = interval
        self.initial: str | None = None
        self._directory: Path | None = None
        self._checked_at = -float("inf")
        self._current: str | None = None
        self._started = False
        self._lock = anyio.Lock()

    async def check(self, argv: Sequence[str], cwd: Path | None) -> tuple[str | None, bool]:
        """Return the current version and whether it differs from the first one seen."""
        if self.policy is CodeChangePolicy.IGNORE or (self._started and self._directory is None):
            return None, False  # nothing to watch (ignored, not in a repository, or no git)
        async with self._lock:
            if not self._started:
                # nothing is set until git has answered: a first check that is cancelled
                # meanwhile leaves the next one to start again, not a version of None
                directory = script_directory(argv, cwd)
                initial = None if directory is None else await code_version(directory)
                self.initial = self._current = initial
                self._checked_at = anyio.current_time()
                # not in a repository, or no git: nothing to watch
                self._directory = None if initial is None else directory
                self._started = True
            if self._directory is None:
                return None, False
            if anyio.current_time() - self._checked_at >= self.interval:
                self._current = await code_version(self._directory)
                self._checked_at = anyio.current_time()
        changed = self._current is not None and self._current != self.initial
        return self._current, changed
