"""
Files a script plants where the consumer reads after it: FIFOs, symlinks, a swapped directory.

The consumer reads a trial's stderr tail, its metrics file and its results file. A script can
replace any of them (or its whole working directory) before it exits. Opening a FIFO for
reading blocks until a writer comes, and these opens happen on the event loop's thread, so a
"rescuer" thread opens the FIFO for writing after a few seconds if the consumer is still stuck
in it: a rescued test would otherwise have hung for ever.
"""

from __future__ import annotations

import os
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from async_consumer import Consumer, Metric, Outcome, Reason, Status, Trial

from ..conftest import ConsumerFactory, python

pytestmark = pytest.mark.slow

STUCK_AFTER = 3.0
"""Seconds after which a consumer still inside ``open`` of a FIFO counts as frozen."""

_PLANT_FIFO = """
import os, sys, time
path = os.path.join(os.path.dirname(os.environ["ORION_RESULTS_PATH"]), sys.argv[1])
if os.path.lexists(path):
    os.remove(path)
os.mkfifo(path)
time.sleep(1)  # long enough for a metrics follower to look at the file
open(os.environ["ORION_RESULTS_PATH"], "w").write("1.0")
"""

_PLANT_LINK = """
import os, sys
path = os.path.join(os.path.dirname(os.environ["ORION_RESULTS_PATH"]), sys.argv[1])
os.remove(path)
os.symlink(sys.argv[2], path)
open(os.environ["ORION_RESULTS_PATH"], "w").write("1.0")
"""

_SWAP_WORKING_DIR = """
import os, shutil, sys
here = os.environ["ORION_WORKING_DIR"]
shutil.rmtree(here)
os.symlink(sys.argv[1], here)
"""

_SWAP_ONCE = f"""
import os, sys
if os.environ["ASYNC_CONSUMER_ATTEMPT"] == "1":
{textwrap.indent(_SWAP_WORKING_DIR, "    ")}
    sys.exit(3)
open(os.environ["ORION_RESULTS_PATH"], "w").write("1.0")
"""


@contextmanager
def rescued_from(fifo: Path) -> Iterator[threading.Event]:
    """
    Set the event, and unblock the reader, if someone is still blocked opening ``fifo`` later.

    The rescuer gives up as soon as the block is left (the consumer answered in time).
    """
    left = threading.Event()
    rescued = threading.Event()

    def rescue() -> None:
        if left.wait(STUCK_AFTER):
            return
        while not left.wait(0.02):
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while nobody reads
            except OSError:
                continue
            os.close(fd)
            rescued.set()

    thread = threading.Thread(target=rescue, name="fifo-rescuer")
    thread.start()
    try:
        yield rescued
    finally:
        left.set()
        thread.join()


async def _run_past_fifo(consumer: Consumer, tmp_path: Path, name: str) -> Outcome:
    """Run trial ``t``, whose script plants a FIFO as ``name``; fail if the consumer froze on it."""
    attempt = tmp_path / "trials" / "default" / "t" / "attempts" / "1"
    with rescued_from(attempt / name) as rescued:
        outcome = await consumer.run(Trial(id="t"))
    assert not rescued.is_set(), "the consumer was stuck opening the FIFO"
    return outcome


@pytest.mark.asyncio
async def test_fifo_as_stderr_log_does_not_freeze_the_consumer(
    make_consumer: ConsumerFactory, tmp_path: Path
) -> None:
    """A script that leaves a FIFO in place of stderr.log still gets its outcome at once."""
    consumer = make_consumer([*python(_PLANT_FIFO), "stderr.log"])
    outcome = await _run_past_fifo(consumer, tmp_path, "stderr.log")
    assert outcome.status is Status.COMPLETED


@pytest.mark.asyncio
async def test_fifo_as_metrics_file_does_not_freeze_the_consumer(
    make_consumer: ConsumerFactory, tmp_path: Path
) -> None:
    """A script that leaves a FIFO in place of its metrics file does not stop the event loop."""
    metrics: list[Metric] = []
    consumer = make_consumer([*python(_PLANT_FIFO), "metrics.jsonl"], on_metric=metrics.append)
    outcome = await _run_past_fifo(consumer, tmp_path, "metrics.jsonl")
    assert outcome.status is Status.COMPLETED
    assert metrics == []


@pytest.mark.asyncio
async def test_symlink_as_stderr_log_is_not_followed(
    make_consumer: ConsumerFactory, tmp_path: Path
) -> None:
    """A stderr.log replaced by a symlink to a file outside is not read into the stderr tail."""
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET outside the working directory\n")
    consumer = make_consumer([*python(_PLANT_LINK), "stderr.log", str(secret)])
    outcome = await consumer.run(Trial(id="t"))
    assert outcome.status is Status.COMPLETED
    assert "SECRET" not in outcome.stderr_tail


@pytest.mark.asyncio
async def test_results_behind_a_swapped_working_dir_are_refused(
    make_consumer: ConsumerFactory, tmp_path: Path
) -> None:
    """A working directory replaced by a symlink to another directory yields no results from it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "results.json").write_text("42.0")
    consumer = make_consumer([*python(_SWAP_WORKING_DIR), str(elsewhere)])
    outcome = await consumer.run(Trial(id="t"))
    assert outcome.status is Status.BROKEN
    assert outcome.reason in {Reason.INVALID_RESULTS, Reason.MISSING_RESULTS}
    assert outcome.objective is None


@pytest.mark.asyncio
async def test_swapped_working_dir_is_replaced_for_the_next_attempt(
    make_consumer: ConsumerFactory, tmp_path: Path
) -> None:
    """The next attempt gets a real directory again, and nothing is written through the link."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    consumer = make_consumer([*python(_SWAP_ONCE), str(elsewhere)])
    first = await consumer.run(Trial(id="t"))
    assert first.reason is Reason.EXIT_CODE
    second = await consumer.run(Trial(id="t", attempt=2))
    assert second.status is Status.COMPLETED
    assert not Path(second.working_dir).is_symlink()
    assert list(elsewhere.iterdir()) == []
