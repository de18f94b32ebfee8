"""The command's start-up: each command imports what it runs, and no more."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# what no command of the run path needs: the report's charts, Slurm, the terminal's drawing
# (rich, when it draws a bar), PostgreSQL's driver, the memory store
OFF_THE_RUN_PATH = (
    "rich",
    "asyncpg",
    "async_consumer._report",
    "async_consumer._slurm",
    "async_consumer._cli.read_commands",
    "async_consumer._cli.launch",
    "async_consumer.stores.memory",
    "async_consumer.stores.postgres",
)

PROBE = """
import sys
from async_consumer._cli.main import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:  # --help
    status = exit.code
print("exit", status, file=sys.stderr)
print(*sorted(sys.modules))
"""


def imported_by(argv: list[str], cwd: Path) -> set[str]:
    """The modules a fresh interpreter holds after running the command line ``argv``."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE), *argv],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        timeout=120,
    )
    return set(done.stdout.split())


def test_help_imports_nothing_of_the_library(tmp_path: Path) -> None:
    """``--help`` parses arguments only: neither pydantic, nor anyio, nor the library's models."""
    modules = imported_by(["run", "--help"], tmp_path)
    assert {"pydantic", "anyio", "async_consumer._models"}.isdisjoint(modules)


@pytest.mark.slow
def test_run_imports_only_what_it_runs(tmp_path: Path) -> None:
    """A ``run`` of a trial, then a ``run`` with nothing left, import nothing off their path."""
    trial = "import os; open(os.environ['ORION_RESULTS_PATH'], 'w').write('1.0')"
    argv = [
        "run",
        "--grid",
        "x=1,2",
        "--store",
        f"sqlite:///{tmp_path}/t.db",
        "--base-dir",
        str(tmp_path / "trials"),
        "--",
        sys.executable,
        "-c",
        trial,
    ]
    for _ in ("run", "resume with nothing left"):
        modules = imported_by(argv, tmp_path)
        assert "async_consumer._cli.work" in modules  # the probe ran the command
        below = tuple(f"{name}." for name in OFF_THE_RUN_PATH)
        off_path = {m for m in modules if m in OFF_THE_RUN_PATH or m.startswith(below)}
        assert off_path == set()


def test_the_public_api_is_imported_on_first_use() -> None:
    """``import async_consumer`` imports nothing behind it; the first public name imports it all."""
    code = (
        "import sys, async_consumer\n"
        "closed = 'async_consumer._models' not in sys.modules\n"
        "async_consumer.Trial\n"
        "print(closed, async_consumer.Outcome.__module__, async_consumer.stores.SQLiteStore.__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["True", "async_consumer", "SQLiteStore"]
