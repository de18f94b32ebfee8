"""
Optuna's ask-and-tell interface driving async-consumer: 8 trials at a time, told as they finish.

Optuna suggests the parameters; ``Consumer`` runs the black-box script ``examples/quadratic.py``
once per trial; each outcome is told to Optuna the moment it arrives, and a new trial is asked
for in its place, so 8 scripts keep running until ``--trials`` have run. Run it with::

    pip install -e '.[cli,examples]'  # async-consumer and optuna
    python examples/optuna_ask_tell.py --trials 40 --jobs 8

``--storage sqlite:///optuna.db`` keeps the study (to look at in optuna-dashboard, or to run more
trials later). Ctrl-C (or SIGTERM) stops the running scripts gracefully; they are told to Optuna
as failed, and the program exits with 130.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

from async_consumer import Consumer, Outcome, Trial, handle_signals

SCRIPT = Path(__file__).resolve().with_name("quadratic.py")
COMMAND = [sys.executable, str(SCRIPT), "--x", "{x}", "--y", "{y}"]


def ask(study: optuna.Study, asked: dict[str, optuna.Trial]) -> Trial:
    """Ask Optuna for parameters; return the trial that runs them (remembered in ``asked``)."""
    suggestion = study.ask()
    params = {
        "x": suggestion.suggest_float("x", -5.0, 5.0),
        "y": suggestion.suggest_float("y", 0.0, 1.0),
    }
    trial = Trial(id=f"trial-{suggestion.number}", params=params, experiment=study.study_name)
    asked[trial.id] = suggestion
    return trial


def tell(study: optuna.Study, suggestion: optuna.Trial, outcome: Outcome) -> None:
    """Tell Optuna how a trial went: its objective, or that it failed."""
    params = "  ".join(f"{name}={value:.3f}" for name, value in suggestion.params.items())
    if outcome.is_completed and outcome.objective is not None:
        study.tell(suggestion, outcome.objective)
        print(f"{outcome.trial_id:>9}  {params}  objective={outcome.objective:.4f}")
    else:  # broken or interrupted: Optuna only knows failed
        study.tell(suggestion, state=TrialState.FAIL)
        print(f"{outcome.trial_id:>9}  {params}  {outcome.status}: {outcome.message}")


async def optimize(study: optuna.Study, *, trials: int, jobs: int) -> bool:
    """
    Run ``trials`` trials of the study, ``jobs`` at a time; whether all ran (no signal came).

    Every trial asked for is told, whatever happens to its script.
    """
    asked: dict[str, optuna.Trial] = {}
    first = [ask(study, asked) for _ in range(min(jobs, trials))]
    remaining = trials - len(first)
    async with (
        Consumer(COMMAND, max_concurrency=jobs) as consumer,
        handle_signals(consumer) as signals,
        consumer.run_batch(first) as outcomes,
    ):
        async for outcome in outcomes:
            tell(study, asked.pop(outcome.trial_id), outcome)
            if remaining and not signals:  # keep `jobs` scripts running
                outcomes.add(ask(study, asked))
                remaining -= 1
    return not signals


def create_study(
    *, seed: int = 0, jobs: int = 8, storage: str | None = None, name: str = "quadratic"
) -> optuna.Study:
    """A study to minimise, sampled by TPE with a seed; its first ``jobs`` trials are random."""
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=jobs),
        direction="minimize",
        load_if_exists=True,
    )


def summary(study: optuna.Study) -> str:
    """The best trial so far and its parameters, in a line."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return "no trial completed"
    best = study.best_trial
    params = "  ".join(f"{name}={value:.4f}" for name, value in best.params.items())
    head = f"best of {len(completed)} completed: trial-{best.number}"
    return f"{head}  {params}  objective={best.value:.4f}"


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        msg = f"expected a whole number of at least 1, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return number


def main(argv: Sequence[str] | None = None) -> int:
    """Optimise the quadratic with Optuna; print the best parameters. 130 if interrupted."""
    parser = argparse.ArgumentParser(description="Optuna's ask-and-tell with async-consumer.")
    parser.add_argument("--trials", type=_positive, default=40, help="trials in all (40)")
    parser.add_argument("--jobs", type=_positive, default=8, help="trials at once (8)")
    parser.add_argument("--seed", type=int, default=0, help="the TPE sampler's seed (0)")
    parser.add_argument("--storage", help="an Optuna storage URL, e.g. sqlite:///optuna.db")
    parser.add_argument("--study-name", default="quadratic", help="(default: quadratic)")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = create_study(seed=args.seed, jobs=args.jobs, storage=args.storage, name=args.study_name)
    ran_all = asyncio.run(optimize(study, trials=args.trials, jobs=args.jobs))
    print(summary(study))
    return 0 if ran_all else 130


if __name__ == "__main__":
    sys.exit(main())
