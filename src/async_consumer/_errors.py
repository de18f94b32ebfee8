"""
The exception tree of async-consumer.

A failing user script is never an exception: it is an :class:`~async_consumer.Outcome`.
Exceptions are for misuse and for the infrastructure::

    ConsumerError
    ├── TemplateError (also ValueError)   a command or config template cannot be rendered
    ├── SlotError (also ValueError)       a trial asks for more slots than exist
    ├── SpaceError (also ValueError)      a search space's prior cannot be parsed or is impossible
    ├── LimitsUnavailable (also ValueError) limits asked for that this machine cannot enforce
    ├── TrialFilesError (also OSError)    this host cannot create a trial's files (disk full...)
    ├── StoreError                        a trial store failed or was misused
    │   ├── StoreUnavailable              the store cannot be reached now (worth a retry)
    │   │   └── StoreBusy                 it answered, but serves no one more now (too many clients)
    │   ├── LeaseLost                     a heartbeat or finish came with a stale fencing token
    │   ├── TrialNotFound (also KeyError) no trial with that id in the store
    │   └── DuplicateTrial                a trial with that id already exists
    ├── ResultsError                      a results file could not be accepted
    │   ├── MissingResults                absent, empty, or not a regular file
    │   └── InvalidResults                not JSON, not UTF-8, wrong schema, too large
    └── LaunchError                       a cluster scheduler would not take a fleet (no sbatch)
"""

from __future__ import annotations


class ConsumerError(Exception):
    """Base class of every error raised by async-consumer."""


class TemplateError(ConsumerError, ValueError):
    """A trial's command line, config file or ``params.json`` cannot be rendered."""


class SlotError(ConsumerError, ValueError):
    """A trial asks for more slots of a kind than the consumer has."""


class SpaceError(ConsumerError, ValueError):
    """A search space's prior (``--lr~'loguniform(1e-5, 1)'``) cannot be parsed, or is impossible."""


class LimitsUnavailable(ConsumerError, ValueError):
    """
    Limits per trial were asked for (memory, CPUs, processes) that nothing on this machine can
    enforce: no cgroup the consumer may make with the controllers needed. Raised before anything
    starts; a trial is never run unlimited instead.
    """


class StoreError(ConsumerError):
    """A trial store failed or was used wrongly."""


class StoreUnavailable(StoreError):
    """
    The store cannot be reached now: a refused, reset or terminated connection, a restarting
    server, too many connections, a busy, locked or failing SQLite file.

    Worth a retry: a worker retries the call with backoff until the store has been unreachable
    longer than its limit, and raises this error then. Every other ``StoreError`` (a schema from
    a newer version, bad credentials) is not retried.
    """


class StoreBusy(StoreUnavailable):
    """
    The store answered, but takes no more connections now: too many clients, a server starting
    up or shutting down, a pooler whose server is away. It was reached: a command waits this out
    as any outage, where a store never reached at all (a wrong port or host) fails fast.
    """


class TrialFilesError(ConsumerError, OSError):
    """
    A trial's files could not be created: a fault of this host (a full or read-only disk, too
    many open files), not of the trial, which goes back to the queue without counting a loss.
    """

    def __init__(self, directory: str, exc: OSError) -> None:
        super().__init__(
            exc.errno, f"cannot create trial files in {directory}: {exc.strerror or exc}"
        )
        self.directory = directory

    def __str__(self) -> str:
        return str(self.args[1])


class LeaseLost(StoreError):
    """
    The lease on a trial is no longer ours.

    Raised by ``heartbeat`` and ``finish`` when the trial's fencing token moved on: another worker
    reclaimed the trial, so this worker's beat or result must not be accepted.
    """

    def __init__(self, trial_id: str, message: str = "the lease was taken over") -> None:
        super().__init__(f"trial {trial_id!r}: {message}")
        self.trial_id = trial_id


class TrialNotFound(StoreError, KeyError):
    """No trial with this id exists in the store."""

    def __init__(self, trial_id: str) -> None:
        super().__init__(f"no trial {trial_id!r} in the store")
        self.trial_id = trial_id

    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateTrial(StoreError):
    """A trial with this id is already in the store."""

    def __init__(self, trial_id: str) -> None:
        super().__init__(f"trial {trial_id!r} is already in the store")
        self.trial_id = trial_id


class ResultsError(ConsumerError):
    """A trial's results file could not be accepted."""

    def __init__(self, path: str, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.path = path
        self.problems = problems


class MissingResults(ResultsError):
    """The results file is absent, empty or not a regular file."""


class InvalidResults(ResultsError):
    """The results file is not UTF-8 JSON of the expected shape, or is too large."""


class LaunchError(ConsumerError):
    """A fleet could not be handed to the cluster's scheduler (``sbatch`` missing or refusing)."""
