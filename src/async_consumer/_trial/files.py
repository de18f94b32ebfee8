"""A trial's files: created in a 0700 directory before the script starts, read back warily."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO

from pydantic_core import PydanticSerializationError, to_json

from .._errors import TemplateError
from .._models import Trial
from .paths import TrialPaths

__all__ = ["json_file", "open_log", "params_json", "prepare_files", "prepare_logs", "read_regular"]

logger = logging.getLogger("async_consumer")


def _write(path: str, data: bytes) -> None:
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
    paths: TrialPaths, params: bytes, config: bytes | None, made: set[str] | None = None
) -> None:
    """
    Create the trial's working directory and the attempt's (0700), and the promised files.

    ``made`` remembers the parent directories already created, to spare a system call per
    trial (creating files is the consumer's main cost for a short trial). The logs are created
    by :meth:`ChildProcess.start`.
    """
    text = paths.text  # as text: a Path would be parsed again at each use
    parent = os.path.dirname(text.working_dir)
    if made is None or parent not in made:
        os.makedirs(parent, mode=0o700, exist_ok=True)
        if made is not None:
            made.add(parent)
    attempt_dir = os.path.dirname(text.results)
    # kept as it is: the checkpoints of earlier attempts are there
    if not _own_dir(text.working_dir):
        _warn_if_other_params(os.path.dirname(attempt_dir), params)
    _own_dir(os.path.dirname(attempt_dir))
    if not _own_dir(attempt_dir):
        # the same attempt again (a trial run twice outside a store): start from a clean slate
        shutil.rmtree(attempt_dir)
        os.mkdir(attempt_dir, mode=0o700)
    _write(text.params, params)
    _write(text.results, b"")  # Orion's client refuses to import if the file is missing
    if config is not None and text.config is not None:
        _write(text.config, config)


def _warn_if_other_params(attempts_dir: str, params: bytes) -> None:
    """
    Warn when the latest earlier attempt in a trial's directory ran other parameters: a trial
    id used again for another trial, whose checkpoints there are not this one's. (A warning,
    not a refusal: a trial may be re-run with changed parameters on purpose.)
    """
    try:
        numbers = sorted(int(n) for n in os.listdir(attempts_dir) if n.isdigit())
    except OSError:
        return
    if not numbers:
        return
    earlier = read_regular(os.path.join(attempts_dir, str(numbers[-1]), "params.json"), 0, 1 << 20)
    try:
        same = not earlier or json.loads(earlier) == json.loads(params)
    except ValueError:
        same = False
    if not same:
        logger.warning(
            "%s holds an earlier trial's files with other parameters (attempt %d: %s): its "
            "checkpoints are not this trial's; give each trial an id of its own",
            os.path.dirname(attempts_dir),
            numbers[-1],
            " ".join(earlier.decode(errors="replace").split())[:200],
        )


def _own_dir(path: str) -> bool:
    """
    Make sure ``path`` is a real directory (0700); return whether it was made just now.

    Whatever a script left in its place (a symlink, a file) is removed, never followed.
    """
    try:
        os.mkdir(path, mode=0o700)
    except FileExistsError:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
            os.mkdir(path, mode=0o700)
            return True
        return False
    return True


def open_log(path: str | Path) -> BinaryIO:
    """
    Create a log afresh for the child to append to (a local file: opening it does not block).

    ``O_APPEND`` so that the script and its children never overwrite each other's lines;
    ``O_NOFOLLOW`` so that a symlink left by an earlier attempt is never written through.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.fdopen(os.open(path, flags, 0o600), "ab", buffering=0)


def prepare_logs(
    paths: TrialPaths, params: bytes, config: bytes | None, made: set[str]
) -> tuple[BinaryIO, BinaryIO]:
    """Create the attempt's files and return its two logs, open for the child."""
    prepare_files(paths, params, config, made)
    stdout = open_log(paths.text.stdout)
    try:
        return stdout, open_log(paths.text.stderr)
    except BaseException:
        stdout.close()
        raise


_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


def read_regular(path: str | Path, offset: int | None, size: int) -> bytes:
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


def json_file(value: object, trial_id: str, what: str) -> bytes:
    """
    ``value`` as indented UTF-8 JSON, for a file a trial's script reads.

    pydantic's encoder: json's, with an indent, leaves reference cycles for the collector.

    Raises:
        TemplateError: a value cannot be written as UTF-8 (a lone surrogate in a string).
    """
    try:
        return to_json(value, indent=2)
    except PydanticSerializationError as exc:
        msg = f"trial {trial_id!r}: its {what} cannot be written as JSON: {exc}"
        raise TemplateError(msg) from None
