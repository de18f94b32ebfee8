"""A worker SIGKILLed inside a suggestion: nothing lost, no overshoot, the search goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from async_consumer import TrialStatus
from async_consumer.stores import store_from_url

from .conftest import wait_until_sync

N = 12

# a `run` of the search whose second suggestion stops where the test asks: in the sampler
# (before the trial is added) or just after the add; it writes the trial's number to READY
# and blocks there (the event loop with it) until it is killed
HOOKED = textwrap.dedent("""
    import sys, time
    from async_consumer._cli.main import main
    from async_consumer._search import samplers, search

    where, ready = sys.argv[1], sys.argv[2]
    asked = []

    def stop(k):
        asked.append(k)
        if len(asked) == 2:
            with open(ready, "w") as f:
                f.write(str(k))
            time.sleep(600)

    ask = samplers.RandomSampler.ask
    def hooked_ask(self, index):
        if where == "sampler":
            stop(index)
        return ask(self, index)
    samplers.RandomSampler.ask = hooked_ask

    add = search.Search._add
    async def hooked_add(self, trial):
        added = await add(self, trial)
        if where == "added" and added:
            stop(int(trial.id.rsplit("-", 1)[1]))
        return added
    search.Search._add = hooked_add

    sys.exit(main(sys.argv[3:]))
""")

BOWL = (
    "import json, os, sys, time; a = sys.argv; x = float(a[a.index('-x') + 1]); "
    "time.sleep(0.2); json.dump(x * x, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


def _run_argv(url: str, base: Path) -> list[str]:
    argv = ["-q", "run", "--store", url, "-n", str(N), "-j", "2", "--sampler", "random"]
    argv += ["--seed", "5", "--pruner", "none", "--heartbeat", "1", "--base-dir", str(base)]
    return [*argv, "--", sys.executable, "-c", BOWL, "-x~uniform(-1, 1)"]


async def _trials(url: str) -> dict[str, tuple[TrialStatus, int]]:
    async with store_from_url(url) as store:
        return {t.id: (t.status, len(t.attempts)) for t in await store.list()}


@pytest.mark.slow
@pytest.mark.parametrize("where", ["sampler", "added"])
def test_a_worker_killed_inside_a_suggestion(store_url: str, tmp_path: Path, where: str) -> None:
    """
    Killed in the sampler (its trial not added) or right after the add (its trial new, not
    leased): the other two runs complete exactly -n trials, each once.
    """
    ready = tmp_path / "ready"
    hooked = [sys.executable, "-c", HOOKED, where, str(ready)]
    base = tmp_path / "trials"
    out = subprocess.DEVNULL
    victim = subprocess.Popen([*hooked, *_run_argv(store_url, base)], stdout=out, stderr=out)
    try:
        wait_until_sync(ready.exists, "the victim inside its suggestion", alive=victim)
        wait_until_sync(lambda: ready.read_text() != "", "the trial number", alive=victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        victim.kill()
        victim.wait()
    k = int(ready.read_text())
    if where == "added":  # its trial is in the store, new, for any worker to run
        assert anyio.run(_trials, store_url)[f"default-{k}"][0] is TrialStatus.NEW
    cli = [sys.executable, "-m", "async_consumer._cli"]
    env = dict(os.environ)
    others = [
        subprocess.Popen([*cli, *_run_argv(store_url, base)], stderr=subprocess.PIPE, env=env)
        for _ in range(2)
    ]
    for process in others:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
    trials = anyio.run(_trials, store_url)
    assert sorted(trials) == sorted(f"default-{i}" for i in range(1, N + 1))  # none more
    assert {status for status, _ in trials.values()} == {TrialStatus.COMPLETED}
    # the trial it was suggesting ran once (a trial it held, if any, was reclaimed and ran)
    assert trials[f"default-{k}"][1] == 1
