"""
Measure a consumer's RSS over many trivial trials, in a fresh interpreter.

Run from the repository root as ``python -m tests.hostile.memory_probe BASE_DIR [TOTAL EARLY]``;
prints one JSON object: the outcomes counted, and RSS after ``EARLY`` and after ``TOTAL``. A fresh
process matters: inside pytest, memory freed by earlier tests would absorb a leak unseen.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import anyio

from async_consumer import Consumer, Status, Trial

from .procfs import rss_bytes

TRIVIAL = ["sh", "-c", 'echo 1 > "$ORION_RESULTS_PATH"']
IN_FLIGHT = 16
CONCURRENCY = 8


def _rss_settled() -> int:
    gc.collect()
    return rss_bytes()


async def measure(base: Path, total: int, early: int) -> dict[str, int]:
    """Run ``total`` trivial trials, a new one joining as each ends; RSS after ``early`` and all."""
    consumer = Consumer(
        TRIVIAL, base_dir=base, max_concurrency=CONCURRENCY, grace=1.0, code_change="ignore"
    )
    added = IN_FLIGHT
    done = completed = rss_early = 0
    # ask-and-tell, so that no backlog of queued tasks is counted as memory
    async with consumer.run_batch(Trial(id=f"t{i}") for i in range(IN_FLIGHT)) as batch:
        async for outcome in batch:
            done += 1
            completed += outcome.status is Status.COMPLETED
            if done == early:
                rss_early = _rss_settled()
            if added < total:
                batch.add(Trial(id=f"t{added}"))
                added += 1
    return {
        "done": done,
        "completed": completed,
        "rss_early": rss_early,
        "rss_late": _rss_settled(),
    }


def main(argv: list[str]) -> None:
    """Parse ``BASE_DIR [TOTAL EARLY]`` and print the measure as JSON."""
    base = Path(argv[0])
    total, early = (int(argv[1]), int(argv[2])) if len(argv) > 2 else (2000, 200)
    sys.stdout.write(json.dumps(anyio.run(measure, base, total, early)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
