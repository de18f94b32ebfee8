"""A search's total is its -n: on the progress bar while it runs, and in ``status``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from async_consumer._cli.main import main

from .conftest import wait_until_sync

# waits for the file RELEASE (next to the store), then reports x
GATED = (
    "import json, os, sys, time; a = sys.argv; x = float(a[a.index('-x') + 1])\n"
    "while not os.path.exists(a[a.index('--release') + 1]): time.sleep(0.05)\n"
    "json.dump(x, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


@pytest.fixture
def tmux() -> Iterator[str]:
    """A detached tmux session, 110 columns by 40 lines, killed after the test."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    name = f"ac-{uuid.uuid4().hex[:8]}"
    argv = ["tmux", "new-session", "-d", "-s", name, "-x", "110", "-y", "40"]
    subprocess.run([*argv, "bash --norc --noprofile"], check=True)
    yield name
    subprocess.run(["tmux", "kill-session", "-t", name], check=False)


def _screen(session: str) -> str:
    argv = ["tmux", "capture-pane", "-p", "-J", "-t", session]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_the_bar_counts_to_the_search_total(tmux: str, tmp_path: Path) -> None:
    """A new search of -n 6: its bar reads 0/6 before any trial was suggested past the first."""
    script, release = tmp_path / "gated.py", tmp_path / "release"
    script.write_text(GATED)
    exe = Path(sys.executable).with_name("async-consumer")
    command = (
        f"cd {tmp_path} && {exe} run -n 6 -j 2 --sampler random --pruner none -- "
        f"{sys.executable} {script} --release {release} -x~'uniform(0, 1)'; echo EXIT=$?"
    )
    subprocess.run(["tmux", "send-keys", "-t", tmux, command, "Enter"], check=True)
    wait_until_sync(lambda: "0/6" in _screen(tmux), "the bar at 0/6", every=0.2)
    release.touch()
    wait_until_sync(lambda: "EXIT=0" in _screen(tmux), "the run's exit", every=0.2)


def test_status_shows_the_search_total(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``status`` of a search: how many of its -n trials were suggested, as text and JSON."""
    url = f"sqlite:///{tmp_path}/s.db"
    release = tmp_path / "release"
    release.touch()
    argv = ["-q", "run", "--store", url, "-n", "3", "--sampler", "random", "--pruner", "none"]
    argv += ["--base-dir", str(tmp_path / "t"), "--", sys.executable, "-c", GATED]
    assert main([*argv, "--release", str(release), "-x~uniform(0, 1)"]) == 0
    capsys.readouterr()
    assert main(["status", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "search: 3 of 3 trials suggested (sampler random, pruner none)" in out
    assert main(["status", "--store", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["search"] == {"n": 3, "suggested": 3}
