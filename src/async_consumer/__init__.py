"""
async-consumer: run a black-box script once per hyperparameter trial, asynchronously.

Everything public is imported from here; the modules behind it are private (their map:
docs/design-notes.md). :class:`Consumer` runs trials, :class:`Worker` pulls them from a store
(``async_consumer.stores``); the models, the errors and two opt-in process-wide settings
(:func:`tune_gc`, :func:`install_child_watcher`) complete the public API.

The public API is imported on first use: ``import async_consumer`` imports none of the modules
behind it, so that the command (which imports the private modules it runs, and no more) starts
quickly; the first public name asked for imports them all.
"""

# no ``from __future__ import annotations``: its name would be a public name of the package
import importlib
import logging as _logging
import typing

# a library logs where its application says, and nowhere unasked (the logging HOWTO's rule):
# without a handler of its own, Python's last resort wrote its warnings to stderr
_logging.getLogger("async_consumer").addHandler(_logging.NullHandler())

if typing.TYPE_CHECKING:
    from ._admission import Place as Place
    from ._batch import Batch as Batch
    from ._consumer import Consumer as Consumer
    from ._errors import ConsumerError as ConsumerError
    from ._errors import DuplicateTrial as DuplicateTrial
    from ._errors import InvalidResults as InvalidResults
    from ._errors import LaunchError as LaunchError
    from ._errors import LeaseLost as LeaseLost
    from ._errors import LimitsUnavailable as LimitsUnavailable
    from ._errors import MissingResults as MissingResults
    from ._errors import ResultsError as ResultsError
    from ._errors import SlotError as SlotError
    from ._errors import SpaceError as SpaceError
    from ._errors import StoreBusy as StoreBusy
    from ._errors import StoreError as StoreError
    from ._errors import StoreUnavailable as StoreUnavailable
    from ._errors import TemplateError as TemplateError
    from ._errors import TrialFilesError as TrialFilesError
    from ._errors import TrialNotFound as TrialNotFound
    from ._experiment import Experiment as Experiment
    from ._fleet import WorkerInfo as WorkerInfo
    from ._fleet import WorkerState as WorkerState
    from ._gctune import tune_gc as tune_gc
    from ._limits import Limits as Limits
    from ._models import Attempt as Attempt
    from ._models import Lease as Lease
    from ._models import Outcome as Outcome
    from ._models import Reason as Reason
    from ._models import Result as Result
    from ._models import Status as Status
    from ._models import StoredTrial as StoredTrial
    from ._models import Trial as Trial
    from ._models import TrialStatus as TrialStatus
    from ._ranking import best_trial as best_trial
    from ._resume import ResumePolicy as ResumePolicy
    from ._retry import RetryPolicy as RetryPolicy
    from ._search.optimize import optimize as optimize
    from ._search.optimize import pruning_callback as pruning_callback
    from ._search.search import Search as Search
    from ._search.search import SearchPlan as SearchPlan
    from ._search.space import Space as Space
    from ._signals import handle_signals as handle_signals
    from ._supervise.heartbeat import HeartbeatTarget as HeartbeatTarget
    from ._supervise.metrics import Metric as Metric
    from ._supervise.process import install_child_watcher as install_child_watcher
    from ._trial.codeversion import CodeChangePolicy as CodeChangePolicy
    from ._trial.command import CommandTemplate as CommandTemplate
    from ._trial.command import ConfigTemplate as ConfigTemplate
    from ._trial.paths import TrialPaths as TrialPaths
    from ._trial.readback import read_results as read_results
    from ._trial.results import parse_results as parse_results
    from ._worker.worker import Worker as Worker


__version__ = "0.1.0"
"""The package's version (the one source: pyproject.toml reads it from here)."""


_ORIGINS = {
    "Attempt": "._models",
    "Batch": "._batch",
    "CodeChangePolicy": "._trial.codeversion",
    "CommandTemplate": "._trial.command",
    "ConfigTemplate": "._trial.command",
    "Consumer": "._consumer",
    "ConsumerError": "._errors",
    "DuplicateTrial": "._errors",
    "Experiment": "._experiment",
    "HeartbeatTarget": "._supervise.heartbeat",
    "InvalidResults": "._errors",
    "LaunchError": "._errors",
    "Lease": "._models",
    "LeaseLost": "._errors",
    "Limits": "._limits",
    "LimitsUnavailable": "._errors",
    "Metric": "._supervise.metrics",
    "MissingResults": "._errors",
    "Outcome": "._models",
    "Place": "._admission",
    "Reason": "._models",
    "Result": "._models",
    "ResultsError": "._errors",
    "ResumePolicy": "._resume",
    "RetryPolicy": "._retry",
    "Search": "._search.search",
    "SearchPlan": "._search.search",
    "SlotError": "._errors",
    "Space": "._search.space",
    "SpaceError": "._errors",
    "Status": "._models",
    "StoreBusy": "._errors",
    "StoreError": "._errors",
    "StoreUnavailable": "._errors",
    "StoredTrial": "._models",
    "TemplateError": "._errors",
    "Trial": "._models",
    "TrialFilesError": "._errors",
    "TrialNotFound": "._errors",
    "TrialPaths": "._trial.paths",
    "TrialStatus": "._models",
    "Worker": "._worker.worker",
    "WorkerInfo": "._fleet",
    "WorkerState": "._fleet",
    "best_trial": "._ranking",
    "handle_signals": "._signals",
    "install_child_watcher": "._supervise.process",
    "optimize": "._search.optimize",
    "parse_results": "._trial.results",
    "pruning_callback": "._search.optimize",
    "read_results": "._trial.readback",
    "tune_gc": "._gctune",
}
"""
Every public name, sorted, and the module that defines it: the one list of the public API.

The imports under ``TYPE_CHECKING`` repeat it for type checkers and IDEs, which cannot read a
table (``tests/test_public.py`` holds the two together).
"""

__all__ = list(_ORIGINS)


def __getattr__(name: str) -> object:
    """
    Import every public name the first time one is asked for.

    All at once, not one by one, so that every public class says it comes from
    ``async_consumer`` (see :func:`_present_as_public`) as soon as any is used, as when the
    public API was imported with the package.
    """
    if name == "stores":  # the public subpackage, there after ``import async_consumer`` as before
        return importlib.import_module(".stores", __name__)
    if name not in _ORIGINS:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    for public, module in _ORIGINS.items():
        globals()[public] = getattr(importlib.import_module(module, __name__), public)
    _present_as_public()
    return globals()[name]


def __dir__() -> list[str]:
    """The module's names, the public ones not yet imported included."""
    return sorted({*globals(), *__all__})


def _present_as_public() -> None:
    """
    Make the public classes and functions say they come from ``async_consumer``.

    Reprs, tracebacks and documentation then read ``async_consumer.Outcome``, not the private
    module it happens to be defined in (as anyio and httpx do).
    """
    for name in __all__:
        value = globals()[name]
        if getattr(value, "__module__", "").startswith(__name__ + "."):
            value.__module__ = __name__
