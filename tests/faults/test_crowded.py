"""Many workers on one PostgreSQL database: connections stay bounded, none crashes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

from async_consumer import Trial
from async_consumer.stores import store_from_url

from ..conftest import NewSchema, cli, postgres_url
from .conftest import completed_once

WORKERS, JOBS, TRIALS = 32, 8, 96
SCRIPT = "import json, os; json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))"


class Sampler:
    """The most connections the test's workers held at once (by application name), in a thread."""

    def __init__(self, url: str, application: str) -> None:
        self.url, self.application = url, application
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._loop()), daemon=True)
        self._thread.start()

    async def _loop(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        try:
            while not self._stop.is_set():
                self.most = max(self.most, await conn.fetchval(query, self.application))
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.mark.slow
def test_32_workers_with_8_lanes_share_one_database(tmp_path: Path, new_schema: NewSchema) -> None:
    """
    32 workers x -j 8 on one database hold at most one connection each (``pool_size=1``), and
    every worker ends well with every trial completed once.
    """
    base = postgres_url()
    schema = new_schema()
    application = f"async_consumer_{schema}"
    url = f"{base}?schema={schema}"

    async def add() -> None:
        async with store_from_url(url) as store:
            await store.add(Trial(id=f"t{i:03d}") for i in range(TRIALS))

    anyio.run(add)
    argv = cli("-q", "worker", "--store")
    argv += [f"{url}&pool_size=1&application_name={application}"]
    argv += ["-j", str(JOBS), "--base-dir", str(tmp_path / "trials")]
    argv += ["--code-change", "ignore"]
    argv += ["--", sys.executable, "-c", SCRIPT]
    sampler = Sampler(base, application)
    try:
        workers = [
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(WORKERS)
        ]
        errors = [w.communicate(timeout=300)[1].decode() for w in workers]
        stored = anyio.run(_stored, url)
    finally:
        sampler.stop()
    for worker, err in zip(workers, errors, strict=True):
        assert worker.returncode == 0, err
        assert "Traceback" not in err
    print(f"crowded: at most {sampler.most} connections for {WORKERS} workers")  # noqa: T201
    assert 0 < sampler.most <= WORKERS
    completed_once(stored, TRIALS)


async def _stored(url: str):  # type: ignore[no-untyped-def]
    async with store_from_url(url) as store:
        return await store.list()
