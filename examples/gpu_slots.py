"""
Two GPUs shared by four trials: each trial asks for one GPU and runs only while it holds it.

``Consumer(slots={"gpu": ["0", "1"]})`` hands each trial GPU ids of its own, which its script
sees as ``CUDA_VISIBLE_DEVICES``. Four trials may run at once (``max_concurrency=4``) but there
are two GPUs, so two run while two wait for a GPU to be free. No GPU is needed to try it (the
script, ``examples/show_gpu.py``, only prints and reports the variable). Run it with::

    python examples/gpu_slots.py
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from pathlib import Path

from async_consumer import Consumer, Outcome, Trial

SCRIPT = Path(__file__).resolve().with_name("show_gpu.py")


def reported(outcome: Outcome, name: str) -> float:
    """A number among the results a trial reported (NaN if it is a list)."""
    value = next(result.value for result in outcome.results if result.name == name)
    return value if isinstance(value, float) else math.nan


def describe(outcome: Outcome, since: float) -> str:
    """Which GPU a trial got, what its script saw, and when it ran (seconds after ``since``)."""
    if not outcome.is_completed:
        return f"{outcome.trial_id}: {outcome.status} ({outcome.message})"
    seen = Path(outcome.stdout_path).read_text().strip()  # CUDA_VISIBLE_DEVICES=...
    began, ended = reported(outcome, "started") - since, reported(outcome, "ended") - since
    gpus = ",".join(outcome.slots["gpu"])
    return f"{outcome.trial_id}: GPU {gpus} ({seen}), from {began:.2f} s to {ended:.2f} s"


async def share_gpus(
    base_dir: str | os.PathLike[str] = ".async-consumer/trials",
) -> list[Outcome]:
    """Run four one-GPU trials on two GPUs; print which trial got which GPU, and when."""
    trials = [Trial(id=f"trial-{i}", params={"seconds": 0.3}, slots={"gpu": 1}) for i in range(4)]
    command = [sys.executable, str(SCRIPT), "--seconds", "{seconds}"]
    since = time.time()
    outcomes: list[Outcome] = []
    async with (
        Consumer(command, slots={"gpu": ["0", "1"]}, max_concurrency=4, base_dir=base_dir) as gpus,
        gpus.run_batch(trials) as finished,
    ):
        async for outcome in finished:  # as each trial ends
            print(describe(outcome, since))
            outcomes.append(outcome)
    return outcomes


if __name__ == "__main__":
    asyncio.run(share_gpus())
