"""
Echo a running script's output to the terminal, each line prefixed with its trial's id.

The script writes to its log files (never to a pipe that could fill up and block it); this
follows the files and copies complete lines, so that parallel trials never interleave inside a
line. What is still unechoed when the script ends is flushed then.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import anyio

from .lines import LineFollower

__all__ = ["echo"]


class _Tail:
    def __init__(self, path: Path, sink: TextIO, prefix: str) -> None:
        self.lines = LineFollower(path)
        self.sink = sink
        self.prefix = prefix

    def pump(self, final: bool = False) -> None:
        lines = self.lines.read(final)
        if lines:
            text = "".join(f"{self.prefix}{line.decode('utf-8', 'replace')}\n" for line in lines)
            self.sink.write(text)
            self.sink.flush()


async def echo(trial_id: str, stdout: Path, stderr: Path, poll: float = 0.1) -> None:
    """Copy new lines of both logs to our stdout and stderr until cancelled, then flush the rest."""
    tails: Sequence[_Tail] = (
        _Tail(stdout, sys.stdout, f"[{trial_id}] "),
        _Tail(stderr, sys.stderr, f"[{trial_id}] "),
    )
    try:
        while True:
            for tail in tails:
                tail.pump()
            await anyio.sleep(poll)
    finally:
        for tail in tails:
            tail.pump(final=True)
