"""
A stand-in for a GPU training script: it prints the GPUs it was given and reports them.

It reads ``CUDA_VISIBLE_DEVICES`` (set per trial by async-consumer's slots), "trains" for
``--seconds`` and writes its results: an objective, the GPU ids and when it ran, as statistics.
Used by ``examples/gpu_slots.py``; needs no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    """Print ``CUDA_VISIBLE_DEVICES``, hold the GPU a while, and report."""
    parser = argparse.ArgumentParser(description="Show the GPUs a trial was given.")
    parser.add_argument("--seconds", type=float, default=0.3)
    args = parser.parse_args()
    started = time.time()
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    print(f"CUDA_VISIBLE_DEVICES={devices}", flush=True)
    time.sleep(args.seconds)  # "training" on the GPU
    results = [
        {"name": "objective", "type": "objective", "value": args.seconds},
        {"name": "gpu", "type": "statistic", "value": [int(d) for d in devices.split(",") if d]},
        {"name": "started", "type": "statistic", "value": started},
        {"name": "ended", "type": "statistic", "value": time.time()},
    ]
    with open(os.environ["ASYNC_CONSUMER_RESULTS_PATH"], "w", encoding="utf-8") as file:
        json.dump(results, file)


if __name__ == "__main__":
    main()
