"""Follow the lines a script appends to a file, and read a log's tail, never trusting the file."""

from __future__ import annotations

import os
from pathlib import Path

from .._trial.files import read_regular

__all__ = ["TAIL_BYTES", "LineFollower", "tail"]

TAIL_BYTES = 4096


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


def tail(path: str | Path, size: int = TAIL_BYTES) -> str:
    """The last ``size`` bytes of a log, decoded leniently; empty if it is gone or not a file."""
    try:
        if os.lstat(path).st_size == 0:  # the common case, in one system call
            return ""
    except OSError:
        return ""
    return read_regular(path, None, size).decode("utf-8", errors="replace")
