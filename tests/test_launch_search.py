"""``launch slurm`` with priors: the search is recorded in the store before the job is submitted."""

from __future__ import annotations

import shlex
from pathlib import Path

import anyio
import pytest

from async_consumer._cli.main import main
from async_consumer._experiment import Experiment
from async_consumer._search.plan import SearchPlan
from async_consumer.stores import store_from_url


async def _recorded(url: str) -> Experiment | None:
    async with store_from_url(url) as store:
        return await store.experiment("default")


def _tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An sbatch that answers a job id, first on PATH."""
    sbatch = tmp_path / "sbatch"
    sbatch.write_text("#!/bin/sh\necho '4242;cluster'\n")
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")


def _argv(url: str, *options: str) -> list[str]:
    return ["launch", "slurm", "--store", url, "--workers", "2", *options]


def test_launch_records_the_search_and_its_workers_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """-n, the sampler and the seed go to the store, not to the workers' command line."""
    _tools(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/s.db"
    options = ["-n", "40", "--sampler", "random", "--seed", "3", "--script", "f.sbatch"]
    command = ["--", "python", "t.py", "--x~uniform(-5, 5)"]
    assert main(_argv(url, *options, *command)) == 0
    out, err = capsys.readouterr()
    assert out == "4242\n" and "searching: 40 trials, sampler random" in err
    recorded = anyio.run(_recorded, url)
    assert recorded is not None and recorded.search is not None
    plan = SearchPlan.from_json(recorded.search)
    assert (plan.n, plan.sampler, plan.seed, plan.space.names) == (40, "random", 3, ("x",))
    script = (tmp_path / "f.sbatch").read_text()
    worker = shlex.split(script[script.index("exec ") :].replace("\\\n", " "))
    assert worker[2:] == ["worker", "--store", url, "--", "python", "t.py", "--x~uniform(-5, 5)"]
    # launched again, the same search: the same version, nothing refused
    assert main(_argv(url, *options, *command)) == 0
    again = anyio.run(_recorded, url)
    assert again is not None and again.version == 1


@pytest.mark.parametrize(
    "options",
    [
        ["--", "python", "t.py", "--x~unknown(1)"],
        ["--dry-run", "-n", "4", "--", "python", "t.py", "--x~uniform(0, 1)"],
    ],
    ids=["bad-prior", "dry-run"],
)
def test_launch_records_nothing_unsubmitted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
) -> None:
    """A bad prior (exit 2) or --dry-run: nothing recorded, the store not even made."""
    _tools(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    code = main(_argv(f"sqlite:///{tmp_path}/s.db", *options))
    assert code == (0 if "--dry-run" in options else 2)
    assert not (tmp_path / "s.db").exists()
    assert "unknown prior" in capsys.readouterr().err or "--dry-run" in options


def test_launch_without_sbatch_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without sbatch, the search is not recorded: nothing would run it."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    argv = _argv(f"sqlite:///{tmp_path}/s.db", "--", "python", "t.py", "--x~uniform(0, 1)")
    assert main(argv) == 1
    assert "sbatch not found" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("experiment", ["default", "lr sweep"])
def test_launch_says_how_to_watch_its_experiment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    experiment: str,
) -> None:
    """The line after submitting gives a ``status`` command that shows this experiment."""
    _tools(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/s.db"
    options = ["-n", "4", "--sampler", "random", "--experiment", experiment]
    assert main(_argv(url, *options, "--", "python", "t.py", "--x~uniform(-5, 5)")) == 0
    err = capsys.readouterr().err
    watch = err[err.index("watch them with: ") :].splitlines()[0]
    argv = shlex.split(watch.removeprefix("watch them with: "))
    assert argv[:4] == ["async-consumer", "status", "--store", url]
    assert argv[4:] == ([] if experiment == "default" else ["--experiment", experiment])
