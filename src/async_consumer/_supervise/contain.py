"""
Containment: whatever a trial starts ends with the trial, even a process that left its session.

A process group holds a script and the children it starts, but not a child that calls
``setsid()`` (a daemon, ``setsid``, some launchers): stopping the group leaves it running. So each
trial is also put in a box the script cannot leave, chosen once per consumer:

- ``cgroup-v1`` / ``cgroup-v2``: a cgroup of its own, made under the consumer's own cgroup in
  each hierarchy (``freezer`` to kill, ``memory``, ``pids`` and ``cpu`` for the limits; in v2 one
  directory). The script joins it before its ``exec``: a ``/bin/sh`` in front of the command
  writes its own pid in the cgroup's ``cgroup.procs`` and ``exec``\\ s the command (the spawn
  itself has no hook between fork and exec that is safe beside threads). When the trial ends, the
  cgroup is killed (v2: ``cgroup.kill``; v1: freeze, SIGKILL every member, thaw) and removed.
- ``subreaper``: no cgroup can be made. The consumer becomes the subreaper of its descendants
  (``PR_SET_CHILD_SUBREAPER``), so a process whose parent dies comes back to it instead of to
  init. Each trial's processes carry a mark: the soft limit of ``RLIMIT_LOCKS`` set to a number
  of the trial's own (by a ``/bin/sh`` in front of the command, ``ulimit -S -w``), a limit that
  Linux has not enforced since 2.4.25, so the mark changes nothing for the script. Limits are
  inherited by every child and kept across ``exec``, whatever environment the new image gets:
  the environment is not a safe mark, since ``/proc/<pid>/environ`` shows only the block a
  process image started with, and a daemon that re-executes itself with a cleared environment
  (``env -i``, ``execve(path, argv, {})``) drops it. The mark is in the environment too
  (``ASYNC_CONSUMER_CONTAINMENT_MARK``), for a script that raises its own limit. When a
  trial ends, the consumer's children that carry its mark, and all their descendants, are
  stopped (SIGSTOP, so that none forks meanwhile), killed, and reaped.
- ``session``: neither (not Linux): the process group only, as before.

``ASYNC_CONSUMER_CONTAINMENT`` (``auto``, ``cgroup``, ``cgroup-v1``, ``cgroup-v2``,
``subreaper``) or ``Consumer(containment=...)`` chooses; ``auto`` takes the first of v1, v2,
subreaper that can enforce the limits asked for.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from .._errors import LimitsUnavailable
from .._limits import Limits
from .cgroups import BoxUsage, Cgroup, own_cgroups, read_file, sweep, writable, write_file
from .marks import Marked, mark_for

__all__ = [
    "CONTAINMENT_ENV",
    "Box",
    "BoxUsage",
    "Containment",
    "ContainmentMode",
    "Limits",
    "check_executable",
    "choose",
    "describe_here",
]

CONTAINMENT_ENV = "ASYNC_CONSUMER_CONTAINMENT"
"""The environment variable that chooses the containment when a consumer is told ``auto``."""
CHOICES = ("auto", "cgroup", "cgroup-v1", "cgroup-v2", "subreaper", "session")
_serials = itertools.count(1)


class ContainmentMode(StrEnum):
    """How a consumer keeps a trial's processes together (see the module's docstring)."""

    CGROUP_V1 = "cgroup-v1"
    CGROUP_V2 = "cgroup-v2"
    SUBREAPER = "subreaper"
    SESSION = "session"


class Box(Protocol):
    """One trial's box: how its command is started in it, and how it is emptied and removed."""

    def wrap(self, argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """The command and environment that start the script inside the box."""
        ...

    def started(self, pid: int) -> None:
        """The script started in the box, as ``pid``."""
        ...

    def traces(self) -> tuple[str, ...]:
        """What the watchdog needs to empty the box: ``c<cgroup directory>``, ``m<mark>``."""
        ...

    def kill_now(self) -> None:
        """SIGKILL what is in the box at once, without waiting (a second Ctrl-C)."""
        ...

    async def close(self) -> BoxUsage | None:
        """Kill everything left in the box, wait for it to be gone, remove the box."""
        ...


class Containment:
    """A consumer's containment: its mode, and a :class:`Box` for each trial."""

    def __init__(
        self, mode: ContainmentMode, limits: Limits, directories: Mapping[str, Path]
    ) -> None:
        self.mode = mode
        self.limits = limits
        self._directories = dict(directories)  # v1: controller -> our cgroup; v2: "" -> ours
        self._leaders: set[int] = set()  # the running scripts (subreaper): never escaped ones
        self._swept = False

    def describe(self) -> str:
        """One line: the mode, where its cgroups go, and the limits."""
        where = ""
        if self.mode is ContainmentMode.CGROUP_V2:
            where = f" under {self._directories['']}"
        elif self.mode is ContainmentMode.CGROUP_V1:
            where = f" ({', '.join(sorted(self._directories))})"
        elif self.mode is ContainmentMode.SUBREAPER:
            where = " (trials marked by their RLIMIT_LOCKS)"
        limits = f", limits {self.limits.describe()}" if not self.limits.is_empty else ""
        return f"containment: {self.mode}{where}{limits}"

    async def sweep(self) -> None:
        """Once, before the first trial: remove the cgroups that dead consumers left here."""
        if not self._swept and self.mode in (ContainmentMode.CGROUP_V1, ContainmentMode.CGROUP_V2):
            self._swept = True
            await sweep(self._directories)

    def box(self) -> Box:
        """A new trial's box (a cgroup made now, or a mark)."""
        serial = next(_serials)
        if self.mode is ContainmentMode.SUBREAPER:
            return Marked(mark_for(serial), self._leaders)
        if self.mode is ContainmentMode.SESSION:
            return _Session()
        name = f"async-consumer-{os.getpid()}-{serial}"
        v2 = self.mode is ContainmentMode.CGROUP_V2
        return Cgroup.make(v2, name, self._directories, self.limits)


def describe_here() -> str:
    """The containment a worker started here now would have (its line, or why none)."""
    try:
        return choose("auto", Limits()).describe()
    except ValueError as exc:
        return f"containment: {exc}"


_SEVERAL = {
    "auto": tuple(ContainmentMode),  # in the order of the enum: v1, v2, subreaper, session
    "cgroup": (ContainmentMode.CGROUP_V1, ContainmentMode.CGROUP_V2),
}


def choose(asked: str, limits: Limits) -> Containment:
    """
    The containment for ``asked`` (``auto`` reads ``ASYNC_CONSUMER_CONTAINMENT``) and ``limits``.

    Raises:
        LimitsUnavailable: limits were asked for and nothing here can enforce them.
        ValueError: an unknown choice, or a mode asked for that this machine does not have.
    """
    if asked == "auto":
        asked = os.environ.get(CONTAINMENT_ENV, "").strip() or "auto"
    if asked not in CHOICES:
        msg = f"containment: expected one of {', '.join(CHOICES)}, not {asked!r}"
        raise ValueError(msg)
    if asked in _SEVERAL:
        candidates = _SEVERAL[asked]
    else:
        candidates = (ContainmentMode(asked),)
    v1, v2 = own_cgroups()
    reasons = []
    for mode in candidates:
        reason, directories = _fit(mode, limits, v1, v2)
        if reason is None:
            return Containment(mode, limits, directories)
        reasons.append(f"{mode}: {reason}")
    why = "; ".join(reasons)
    if not limits.is_empty:
        msg = f"cannot enforce {limits.describe()} here ({why}); see the README's Containment"
        raise LimitsUnavailable(msg)
    msg = f"containment {asked!r} is not available here ({why})"
    raise ValueError(msg)


def _fit(
    mode: ContainmentMode, limits: Limits, v1: dict[str, Path], v2: Path | None
) -> tuple[str | None, dict[str, Path]]:
    """Why ``mode`` cannot serve (``None`` if it can), and the cgroups it would use."""
    if mode is ContainmentMode.CGROUP_V1:
        return _fit_v1(limits, v1)
    if mode is ContainmentMode.CGROUP_V2:
        return _fit_v2(limits, v2)
    if not limits.is_empty:
        return "no cgroup, so no limit", {}
    if mode is ContainmentMode.SUBREAPER and not sys.platform.startswith("linux"):
        return "not Linux", {}
    return None, {}


def _fit_v1(limits: Limits, v1: dict[str, Path]) -> tuple[str | None, dict[str, Path]]:
    needed = {"freezer"}
    needed |= {"memory"} if limits.memory is not None else set()
    needed |= {"pids"} if limits.pids is not None else set()
    needed |= {"cpu"} if limits.cpus is not None else set()
    missing = sorted(c for c in needed if not writable(v1.get(c)))
    if missing:
        return f"no writable v1 hierarchy for {', '.join(missing)}", {}
    # only those needed: a memory cgroup costs 0.3 ms a trial to make and remove
    return None, {c: v1[c] for c in needed}


def _fit_v2(limits: Limits, v2: Path | None) -> tuple[str | None, dict[str, Path]]:
    if v2 is None or not writable(v2):
        return "no writable cgroup v2 of ours", {}
    # the root cgroup has neither cgroup.kill nor cgroup.type; a child of it has both
    if (v2 / "cgroup.type").exists() and not (v2 / "cgroup.kill").exists():
        return "no cgroup.kill (Linux 5.14 or later)", {}
    needed = {
        name
        for name, value in (("memory", limits.memory), ("pids", limits.pids), ("cpu", limits.cpus))
        if value is not None
    }
    if needed:
        enabled = set(read_file(v2 / "cgroup.subtree_control").split())
        missing = sorted(needed - enabled)
        for controller in list(missing):  # enabling works where ours holds no process (root)
            with contextlib.suppress(OSError):
                write_file(v2 / "cgroup.subtree_control", f"+{controller}")
                missing.remove(controller)
        if missing:
            return f"controllers {', '.join(missing)} not delegated to {v2}", {}
    return None, {"": v2}


class _Session:
    """No box but the process group (not Linux)."""

    def wrap(self, argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """The command as it is."""
        return list(argv), dict(env)

    def started(self, pid: int) -> None:
        """Nothing to note."""

    def traces(self) -> tuple[str, ...]:
        """Nothing beyond the group."""
        return ()

    def kill_now(self) -> None:
        """Nothing beyond the group."""

    async def close(self) -> None:
        """Nothing beyond the group."""


def check_executable(program: str, cwd: Path | None, env: Mapping[str, str]) -> None:
    """
    Raise the error ``exec`` would, before a command is started behind a wrapper.

    Raises:
        FileNotFoundError: no such program (on the ``PATH`` of ``env`` if it names no directory).
        PermissionError: the file is not executable, or is a directory.
    """
    if "/" in program:
        path = Path(cwd or ".") / program
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        if path.is_dir() or not os.access(path, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
        return
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
