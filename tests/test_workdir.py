"""Reading files a script writes: complete lines as they come, never blocking, never following."""

from __future__ import annotations

import os
from pathlib import Path

from async_consumer._supervise.lines import LineFollower, tail
from async_consumer._trial.paths import safe_name


def test_line_follower_hands_out_complete_lines(tmp_path: Path) -> None:
    """Only complete lines come out; the unfinished one waits, or comes out when final."""
    path = tmp_path / "log"
    path.write_bytes(b"one\ntw")
    follower = LineFollower(path)
    assert follower.read() == [b"one"]
    with path.open("ab") as log:
        log.write(b"o\nthree")
    assert follower.read() == [b"two"]
    assert follower.read(final=True) == [b"three"]
    assert follower.read(final=True) == []


def test_line_follower_bounds_a_runaway_line(tmp_path: Path) -> None:
    """A line longer than the bound is handed out in pieces, not buffered for ever."""
    path = tmp_path / "log"
    path.write_bytes(b"x" * 100)
    assert LineFollower(path, max_line=10).read() == [b"x" * 100]


def test_fifo_and_symlink_are_not_read(tmp_path: Path) -> None:
    """A FIFO gives nothing at once (no blocking) and a symlink is not followed."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert LineFollower(fifo).read(final=True) == []
    secret = tmp_path / "secret"
    secret.write_text("do not read\n")
    link = tmp_path / "link"
    link.symlink_to(secret)
    assert LineFollower(link).read(final=True) == []
    assert tail(link) == ""
    assert tail(fifo) == ""


def test_safe_names_stay_in_their_directory() -> None:
    """Hostile ids become distinct names without separators or dot-dot."""
    names = {safe_name(text) for text in ["../../etc", "a/b", "a_b", ".", "..", "x" * 300]}
    assert len(names) == 6
    assert all("/" not in n and n not in {".", ".."} and len(n) < 120 for n in names)
    assert safe_name("plain-id_1.2") == "plain-id_1.2"
