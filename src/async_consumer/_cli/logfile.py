"""A log file shown on stdout: streamed a block at a time, its last lines, what is appended."""

from __future__ import annotations

import os
import sys

__all__ = ["FOLLOW_POLL", "copy_from", "tail_offset"]

BLOCK = 1 << 16
"""Bytes read at once: a 200 MB log never sits in memory."""
FOLLOW_POLL = 0.25
"""Seconds between two looks at a followed log (and at its trial in the store)."""


def tail_offset(path: str, lines: int) -> int:
    """Where the last ``lines`` lines of the file begin (0 if it has fewer, or does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    try:
        end = os.fstat(fd).st_size
        position, seen = end, 0
        if end and os.pread(fd, 1, end - 1) == b"\n":
            seen = -1  # the last line's own newline starts nothing
        while position > 0:
            start = max(0, position - BLOCK)
            block = os.pread(fd, position - start, start)
            for index in range(len(block) - 1, -1, -1):
                if block[index] == 0x0A:
                    seen += 1
                    if seen == lines:
                        return start + index + 1
            position = start
        return 0
    finally:
        os.close(fd)


def copy_from(path: str, offset: int) -> int:
    """Write the file from ``offset`` to its current end to stdout; return the new offset."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return offset  # a running attempt's log may not be there yet
    try:
        out = sys.stdout.buffer
        while block := os.pread(fd, BLOCK, offset):
            out.write(block)
            offset += len(block)
        out.flush()
        return offset
    finally:
        os.close(fd)
