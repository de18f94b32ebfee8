"""The parts without a process: classification, the retry policy, and the slot queue's order."""

from __future__ import annotations

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from async_consumer import Outcome, Reason, Result, RetryPolicy, SlotError, Status
from async_consumer._errors import InvalidResults, MissingResults
from async_consumer._slots import SlotPool
from async_consumer._trial.classify import Abort, Verdict, classify

OBJECTIVE = (Result(name="loss", type="objective", value=0.5),)


def verdict(
    returncode: int | None,
    abort: Abort | None = None,
    results: tuple[Result, ...] | MissingResults | InvalidResults | None = OBJECTIVE,
) -> Verdict:
    """Classify an attempt that ended with ``returncode`` (``None``: it could not be reaped)."""
    return classify(returncode, abort, interrupt_code=130, results=results)


# classify


def test_exit_zero_with_results_completes() -> None:
    """Exit 0 and valid results: completed, the results kept, no reason."""
    assert verdict(0) == Verdict(Status.COMPLETED, None, "", OBJECTIVE, 0)


@pytest.mark.parametrize(
    ("results", "reason"),
    [
        (MissingResults("r.json", ["the results file is empty"]), Reason.MISSING_RESULTS),
        (InvalidResults("r.json", ["not JSON"]), Reason.INVALID_RESULTS),
    ],
    ids=["missing", "invalid"],
)
def test_exit_zero_without_usable_results_is_broken(
    results: MissingResults | InvalidResults, reason: Reason
) -> None:
    """Exit 0 with a missing or invalid results file is broken, with the reader's message."""
    got = verdict(0, results=results)
    assert (got.status, got.reason, got.results) == (Status.BROKEN, reason, ())
    assert got.message == str(results)


def test_nonzero_exit_is_broken_and_ignores_results() -> None:
    """A non-zero exit is broken (exit_code) even if the results were valid, as in Orion."""
    got = verdict(3)
    assert (got.status, got.reason, got.returncode, got.signal) == (
        Status.BROKEN,
        Reason.EXIT_CODE,
        3,
        None,
    )
    assert got.message == "exited with code 3"
    assert got.results == ()


def test_interrupt_code_is_interrupted() -> None:
    """The interrupt code makes the attempt interrupted (it may run again), not broken."""
    got = verdict(130)
    assert (got.status, got.reason, got.results) == (Status.INTERRUPTED, Reason.EXIT_CODE, ())
    assert "interrupt code 130" in got.message


@pytest.mark.parametrize(
    ("returncode", "name"), [(-9, "SIGKILL"), (-11, "SIGSEGV"), (-200, "signal 200")]
)
def test_signal_is_broken_and_named(returncode: int, name: str) -> None:
    """Death by a signal is broken, reason signal, with the signal's name (or its number)."""
    got = verdict(returncode)
    assert (got.status, got.reason, got.signal) == (Status.BROKEN, Reason.SIGNAL, name)
    assert got.message == f"killed by {name}"


@pytest.mark.parametrize("returncode", [0, -15, None])
def test_abort_wins_over_the_exit(returncode: int | None) -> None:
    """A trial the consumer stopped is classified by why it was stopped, however it exited."""
    abort = Abort(Status.BROKEN, Reason.TIMEOUT, "timed out after 1 s")
    got = verdict(returncode, abort)
    assert (got.status, got.reason, got.message, got.results) == (
        Status.BROKEN,
        Reason.TIMEOUT,
        "timed out after 1 s",
        (),
    )
    assert got.returncode == returncode
    assert got.signal == ("SIGTERM" if returncode == -15 else None)


# RetryPolicy


def outcome(status: Status, reason: Reason | None, attempt: int = 1) -> Outcome:
    """An outcome of attempt number ``attempt``."""
    return Outcome(trial_id="t", attempt=attempt, status=status, reason=reason)


def test_default_policy_retries_signals_and_lost_leases_twice() -> None:
    """By default a signal or a lost lease is retried, twice; other failures are not."""
    policy = RetryPolicy()
    assert policy.should_retry(outcome(Status.BROKEN, Reason.SIGNAL, attempt=1))
    assert policy.should_retry(outcome(Status.LOST, Reason.LEASE_LOST, attempt=2))
    assert not policy.should_retry(outcome(Status.BROKEN, Reason.SIGNAL, attempt=3))
    assert not policy.should_retry(outcome(Status.BROKEN, Reason.EXIT_CODE))
    assert not policy.should_retry(outcome(Status.BROKEN, Reason.TIMEOUT))


@pytest.mark.parametrize(
    "reason", [Reason.INVALID_RESULTS, Reason.CODE_CHANGED, Reason.STOPPED, Reason.CANCELLED]
)
def test_some_reasons_are_never_retried(reason: Reason) -> None:
    """Invalid results, changed code, a stop or a cancellation never retry, even when listed."""
    policy = RetryPolicy(retries=5, reasons=frozenset(Reason))
    assert not policy.should_retry(outcome(Status.BROKEN, reason))
    assert not policy.should_retry(outcome(Status.INTERRUPTED, reason))


def test_only_broken_or_lost_attempts_are_retried() -> None:
    """A completed or interrupted attempt is never retried, whatever the reasons."""
    policy = RetryPolicy(retries=5, reasons=frozenset(Reason))
    assert not policy.should_retry(outcome(Status.COMPLETED, None))
    assert not policy.should_retry(outcome(Status.INTERRUPTED, Reason.EXIT_CODE))
    assert policy.should_retry(outcome(Status.BROKEN, Reason.EXIT_CODE))


def test_zero_retries_turns_retries_off() -> None:
    """``retries=0`` retries nothing."""
    assert not RetryPolicy(retries=0).should_retry(outcome(Status.BROKEN, Reason.SIGNAL))


def test_of_takes_reason_names() -> None:
    """``RetryPolicy.of`` accepts reasons by name, and keeps the defaults when given none."""
    assert RetryPolicy.of(3, ["timeout", "exit_code"]).reasons == {Reason.TIMEOUT, Reason.EXIT_CODE}
    assert RetryPolicy.of(1).reasons == RetryPolicy().reasons
    with pytest.raises(ValueError, match="'nope'"):
        RetryPolicy.of(1, ["nope"])


def test_backoff_doubles_up_to_the_cap() -> None:
    """Without jitter the waits are backoff, 2 x backoff, 4 x ..., never above max_backoff."""
    policy = RetryPolicy(backoff=0.5, max_backoff=3.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_within_its_fraction() -> None:
    """With 10 % jitter each wait stays within 10 % of the plain doubling."""
    policy = RetryPolicy(backoff=1.0, max_backoff=100.0, jitter=0.1)
    for attempt in range(1, 5):
        for _ in range(50):
            plain = 2.0 ** (attempt - 1)
            assert plain * 0.9 <= policy.delay(attempt) <= plain * 1.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": -1}, "retries"),
        ({"backoff": -1.0}, "backoff"),
        ({"max_backoff": -1}, "backoff"),
    ],
)
def test_bad_policy_is_refused(kwargs: dict[str, float], message: str) -> None:
    """Negative retries or waits are a ValueError naming the argument."""
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# SlotPool


async def _hold(
    pool: SlotPool, name: str, demand: int, order: list[str], done: anyio.Event
) -> None:
    """Take ``demand`` GPUs, note the name, and keep them until ``done``."""
    async with pool.acquire({"gpu": demand}) as granted:
        assert len(granted["gpu"]) == demand
        order.append(name)
        await done.wait()


@pytest.mark.anyio
async def test_slots_no_backfill() -> None:
    """A small demand that would fit now waits behind a large one that came first."""
    pool = SlotPool({"gpu": ["0", "1"]})
    order: list[str] = []
    done = {name: anyio.Event() for name in ("holder", "large", "small")}
    async with anyio.create_task_group() as tg:
        await _start(tg, pool, "holder", 1, order, done)
        await _start(tg, pool, "large", 2, order, done)  # waits: one GPU is taken
        await _start(tg, pool, "small", 1, order, done)  # one GPU is free, but large is first
        assert order == ["holder"]
        done["holder"].set()
        await _until(lambda: order == ["holder", "large"])
        assert order == ["holder", "large"]  # small still waits
        done["large"].set()
        await _until(lambda: len(order) == 3)
        done["small"].set()
    assert order == ["holder", "large", "small"]


@pytest.mark.anyio
async def test_slots_served_in_arrival_order() -> None:
    """Waiters for one GPU are served first come, first served."""
    pool = SlotPool({"gpu": ["0"]})
    order: list[str] = []
    names = ["holder", *(f"w{i}" for i in range(5))]
    done = {name: anyio.Event() for name in names}
    async with anyio.create_task_group() as tg:
        for name in names:
            await _start(tg, pool, name, 1, order, done)
        for count, name in enumerate(names, start=1):
            await _until(lambda count=count: len(order) == count)
            assert order == names[:count]  # the others still wait
            done[name].set()
    assert order == names


@pytest.mark.anyio
async def test_cancelled_head_does_not_block_the_queue() -> None:
    """A waiter at the head of the queue that is cancelled lets the next one through."""
    pool = SlotPool({"gpu": ["0", "1"]})
    order: list[str] = []
    done = {name: anyio.Event() for name in ("holder", "large", "small")}
    async with anyio.create_task_group() as tg:
        await _start(tg, pool, "holder", 1, order, done)
        large_scope = anyio.CancelScope()
        tg.start_soon(_cancellable, large_scope, pool, order, done["large"])
        await _settle()
        await _start(tg, pool, "small", 1, order, done)  # behind large: no backfill
        assert order == ["holder"]
        large_scope.cancel()
        await _until(lambda: order == ["holder", "small"])
        done["holder"].set()
        done["small"].set()
    assert order == ["holder", "small"]


async def _cancellable(
    scope: anyio.CancelScope, pool: SlotPool, order: list[str], done: anyio.Event
) -> None:
    with scope:
        await _hold(pool, "large", 2, order, done)


def test_least_used_slots_first() -> None:
    """Among free GPUs, the one handed out least often comes first, then the listed order."""

    async def main() -> list[tuple[str, ...]]:
        pool = SlotPool({"gpu": ["a", "b", "c"]})
        granted = []
        for demand in (1, 1, 2, 1, 3):
            async with pool.acquire({"gpu": demand}) as got:
                granted.append(got["gpu"])
        return granted

    assert anyio.run(main) == [("a",), ("b",), ("c", "a"), ("b",), ("c", "a", "b")]


def test_impossible_demand_is_refused_at_once() -> None:
    """A demand larger than the pool, or of an unknown kind, is a SlotError, not a wait."""
    pool = SlotPool({"gpu": ["0", "1"]})
    with pytest.raises(SlotError, match="3 'gpu'"):
        pool.acquire({"gpu": 3})
    with pytest.raises(SlotError, match="'tpu'"):
        pool.check({"tpu": 1})
    with pytest.raises(ValueError, match="distinct"):
        SlotPool({"gpu": ["0", "0"]})


async def _start(
    tg: anyio.abc.TaskGroup,
    pool: SlotPool,
    name: str,
    demand: int,
    order: list[str],
    done: dict[str, anyio.Event],
) -> None:
    """Start a holder and let it run until it holds its GPUs or waits for them."""
    tg.start_soon(_hold, pool, name, demand, order, done[name])
    await _settle()


async def _settle() -> None:
    """Let every ready task run until it waits (a few scheduler passes, no clock)."""
    for _ in range(10):
        await anyio.lowlevel.checkpoint()


async def _until(condition: object) -> None:
    """Run the other tasks until ``condition()`` holds (a bounded number of passes)."""
    for _ in range(1000):
        if condition():  # type: ignore[operator]
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never held")


def test_a_late_attempt_waits_max_backoff() -> None:
    """A very late attempt waits max_backoff (the doubling once overflowed past attempt 1,025)."""
    policy = RetryPolicy(backoff=0.5, max_backoff=30.0, jitter=0.0)
    assert policy.delay(2000) == policy.delay(10**6) == 30.0
