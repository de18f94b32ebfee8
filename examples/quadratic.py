"""A toy training script: minimise (x - 2)^2 + y, reported the way Orion's client does."""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    """Parse the parameters, "train" a little, and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--x", type=float, required=True)
    parser.add_argument("--y", type=float, default=0.0)
    args = parser.parse_args()
    for step in range(3):  # live metrics, one JSON line a step
        loss = (args.x - 2) ** 2 + args.y + 1.0 / (step + 1)
        with open(os.environ["ASYNC_CONSUMER_METRICS_PATH"], "a", encoding="utf-8") as metrics:
            metrics.write(json.dumps({"step": step, "loss": loss}) + "\n")
        time.sleep(0.05)
    objective = (args.x - 2) ** 2 + args.y
    print(f"x={args.x} y={args.y} objective={objective}")
    with open(os.environ["ORION_RESULTS_PATH"], "w", encoding="utf-8") as results:
        json.dump([{"name": "objective", "type": "objective", "value": objective}], results)


if __name__ == "__main__":
    main()
