"""
async-consumer: run a black-box script once per hyperparameter trial, asynchronously.

Everything public is imported from here; the modules behind it are private.
"""

from ._batch import Batch
from ._consumer import Consumer
from ._errors import (
    ConsumerError,
    DuplicateTrial,
    InvalidResults,
    LaunchError,
    LeaseLost,
    MissingResults,
    ResultsError,
    SlotError,
    StoreError,
    TemplateError,
    TrialNotFound,
)
from ._fleet import WorkerInfo, WorkerState
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
from ._retry import RetryPolicy
from ._signals import handle_signals
from ._supervise.heartbeat import HeartbeatTarget
from ._supervise.metrics import Metric
from ._trial.codeversion import CodeChangePolicy
from ._trial.command import CommandTemplate, ConfigTemplate
from ._trial.results import parse_results, read_results

__all__ = [
    "Attempt",
    "Batch",
    "CodeChangePolicy",
    "CommandTemplate",
    "ConfigTemplate",
    "Consumer",
    "ConsumerError",
    "DuplicateTrial",
    "HeartbeatTarget",
    "InvalidResults",
    "LaunchError",
    "Lease",
    "LeaseLost",
    "Metric",
    "MissingResults",
    "Outcome",
    "Reason",
    "Result",
    "ResultsError",
    "RetryPolicy",
    "SlotError",
    "Status",
    "StoreError",
    "StoredTrial",
    "TemplateError",
    "Trial",
    "TrialNotFound",
    "TrialStatus",
    "WorkerInfo",
    "WorkerState",
    "handle_signals",
    "parse_results",
    "read_results",
    "tune_gc",
]

__version__ = "0.1.0"
