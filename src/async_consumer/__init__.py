"""
async-consumer: run a black-box script once per hyperparameter trial, asynchronously.

Everything public is imported from here; the modules behind it are private (their map:
docs/design-notes.md). :class:`Consumer` runs trials, :class:`Worker` pulls them from a store
(``async_consumer.stores``); the models, the errors and two opt-in process-wide settings
(:func:`tune_gc`, :func:`install_child_watcher`) complete the door.
"""

from ._batch import Batch
from ._consumer import Consumer
from ._errors import (
    ConsumerError,
    DuplicateTrial,
    InvalidResults,
    LeaseLost,
    MissingResults,
    ResultsError,
    SlotError,
    StoreError,
    TemplateError,
    TrialNotFound,
)
from ._experiment import Experiment
from ._gctune import tune_gc
from ._models import (
    Attempt,
    Lease,
    Outcome,
    Reason,
    Result,
    Status,
    StoredTrial,
    Trial,
    TrialStatus,
)
from ._ranking import best_trial
from ._resume import ResumePolicy
from ._retry import RetryPolicy
from ._signals import handle_signals
from ._supervise.heartbeat import HeartbeatTarget
from ._supervise.metrics import Metric
from ._supervise.process import install_child_watcher
from ._trial.codeversion import CodeChangePolicy
from ._trial.command import CommandTemplate, ConfigTemplate
from ._trial.paths import TrialPaths
from ._trial.readback import read_results
from ._trial.results import parse_results
from ._worker import Worker

__all__ = [
    "Attempt",
    "Batch",
    "CodeChangePolicy",
    "CommandTemplate",
    "ConfigTemplate",
    "Consumer",
    "ConsumerError",
    "DuplicateTrial",
    "Experiment",
    "HeartbeatTarget",
    "InvalidResults",
    "Lease",
    "LeaseLost",
    "Metric",
    "MissingResults",
    "Outcome",
    "Reason",
    "Result",
    "ResultsError",
    "ResumePolicy",
    "RetryPolicy",
    "SlotError",
    "Status",
    "StoreError",
    "StoredTrial",
    "TemplateError",
    "Trial",
    "TrialNotFound",
    "TrialPaths",
    "TrialStatus",
    "Worker",
    "best_trial",
    "handle_signals",
    "install_child_watcher",
    "parse_results",
    "read_results",
    "tune_gc",
]

__version__ = "0.1.0"
"""The package's version (the one source: pyproject.toml reads it from here)."""


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


_present_as_public()
