"""A search's total is its -n: on the progress bar while it runs, and in ``status``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from async_consumer._cli.main import main

from .conftest import screen, type_command, wait_until_sync

# waits for the file RELEASE (next to the store), then reports x
GATED = (
    "import json, os, sys, time; a = sys.argv; x = float(a[a.index('-x') + 1])\n"
    "while not os.path.exists(a[a.index('--release') + 1]): time.sleep(0.05)\n"
    "json.dump(x, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


def _seen(session: str, text: str) -> bool:
    return any(text in line for line in screen(session))


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
    type_command(tmux, command)
    wait_until_sync(lambda: _seen(tmux, "0/6"), "the bar at 0/6", every=0.2)
    release.touch()
    wait_until_sync(lambda: _seen(tmux, "EXIT=0"), "the run's exit", every=0.2)


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
