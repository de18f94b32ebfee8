"""The retrying store: calls retried while the store is unreachable, one line each way, a limit."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import anyio
import pytest

from async_consumer._errors import LeaseLost, StoreError, StoreUnavailable
from async_consumer._models import Lease, Outcome, Status, Trial, TrialStatus
from async_consumer.stores import Finish, SQLiteStore
from async_consumer.stores._retrying import Outage, RetryingStore

from ..conftest import Flaky


def _retrying(store: Flaky, limit: float = 30.0) -> RetryingStore:
    return RetryingStore(store, outage=Outage(limit, backoff=0.001, max_backoff=0.01))


async def _leased(flaky: Flaky) -> tuple[RetryingStore, Lease]:
    """Trial ``a`` added to ``flaky`` and reserved through a retrying store over it."""
    await flaky.add([Trial(id="a")])
    retrying = _retrying(flaky)
    lease = await retrying.reserve("w")
    assert lease is not None
    return retrying, lease


_DONE = Outcome(trial_id="a", attempt=1, status=Status.COMPLETED)


@pytest.mark.asyncio
async def test_outage_is_retried_and_logged_once_each_way(caplog: pytest.LogCaptureFixture) -> None:
    """Calls during an outage wait for the store; one line when it goes, one when it is back."""
    flaky = Flaky()
    await flaky.add([Trial(id="a")])
    retrying = _retrying(flaky)
    flaky.failures = 20
    with caplog.at_level(logging.WARNING, "async_consumer"):
        lease = await retrying.reserve("w")
        assert (await retrying.counts())[TrialStatus.RESERVED] == 1
    assert lease is not None and lease.trial_id == "a"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("store unreachable, retrying for up to 30 s: connection refused")
    assert lines[1].startswith("store reachable again after")
    assert retrying.outage.outages == 1


@pytest.mark.asyncio
async def test_one_failed_try_is_not_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    """A terminated connection that the next try gets through is retried without a word."""
    flaky = Flaky()
    retrying = _retrying(flaky)
    flaky.failures = 1
    with caplog.at_level(logging.WARNING, "async_consumer"):
        await retrying.counts()
    assert caplog.records == []


@pytest.mark.asyncio
async def test_a_store_away_past_the_limit_ends_the_call() -> None:
    """Past the outage limit, the call raises StoreUnavailable saying for how long."""
    flaky = Flaky()
    retrying = _retrying(flaky, limit=0.05)
    flaky.failures = 10**9
    with anyio.fail_after(10), pytest.raises(StoreUnavailable, match="unreachable for"):
        await retrying.counts()


@pytest.mark.asyncio
async def test_errors_no_retry_mends_are_not_retried() -> None:
    """A store error that is not about reachability (a newer schema) is raised at once."""
    flaky = Flaky()
    flaky.error = StoreError("the store's schema version 9 is newer than this library's")
    flaky.failures = 1
    with pytest.raises(StoreError, match="newer"):
        await _retrying(flaky).counts()
    assert flaky.failures == 0


@pytest.mark.asyncio
async def test_a_finish_committed_before_its_answer_was_lost_counts() -> None:
    """A finish whose answer was lost, retried, is recognised as recorded, not as rejected."""
    flaky = Flaky()
    retrying, lease = await _leased(flaky)
    assert lease.trial.attempt == _DONE.attempt
    flaky.commit_then_fail = True
    assert await retrying.finish(lease, _DONE) is TrialStatus.COMPLETED
    assert (await flaky.get("a")).outcome == _DONE


@pytest.mark.asyncio
async def test_a_finish_outlives_its_lease_and_is_recorded() -> None:
    """A finish is retried past its lease's local end: the store, back, records the outcome."""
    flaky = Flaky()
    await flaky.add([Trial(id="a"), Trial(id="b")])
    retrying = _retrying(flaky)
    retrying.lease_seconds = 0.001
    a, b = await retrying.reserve_many("w", 2)
    flaky.failures = 30
    await anyio.sleep(0.01)  # the leases have run out by the local clock
    done_a = _DONE
    done_b = Outcome(trial_id="b", attempt=1, status=Status.COMPLETED)
    with anyio.fail_after(10):
        assert await retrying.finish(a, done_a) is TrialStatus.COMPLETED
        flaky.failures = 30
        assert await retrying.finish_many([Finish(b, done_b)]) == [TrialStatus.COMPLETED]
    assert flaky.failures == 0
    assert (await flaky.get("a")).outcome == done_a
    assert (await flaky.get("b")).outcome == done_b


@pytest.mark.asyncio
async def test_a_late_finish_is_refused_once_the_lease_moved_on() -> None:
    """The store, back, refuses a finish whose lease another worker took meanwhile."""
    flaky = Flaky()
    retrying, lease = await _leased(flaky)
    await flaky.reclaim_stale(0.0)
    assert await flaky.reserve("other") is not None
    flaky.failures = 5
    with anyio.fail_after(10), pytest.raises(LeaseLost):
        await retrying.finish(lease, _DONE)


@pytest.mark.asyncio
async def test_a_leaving_worker_gives_up_its_finishes() -> None:
    """After give_up, a finish the store does not take is given up at once."""
    flaky = Flaky()
    retrying, lease = await _leased(flaky)
    flaky.failures = 10**9
    retrying.outage.give_up()
    with anyio.fail_after(10), pytest.raises(StoreUnavailable):
        await retrying.finish(lease, _DONE)
    assert flaky.failures == 10**9 - 1


def test_the_outage_limit_must_be_positive() -> None:
    """A limit of 0 or less is refused with a message naming it."""
    with pytest.raises(ValueError, match="outage limit must be positive"):
        Outage(0)


@pytest.mark.parametrize(
    ("name", "transient"),
    [
        ("TooManyConnectionsError", True),
        ("AdminShutdownError", True),
        ("CannotConnectNowError", True),
        ("ConnectionDoesNotExistError", True),
        ("InternalClientError", True),
        ("InvalidPasswordError", False),
        ("InvalidCatalogNameError", False),
        ("UndefinedTableError", False),
    ],
)
def test_postgres_errors_worth_a_retry(name: str, transient: bool) -> None:
    """PostgreSQL errors are StoreUnavailable when a retry may mend them, else StoreError."""
    asyncpg = pytest.importorskip("asyncpg")
    from async_consumer.stores._postgres_connection import translate as _translate

    error = _translate(getattr(asyncpg.exceptions, name)("boom"), "PostgreSQL store")
    assert isinstance(error, StoreError)
    assert isinstance(error, StoreUnavailable) is transient
    assert str(error) == f"PostgreSQL store: {name}: boom"


@pytest.mark.parametrize(
    ("exc", "transient"),
    [(ConnectionRefusedError(111, "refused"), True), (ConnectionResetError(104, "reset"), True)],
    ids=["refused", "reset"],
)
def test_socket_errors_are_worth_a_retry(exc: OSError, transient: bool) -> None:
    """A refused or reset connection is StoreUnavailable."""
    pytest.importorskip("asyncpg")
    from async_consumer.stores._postgres_connection import translate as _translate

    assert isinstance(_translate(exc, "x"), StoreUnavailable) is transient


@pytest.mark.asyncio
async def test_a_locked_sqlite_store_is_unavailable(tmp_path: Path) -> None:
    """A SQLite file locked for longer than the store waits is StoreUnavailable, not fatal."""
    path = tmp_path / "s.db"
    async with SQLiteStore(path, busy_wait=0.05) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.add([Trial(id="x")])
        finally:
            blocker.close()
