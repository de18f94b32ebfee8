"""Where a trial's files live: a 0700 directory under the consumer's base, named safely."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from pathlib import Path

from .._models import Trial
from .command import TrialPaths, json_file

__all__ = [
    "LineFollower",
    "params_json",
    "prepare_files",
    "read_regular",
    "safe_name",
    "tail",
    "trial_paths",
]

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
TAIL_BYTES = 4096
ATTEMPTS = "attempts"
"""The directory, inside a trial's working directory, that holds one directory per attempt."""


def safe_name(text: str) -> str:
    """
    A directory name for an id: the id itself when it is plain, else a slug plus a hash.

    ``../../etc``, ``a/b``, ``.`` or a 300-character id can never name a directory outside, or
    above, the one it is created in; two different ids never share a name.
    """
    if _PLAIN.fullmatch(text):
        return text
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60].strip("._-") or "trial"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def trial_paths(base_dir: Path, trial: Trial, config_suffix: str | None) -> TrialPaths:
    """
    The paths of one attempt: the trial's working directory, and the attempt's own files.

    The working directory is the trial's, shared by its attempts, so that checkpoints written
    there survive a retry or a resumption. The results, metrics, ``params.json``, config and
    logs are the attempt's, in ``attempts/<n>/`` inside it: a stale run that is still going
    (a frozen worker's) can never hand its results to another attempt.
    """
    working_dir = base_dir / safe_name(trial.experiment) / safe_name(trial.id)
    attempt_dir = working_dir / ATTEMPTS / str(trial.attempt)
    return TrialPaths(
        working_dir=working_dir,
        results=attempt_dir / "results.json",
        params=attempt_dir / "params.json",
        metrics=attempt_dir / "metrics.jsonl",
        stdout=attempt_dir / "stdout.log",
        stderr=attempt_dir / "stderr.log",
        config=attempt_dir / f"config{config_suffix}" if config_suffix else None,
    )


def _write(path: Path, data: bytes) -> None:
    # O_NOFOLLOW: a script that left a symlink here cannot make us write through it
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def params_json(trial: Trial) -> bytes:
    """
    The text of a trial's ``params.json``: its parameters as indented UTF-8 JSON.

    Raises:
        TemplateError: a value cannot be written as UTF-8 (a lone surrogate in a string).
    """
    return json_file(trial.params, trial.id, "params")


def prepare_files(
    paths: TrialPaths, params: bytes, config: bytes | None, made: set[Path] | None = None
) -> None:
    """
    Create the working directory (0700) and the files the script is promised.

    ``made`` remembers the parent directories already created, to spare a system call per
    trial (creating files is the consumer's main cost for a short trial). The logs are created
    by :meth:`ChildProcess.start`.
    """
    parent = paths.working_dir.parent
    if made is None or parent not in made:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if made is not None:
            made.add(parent)
    attempt_dir = paths.results.parent
    _own_dir(paths.working_dir)  # kept as it is: the checkpoints of earlier attempts are there
    _own_dir(attempt_dir.parent)
    if not _own_dir(attempt_dir):
        # the same attempt again (a trial run twice outside a store): start from a clean slate
        shutil.rmtree(attempt_dir)
        attempt_dir.mkdir(mode=0o700)
    _write(paths.params, params)
    _write(paths.results, b"")  # Orion's client refuses to import if the file is missing
    if config is not None and paths.config is not None:
        _write(paths.config, config)


def _own_dir(path: Path) -> bool:
    """
    Make sure ``path`` is a real directory (0700); return whether it was made just now.

    Whatever a script left in its place (a symlink, a file) is removed, never followed.
    """
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
            path.mkdir(mode=0o700)
            return True
        return False
    return True


_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


def read_regular(path: Path, offset: int | None, size: int) -> bytes:
    """
    Read up to ``size`` bytes of a file a script may have tampered with.

    Never follows a symlink, never blocks on a FIFO, reads nothing but a regular file; from
    ``offset``, or the last ``size`` bytes when ``offset`` is ``None``. Empty on any problem.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return b""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return b""
        start = max(0, info.st_size - size) if offset is None else offset
        return os.pread(fd, size, start)
    except OSError:
        return b""
    finally:
        os.close(fd)


class LineFollower:
    """
    Hands out the complete lines appended to a file a script writes, as they come.

    A line longer than ``max_line`` is handed out in pieces rather than buffered for ever.
    """

    def __init__(self, path: Path, max_line: int = 64 * 1024) -> None:
        self.path = path
        self.max_line = max_line
        self.offset = 0
        self.partial = b""

    def read(self, final: bool = False) -> list[bytes]:
        """The new complete lines (and, if ``final``, the unfinished last one)."""
        chunk = read_regular(self.path, self.offset, 1024 * 1024)
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        if self.partial and (final or len(self.partial) > self.max_line):
            lines.append(self.partial)
            self.partial = b""
        return lines


def tail(path: Path, size: int = TAIL_BYTES) -> str:
    """The last ``size`` bytes of a log, decoded leniently; empty if it is gone or not a file."""
    try:
        if os.lstat(path).st_size == 0:  # the common case, in one system call
            return ""
    except OSError:
        return ""
    return read_regular(path, None, size).decode("utf-8", errors="replace")
