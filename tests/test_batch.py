"""Many trials at once: limits, completion order, early exit, stop, slots, retries."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from async_consumer import Reason, RetryPolicy, SlotError, Status, Trial
from async_consumer._trial.offload import Offload

from .conftest import WRITE_RESULT, ConsumerFactory, children_of, python, wait_until

# Each script counts the scripts alive beside it; the first three (meet=1) wait until all three
# have met, which proves that three run at once (a barrier, not a timing window).
COUNT_ALIVE = """
    import json, os, sys, time
    box, met = sys.argv[1], sys.argv[2] + '/met'
    mine = os.path.join(box, str(os.getpid()))
    open(mine, 'w').close()
    seen = len(os.listdir(box))
    if sys.argv[3] == '1':
        # the last of the three to arrive counts the other two waiting, alive
        os.makedirs(met, exist_ok=True)
        seen = max(seen, len(os.listdir(box)))
        open(os.path.join(met, str(os.getpid())), 'w').close()  # kept: the barrier's count
        while len(os.listdir(met)) < 3:
            time.sleep(0.01)
    seen = max(seen, len(os.listdir(box)))
    os.remove(mine)
    json.dump({'objective': seen}, open(os.environ['ORION_RESULTS_PATH'], 'w'))
"""


@pytest.mark.slow
@pytest.mark.anyio
async def test_never_more_than_max_concurrency(
    make_consumer: ConsumerFactory, tmp_path: Path
) -> None:
    """The scripts themselves never see more than max_concurrency of them alive."""
    box = tmp_path / "box"
    box.mkdir()
    command = [*python(COUNT_ALIVE), str(box), str(tmp_path), "{meet}"]
    consumer = make_consumer(command, max_concurrency=3)
    trials = [Trial(id=f"t{i}", params={"meet": int(i < 3)}) for i in range(12)]
    with anyio.fail_after(60):  # only a failing test waits this long (three never met)
        outcomes = await consumer.map(trials)
    assert [o.trial_id for o in outcomes if o] == [t.id for t in trials]  # input order
    assert all(o is not None and o.status is Status.COMPLETED for o in outcomes)
    seen = [o.objective for o in outcomes if o]
    assert max(s or 0 for s in seen[:3]) == 3  # the first three met
    assert all(s is not None and 1 <= s <= 3 for s in seen)  # never more than three


@pytest.mark.anyio
async def test_outcomes_in_completion_order(make_consumer: ConsumerFactory, tmp_path: Path) -> None:
    """A quick trial's outcome comes before a slow one started earlier."""
    gate = tmp_path / "gate"
    # the slow trial ends only once the fast one has exited and been reaped (its /proc entry
    # is gone), so the order of the two exits is certain
    code = f"""
        import os, sys, time
        if sys.argv[1] == 'slow':
            while not os.path.exists({str(gate)!r}): time.sleep(0.01)
            fast = open({str(gate)!r}).read()
            while os.path.exists('/proc/' + fast): time.sleep(0.01)
        else:
            with open({str(gate)!r} + '.tmp', 'w') as f: f.write(str(os.getpid()))
            os.rename({str(gate)!r} + '.tmp', {str(gate)!r})
        {WRITE_RESULT}
    """
    consumer = make_consumer([*python(code), "{kind}"], max_concurrency=2)
    order = []
    trials = [Trial(id="slow", params={"kind": "slow"}), Trial(id="fast", params={"kind": "fast"})]
    with anyio.fail_after(10):
        async with consumer.run_batch(trials) as outcomes:
            order = [outcome.trial_id async for outcome in outcomes]
    assert order == ["fast", "slow"]


@pytest.mark.anyio
async def test_trials_start_in_queue_order(make_consumer: ConsumerFactory, tmp_path: Path) -> None:
    """With one place, trials start in the order they were queued (trio runs new tasks shuffled)."""
    log = tmp_path / "order"
    script = 'echo "$1" >> "$2"; echo 1 > "$ORION_RESULTS_PATH"'
    consumer = make_consumer(["/bin/sh", "-c", script, "sh", "{i}", str(log)], max_concurrency=1)
    async with consumer.run_batch([Trial(id=f"t{i}", params={"i": i}) for i in range(8)]) as batch:
        batch.add(Trial(id="t8", params={"i": 8}))
        batch.add_all([Trial(id="t9", params={"i": 9}), Trial(id="t10", params={"i": 10})])
        assert len([o async for o in batch]) == 11
    assert log.read_text().split() == [str(i) for i in range(11)]


@pytest.mark.anyio
async def test_failures_do_not_stop_the_batch(make_consumer: ConsumerFactory) -> None:
    """A failing trial is an outcome, and the others still run."""
    code = "import sys\nif sys.argv[1] == 'bad': sys.exit(2)\n" + WRITE_RESULT
    consumer = make_consumer([*python(code), "{kind}"], max_concurrency=2)
    trials = [Trial(id=str(i), params={"kind": "bad" if i == 1 else "good"}) for i in range(4)]
    outcomes = await consumer.map(trials)
    assert [o.status if o else None for o in outcomes] == [
        Status.COMPLETED,
        Status.BROKEN,
        Status.COMPLETED,
        Status.COMPLETED,
    ]


@pytest.mark.anyio
async def test_add_while_running(make_consumer: ConsumerFactory) -> None:
    """An ask-and-tell loop adds a trial each time one finishes; the batch runs them all."""
    consumer = make_consumer(python(WRITE_RESULT), max_concurrency=2)
    seen = []
    added = 2
    async with consumer.run_batch([Trial(id="0"), Trial(id="1")]) as outcomes:
        async for outcome in outcomes:
            seen.append(outcome.trial_id)
            if added < 6:
                outcomes.add(Trial(id=str(added)))
                added += 1
    assert sorted(seen) == ["0", "1", "2", "3", "4", "5"]


@pytest.mark.slow
@pytest.mark.anyio
async def test_early_exit_leaves_no_process(make_consumer: ConsumerFactory, tmp_path: Path) -> None:
    """Breaking out of a batch stops every running script (SIGTERM to each) before it returns."""
    code = f"""
        import os, signal, sys, time
        def stopped(*_):
            open(os.path.join({str(tmp_path)!r}, 'stopped-' + sys.argv[1]), 'w').close()
            sys.exit(1)
        if sys.argv[1] != '0':
            signal.signal(signal.SIGTERM, stopped)
            open(os.path.join({str(tmp_path)!r}, 'ready-' + sys.argv[1]), 'w').close()
            time.sleep(600)
        {WRITE_RESULT}
    """
    consumer = make_consumer([*python(code), "{i}"], max_concurrency=4, grace=0.5)
    trials = [Trial(id=str(i), params={"i": i}) for i in range(6)]
    # without the stop, leaving the block would wait for the scripts' 600 s sleep; the bound
    # only turns that into a failure
    with anyio.fail_after(120):
        async with consumer.run_batch(trials) as outcomes:
            async for outcome in outcomes:
                assert outcome.trial_id == "0"
                # each can take SIGTERM once ready
                await wait_until(lambda: len(list(tmp_path.glob("ready-*"))) >= 4, "four ready")
                break
    ready = sorted(p.name.removeprefix("ready-") for p in tmp_path.glob("ready-*"))
    assert ready == ["1", "2", "3", "4"]
    assert sorted(p.name.removeprefix("stopped-") for p in tmp_path.glob("stopped-*")) == ready
    assert children_of(os.getpid()) == []
    assert consumer.running == []


@pytest.mark.anyio
async def test_stop_one_trial(make_consumer: ConsumerFactory) -> None:
    """stop(trial_id) ends that trial as interrupted, reason stopped; the others go on."""
    code = "import sys, time\nif sys.argv[1] == 'long': time.sleep(60)\n" + WRITE_RESULT
    consumer = make_consumer([*python(code), "{kind}"], max_concurrency=2, grace=0.5)
    results = {}
    with anyio.fail_after(10):
        async with consumer.run_batch([Trial(id="long", params={"kind": "long"})]) as outcomes:
            await wait_until(lambda: "long" in consumer.running, "the long trial to run")
            outcomes.add(Trial(id="short", params={"kind": "short"}))
            async for outcome in outcomes:
                results[outcome.trial_id] = outcome
                if outcome.trial_id == "short":
                    assert await consumer.stop("long")
    assert (results["long"].status, results["long"].reason) == (Status.INTERRUPTED, Reason.STOPPED)
    assert results["short"].status is Status.COMPLETED
    assert not await consumer.stop("long")


SLOT_CHECK = """
    import json, os, sys, time
    box, gpus = sys.argv[1], os.environ['CUDA_VISIBLE_DEVICES'].split(',')
    mine = [os.path.join(box, g) for g in gpus]
    for path in mine:
        fd = os.open(path, os.O_CREAT | os.O_EXCL)  # fails if another trial holds this GPU
        os.close(fd)
    time.sleep(0.1)
    for path in mine:
        os.remove(path)
    json.dump({'objective': len(gpus)}, open(os.environ['ORION_RESULTS_PATH'], 'w'))
"""


@pytest.mark.slow
@pytest.mark.anyio
async def test_slots_never_shared(make_consumer: ConsumerFactory, tmp_path: Path) -> None:
    """No GPU is ever handed to two trials at once, and each sees its own CUDA_VISIBLE_DEVICES."""
    box = tmp_path / "gpus"
    box.mkdir()
    consumer = make_consumer(
        [*python(SLOT_CHECK), str(box)], max_concurrency=8, slots={"gpu": ["0", "1", "2"]}
    )
    trials = [Trial(id=str(i), slots={"gpu": 1 + i % 2}) for i in range(10)]
    outcomes = await consumer.map(trials)
    for trial, outcome in zip(trials, outcomes, strict=True):
        assert outcome is not None and outcome.status is Status.COMPLETED, outcome
        assert outcome.objective == trial.slots["gpu"]
        assert len(outcome.slots["gpu"]) == trial.slots["gpu"]


@pytest.mark.anyio
async def test_free_least_used_slots_first(make_consumer: ConsumerFactory) -> None:
    """Consecutive one-GPU trials rotate over the GPUs rather than reusing the first."""
    consumer = make_consumer(
        python(WRITE_RESULT), max_concurrency=1, slots={"gpu": ["a", "b", "c"]}
    )
    used = [(await consumer.run(Trial(id=str(i), slots={"gpu": 1}))).slots["gpu"] for i in range(3)]
    assert sorted(used) == [("a",), ("b",), ("c",)]


def test_slot_demand_too_large(make_consumer: ConsumerFactory) -> None:
    """Asking for more slots than exist is an error before anything starts."""
    consumer = make_consumer(python(WRITE_RESULT), slots={"gpu": ["0"]})
    with pytest.raises(SlotError, match="2 'gpu'"):
        consumer.check(Trial(id="t", slots={"gpu": 2}))
    with pytest.raises(SlotError, match="'tpu'"):
        consumer.check(Trial(id="t", slots={"tpu": 1}))


@pytest.mark.anyio
async def test_retries_carry_attempt_numbers(make_consumer: ConsumerFactory) -> None:
    """A trial killed by a signal is retried; the script and the outcome see the new attempt."""
    code = (
        "import os, signal\n"
        "if os.environ['ASYNC_CONSUMER_ATTEMPT'] != '3': os.kill(os.getpid(), signal.SIGKILL)"
    )
    consumer = make_consumer(
        python(code + "\n" + WRITE_RESULT), retry=RetryPolicy(retries=3, backoff=0.0)
    )
    outcome = await consumer.run(Trial(id="t"))
    assert (outcome.status, outcome.attempt) == (Status.COMPLETED, 3)
    assert Path(outcome.stdout_path).parts[-3:] == ("attempts", "3", "stdout.log")


@pytest.mark.anyio
async def test_invalid_results_never_retried(make_consumer: ConsumerFactory) -> None:
    """Invalid results would fail the same way again: no retry, even when retries are allowed."""
    consumer = make_consumer(
        python("import os; open(os.environ['ORION_RESULTS_PATH'], 'w').write('x')"),
        retry=RetryPolicy(retries=3, backoff=0.0, reasons=frozenset(Reason)),
    )
    outcome = await consumer.run(Trial(id="t"))
    assert (outcome.reason, outcome.attempt) == (Reason.INVALID_RESULTS, 1)


@pytest.mark.anyio
async def test_max_broken_stops_launching(make_consumer: ConsumerFactory) -> None:
    """After max_broken broken outcomes, no further trial starts; they are listed as skipped."""
    consumer = make_consumer(python("import sys; sys.exit(1)"), max_concurrency=1)
    trials = [Trial(id=str(i)) for i in range(6)]
    async with consumer.run_batch(trials, max_broken=2) as outcomes:
        seen = [o async for o in outcomes]
    assert len(seen) == 2
    assert [t.id for t in outcomes.skipped] == ["2", "3", "4", "5"]


class SlowDisk:
    """
    Stands in for creating a trial's files, on a fake clock: 30 ms each while ``slow``.

    Records which thread did each (``True``: the event loop's). The clock moves only when a
    file is "created", and each thread has its own, so a measurement is exactly the work it
    timed: no load on the machine, and no other thread's work in the same window, can change
    what the policy measures.
    """

    def __init__(self) -> None:
        self.slow = True
        self.where: list[bool] = []  # in the order the calls were made, not the order they ran
        self._time = threading.local()

    def clock(self) -> float:
        now: float = getattr(self._time, "now", 0.0)
        return now

    def call(self) -> int:
        """Number the next call (a thread started earlier may run after a later inline one)."""
        self.where.append(False)
        return len(self.where) - 1

    def create(self, number: int) -> None:
        self.where[number] = threading.current_thread() is threading.main_thread()
        if self.slow:
            self._time.now = self.clock() + 0.03


async def _create_files(offload: Offload, disk: SlowDisk, trials: int, jobs: int = 4) -> None:
    """Create ``trials`` trials' files through ``offload``, ``jobs`` at a time."""
    limit = anyio.Semaphore(jobs)

    async def one() -> None:
        async with limit:
            await offload.run(disk.create, disk.call())
            await anyio.lowlevel.checkpoint()  # a script runs meanwhile

    async with anyio.create_task_group() as tg:
        for _ in range(trials):
            tg.start_soon(one)


@pytest.mark.asyncio
async def test_slow_disk_moves_file_creation_to_threads_and_back() -> None:
    """Trial files are created in threads while that is slow, inline again once it is fast."""
    disk = SlowDisk()
    where = disk.where
    offload = Offload(disk.clock, inline_seconds=0.01)
    await _create_files(offload, disk, 40)
    assert where[0]  # inline until measured otherwise
    assert where[-16:].count(True) == 2  # then in threads, one in 8 still inline to measure
    disk.slow, where[:] = False, []
    await _create_files(offload, disk, 80)
    assert where[-8:] == [True] * 8  # inline again


@pytest.mark.asyncio
async def test_very_slow_disk_is_never_touched_on_the_event_loop() -> None:
    """Past the probe limit, every trial's files are made in threads, until the disk recovers."""
    disk = SlowDisk()
    where = disk.where
    offload = Offload(disk.clock, inline_seconds=0.005, probe_limit=0.02)
    await _create_files(offload, disk, 48)
    assert not any(where[-16:])  # no probe on the loop any more
    disk.slow, where[:] = False, []
    await _create_files(offload, disk, 80)
    assert where[-8:] == [True] * 8  # the threads' times brought the probes, then inline, back


@pytest.mark.anyio
async def test_trial_files_are_created_through_the_offload_policy(
    make_consumer: ConsumerFactory,
) -> None:
    """The consumer creates its trials' files through the policy, inline on a fast disk."""
    consumer = make_consumer(["/bin/sh", "-c", 'echo 1 > "$ORION_RESULTS_PATH"'], max_concurrency=4)
    outcomes = await consumer.map([Trial(id=f"t-{i}") for i in range(8)])
    assert all(o is not None and o.is_completed for o in outcomes)


@pytest.mark.anyio
async def test_same_trial_twice_in_a_batch_keeps_each_result(
    make_consumer: ConsumerFactory,
) -> None:
    """
    A trial queued twice reuses its files; the first run's results are read before the second.

    (The next script starts before the previous outcome is built, so this needs care.)
    """
    script = 'sleep 0.1; echo "$1" > "$ORION_RESULTS_PATH"'
    consumer = make_consumer(["/bin/sh", "-c", script, "sh", "{value}"], max_concurrency=1)
    first, second = Trial(id="a", params={"value": 1.5}), Trial(id="a", params={"value": 2.5})
    async with consumer.run_batch([first, second]) as outcomes:
        seen = [(o.status, o.objective) async for o in outcomes]
    assert seen == [(Status.COMPLETED, 1.5), (Status.COMPLETED, 2.5)]
