"""
A training script written for Orion, run unchanged by async-consumer.

It reads its parameters from the command line (``--lr``), keeps a checkpoint in
``$ORION_WORKING_DIR`` (so a rerun resumes where an interrupted run stopped) and reports with
Orion's client: ``report_objective`` writes the results to ``$ORION_RESULTS_PATH`` and
``interrupt_trial`` exits with ``$ORION_INTERRUPT_CODE`` (interrupted: may run again). SIGTERM
(a preemption, or async-consumer stopping the trial) interrupts it the same way. Run it with::

    async-consumer run --grid lr=0.001,0.01,0.1,0.9 -- \
        python examples/orion_script.py --lr {lr} --interrupt-if-lr-above 0.5

or, with Orion installed, as ``orion hunt -n demo python examples/orion_script.py
--lr~'loguniform(1e-4, 1)'``. Without Orion installed, it does what Orion's helpers do.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

try:  # Orion's own helpers, when Orion is installed...
    from orion.client import interrupt_trial, report_objective  # type: ignore[import-not-found]

    REPORTER = "orion.client"
except ImportError:  # ...or exactly what they do
    REPORTER = "built-in"

    def report_objective(objective: float, name: str = "objective") -> None:
        """Write Orion's results list to ``$ORION_RESULTS_PATH`` (outside Orion: print it)."""
        data = [{"name": name, "type": "objective", "value": objective}]
        path = os.environ.get("ORION_RESULTS_PATH")
        if path is None:
            print(data)
            return
        with open(path, "w", encoding="utf-8") as results:
            json.dump(data, results)

    def interrupt_trial() -> NoReturn:
        """Exit with the code that tells the worker "interrupted, run me again"."""
        sys.exit(int(os.environ["ORION_INTERRUPT_CODE"]))


def _preempted(signum: int, frame: FrameType | None) -> None:
    print(f"received {signal.Signals(signum).name}: interrupting", flush=True)
    interrupt_trial()


def _checkpoint() -> Path | None:
    """Where the checkpoint is kept: in the trial's directory (none outside Orion)."""
    directory = os.environ.get("ORION_WORKING_DIR")
    return Path(directory, "checkpoint.json") if directory else None


def main() -> None:
    """Train for a few epochs from the last checkpoint, then report the objective."""
    parser = argparse.ArgumentParser(description="A script written for Orion.")
    parser.add_argument("--lr", type=float, required=True, help="learning rate")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seconds-per-epoch", type=float, default=0.05)
    parser.add_argument("--interrupt-if-lr-above", type=float, help="simulate a preemption")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _preempted)
    trial, experiment = os.environ.get("ORION_TRIAL_ID"), os.environ.get("ORION_EXPERIMENT_NAME")
    print(f"trial {trial} of experiment {experiment}, lr={args.lr}, reporting with {REPORTER}")
    checkpoint = _checkpoint()
    start = 0
    if checkpoint is not None and checkpoint.exists():  # a rerun: resume after the last epoch
        start = json.loads(checkpoint.read_text())["epoch"] + 1
        print(f"resuming at epoch {start}")
    for epoch in range(start, args.epochs):
        if args.interrupt_if_lr_above is not None and args.lr > args.interrupt_if_lr_above:
            print(f"lr {args.lr} > {args.interrupt_if_lr_above}: interrupting", flush=True)
            interrupt_trial()
        time.sleep(args.seconds_per_epoch)
        if checkpoint is not None:
            checkpoint.write_text(json.dumps({"epoch": epoch}))
        print(f"epoch {epoch} done", flush=True)
    report_objective((math.log10(args.lr) + 2) ** 2)  # best at lr = 0.01


if __name__ == "__main__":
    main()
