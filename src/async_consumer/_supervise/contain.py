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
import ctypes
import errno
import itertools
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import anyio

from .._errors import LimitsUnavailable
from .._limits import Limits

__all__ = [
    "CONTAINMENT_ENV",
    "MARK_ENV",
    "Box",
    "BoxUsage",
    "Containment",
    "ContainmentMode",
    "check_executable",
    "choose",
    "describe_here",
]

CONTAINMENT_ENV = "ASYNC_CONSUMER_CONTAINMENT"
"""The environment variable that chooses the containment when a consumer is told ``auto``."""
MARK_ENV = "ASYNC_CONSUMER_CONTAINMENT_MARK"
"""The trial's mark in its environment (subreaper mode)."""
CHOICES = ("auto", "cgroup", "cgroup-v1", "cgroup-v2", "subreaper", "session")
KILL_BOUND = 5.0
"""Seconds to wait for a killed trial's processes to be gone (in D state: long)."""
CPU_PERIOD_US = 100_000
_PR_SET_CHILD_SUBREAPER = 36
_MARK_BASE = 0x4143 << 48  # "AC": above any count of file locks (a limit Linux ignores)
_serials = itertools.count(1)
# the command's first, then the cgroup.procs files to join, then "--" and the command
# the mark, then the command
_MARK = 'ulimit -S -w "$1" || exit 125; shift; exec "$@"'
_JOIN = 'for f; do shift; [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; done; exec "$@"'


class ContainmentMode(StrEnum):
    """How a consumer keeps a trial's processes together (see the module's docstring)."""

    CGROUP_V1 = "cgroup-v1"
    CGROUP_V2 = "cgroup-v2"
    SUBREAPER = "subreaper"
    SESSION = "session"


@dataclass(frozen=True, slots=True)
class BoxUsage:
    """What a trial's cgroup saw: its peak memory, OOM kills, and forks refused by its limit."""

    peak_memory_bytes: int | None = None
    oom_kills: int = 0
    forks_refused: int = 0


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


# --- where the cgroups are -------------------------------------------------------------------


def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _inside(mount: str, root: str, own: str) -> Path | None:
    """The directory of the cgroup ``own`` in a hierarchy mounted at ``mount`` from ``root``."""
    if root == "/":
        return Path(mount + own)
    if own == root or own.startswith(root + "/"):
        return Path(mount + own[len(root) :])
    return None  # our cgroup is outside what this mount shows


def _own_cgroups() -> tuple[dict[str, Path], Path | None]:
    """v1: controller -> the directory of our cgroup; v2: the directory of ours (or ``None``)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return {}, None
    own = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        own[controllers] = path
    v1: dict[str, Path] = {}
    v2 = None
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields, kind = left.split(), right.split()
        if len(fields) < 5 or len(kind) < 3:
            continue
        root, mount = _unescape(fields[3]), _unescape(fields[4])
        if kind[0] == "cgroup2" and "" in own and v2 is None:
            v2 = _inside(mount, root, own[""])
        elif kind[0] == "cgroup":
            options = set(kind[2].split(","))
            for controllers, path in own.items():
                names = set(controllers.split(","))
                if controllers and names <= options:
                    where = _inside(mount, root, path)
                    if where is not None:
                        v1.update(dict.fromkeys(names - v1.keys(), where))
    return v1, v2


def _writable(directory: Path | None) -> bool:
    return directory is not None and directory.is_dir() and os.access(directory, os.W_OK)


# --- choosing --------------------------------------------------------------------------------


class Containment:
    """A consumer's containment: its mode, and a :class:`Box` for each trial."""

    def __init__(
        self, mode: ContainmentMode, limits: Limits, directories: Mapping[str, Path]
    ) -> None:
        self.mode = mode
        self.limits = limits
        self._directories = dict(directories)  # v1: controller -> our cgroup; v2: "" -> ours
        self._leaders: set[int] = set()  # the running scripts (subreaper): never escaped ones
        self._subreaper = False  # this consumer holds the process's subreaper flag

    def close(self) -> None:
        """
        Let go of the subreaper flag (subreaper mode; the last consumer holding it clears it):
        a process that no longer runs trials gets no orphans. Trials must have ended.
        """
        if self._subreaper:
            self._subreaper = False
            _release_subreaper()

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

    def box(self) -> Box:
        """A new trial's box (a cgroup made now, or a mark)."""
        serial = next(_serials)
        if self.mode is ContainmentMode.SUBREAPER and not self._subreaper:
            _hold_subreaper()  # with the first trial: choosing changes nothing
            self._subreaper = True
            mark = _MARK_BASE + ((os.getpid() & 0x3FFFFF) << 24) + (serial & 0xFFFFFF)
            return _Marked(mark, self._leaders)
        if self.mode is ContainmentMode.SESSION:
            return _Session()
        name = f"async-consumer-{os.getpid()}-{serial}"
        return _Cgroup.make(self.mode, name, self._directories, self.limits)


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
    v1, v2 = _own_cgroups()
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
    missing = sorted(c for c in needed if not _writable(v1.get(c)))
    if missing:
        return f"no writable v1 hierarchy for {', '.join(missing)}", {}
    # only those needed: a memory cgroup costs 0.3 ms a trial to make and remove
    return None, {c: v1[c] for c in needed}


def _fit_v2(limits: Limits, v2: Path | None) -> tuple[str | None, dict[str, Path]]:
    if v2 is None or not _writable(v2):
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
        enabled = set(_read(v2 / "cgroup.subtree_control").split())
        missing = sorted(needed - enabled)
        for controller in list(missing):  # enabling works where ours holds no process (root)
            with contextlib.suppress(OSError):
                _write(v2 / "cgroup.subtree_control", f"+{controller}")
                missing.remove(controller)
        if missing:
            return f"controllers {', '.join(missing)} not delegated to {v2}", {}
    return None, {"": v2}


# --- cgroups ---------------------------------------------------------------------------------


def _read(path: Path) -> str:
    with open(path) as file:
        return file.read()


def _write(path: Path, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def _members(directory: Path) -> list[int]:
    try:
        return [int(pid) for pid in _read(directory / "cgroup.procs").split()]
    except OSError:
        return []


def _counter(path: Path, key: str) -> int:
    """The number after ``key`` in a flat-keyed file such as ``memory.events`` (0 if none)."""
    with contextlib.suppress(OSError, ValueError):
        for line in _read(path).splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


def _number(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(_read(path))
    return None


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


class _Cgroup:
    """One trial's cgroup: a directory in each v1 hierarchy used, or one in v2."""

    def __init__(self, mode: ContainmentMode, directories: dict[str, Path]) -> None:
        self._mode = mode
        self._directories = directories  # v1: controller -> directory; v2: "" -> directory

    @classmethod
    def make(
        cls, mode: ContainmentMode, name: str, parents: Mapping[str, Path], limits: Limits
    ) -> _Cgroup:
        """Make the cgroup (in every hierarchy) and set its limits; remove it on a failure."""
        made = cls(mode, {})
        try:
            for controller, parent in parents.items():
                directory = parent / name
                directory.mkdir()
                made._directories[controller] = directory
            made._limit(limits)
        except BaseException:
            made._remove()
            raise
        return made

    def _limit(self, limits: Limits) -> None:
        if self._mode is ContainmentMode.CGROUP_V2:
            here = self._directories[""]
            if limits.memory is not None:
                _write(here / "memory.max", str(limits.memory))
                with contextlib.suppress(OSError):  # no swap in the limit's way
                    _write(here / "memory.swap.max", "0")
            if limits.pids is not None:
                _write(here / "pids.max", str(limits.pids))
            if limits.cpus is not None:
                _write(here / "cpu.max", f"{round(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
            return
        if limits.memory is not None:
            memory = self._directories["memory"]
            _write(memory / "memory.limit_in_bytes", str(limits.memory))
            with contextlib.suppress(OSError):  # swap accounting may be off
                _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory))
        if limits.pids is not None:
            _write(self._directories["pids"] / "pids.max", str(limits.pids))
        if limits.cpus is not None:
            cpu = self._directories["cpu"]
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(max(1000, round(limits.cpus * CPU_PERIOD_US))))

    def wrap(self, argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """``/bin/sh`` joins the cgroup (its pid, before exec) and execs the command."""
        procs = [str(d / "cgroup.procs") for d in self._directories.values()]
        return ["/bin/sh", "-c", _JOIN, "async-consumer", *procs, "--", *argv], dict(env)

    @property
    def _tracker(self) -> Path:
        """The directory whose ``cgroup.procs`` lists every member (freezer's in v1)."""
        return self._directories["" if self._mode is ContainmentMode.CGROUP_V2 else "freezer"]

    def started(self, pid: int) -> None:
        """Nothing to note: the cgroup knows its members."""

    def traces(self) -> tuple[str, ...]:
        """Its directories, for the watchdog."""
        return tuple(f"c{directory}" for directory in self._directories.values())

    def kill_now(self) -> None:
        """SIGKILL every member now (v2: ``cgroup.kill``)."""
        if self._mode is ContainmentMode.CGROUP_V2:
            with contextlib.suppress(OSError):
                _write(self._tracker / "cgroup.kill", "1")
            return
        _signal_all(_members(self._tracker), signal.SIGKILL)

    async def close(self) -> BoxUsage | None:
        """Kill every member, wait until none is left, read the usage, remove the cgroup."""
        killed: set[int] = set()
        delay = 0.001
        with anyio.move_on_after(KILL_BOUND):
            while members := _members(self._tracker):
                killed.update(members)
                await self._kill()
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.05)
        _reap_ours(killed)
        usage = self._usage()
        self._remove()
        return usage

    async def _kill(self) -> None:
        if self._mode is ContainmentMode.CGROUP_V2:
            _write(self._tracker / "cgroup.kill", "1")
            return
        # v1: frozen, no member can fork while the others are being killed
        state = self._tracker / "freezer.state"
        _write(state, "FROZEN")
        try:
            with anyio.move_on_after(1.0):  # a member in D state may keep it FREEZING
                await _until(lambda: _read(state).strip() == "FROZEN")
            _signal_all(_members(self._tracker), signal.SIGKILL)
        finally:
            _write(state, "THAWED")

    def _usage(self) -> BoxUsage:
        if self._mode is ContainmentMode.CGROUP_V2:
            here = self._directories[""]
            return BoxUsage(
                peak_memory_bytes=_number(here / "memory.peak"),
                oom_kills=_counter(here / "memory.events", "oom_kill"),
                forks_refused=_counter(here / "pids.events", "max"),
            )
        memory, pids = self._directories.get("memory"), self._directories.get("pids")
        return BoxUsage(
            peak_memory_bytes=None
            if memory is None
            else _number(memory / "memory.max_usage_in_bytes"),
            oom_kills=0 if memory is None else _counter(memory / "memory.oom_control", "oom_kill"),
            forks_refused=0 if pids is None else _counter(pids / "pids.events", "max"),
        )

    def _remove(self) -> None:
        for directory in self._directories.values():
            with contextlib.suppress(FileNotFoundError):
                try:
                    directory.rmdir()
                except OSError as exc:  # still busy: left, and said so
                    if exc.errno != errno.ENOENT:
                        _warn(f"could not remove the cgroup {directory}: {exc.strerror}")


async def _until(done: Callable[[], bool]) -> None:
    """Look again and again, ever less often, until ``done()`` (the caller bounds the wait)."""
    delay = 0.001
    while not done():
        await anyio.sleep(delay)
        delay = min(delay * 2, 0.05)


def _warn(message: str) -> None:
    logging.getLogger("async_consumer").warning("%s", message)


# --- the subreaper and its marks -------------------------------------------------------------


_subreaper_holders = 0  # consumers in subreaper mode that started a trial and are not closed


def _set_subreaper(on: bool) -> None:
    """Make this process its descendants' subreaper, or no longer (Linux 3.4 and later)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(code)}")


def _hold_subreaper() -> None:
    global _subreaper_holders  # a process-wide property, held by consumers
    if _subreaper_holders == 0:
        _set_subreaper(True)
    _subreaper_holders += 1


def _release_subreaper() -> None:
    global _subreaper_holders
    _subreaper_holders -= 1
    if _subreaper_holders == 0:
        _set_subreaper(False)


def _children(pid: int) -> list[int]:
    """The children of ``pid`` (of all its threads), zombies included."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as file:
                found.extend(int(child) for child in file.read().split())
    return found


def _mark_of(pid: int) -> int | None:
    """The mark a process carries: its ``RLIMIT_LOCKS`` soft limit, else its environment's."""
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/limits") as file:
        for line in file:
            if line.startswith("Max file locks"):
                soft = line[26:].split()[0]
                if soft.isdigit() and int(soft) >= _MARK_BASE:
                    return int(soft)
    prefix = f"{MARK_ENV}=".encode()
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/environ", "rb") as env:
        for item in env.read().split(b"\0"):
            if item.startswith(prefix):
                return int(item[len(prefix) :])
    return None


class _Marked:
    """One trial's mark (subreaper mode)."""

    def __init__(self, mark: int, leaders: set[int]) -> None:
        self._mark = mark
        self._leaders = leaders  # shared by the consumer's boxes: not looked at for marks
        self._leader: int | None = None

    def traces(self) -> tuple[str, ...]:
        """Its mark, for the watchdog."""
        return (f"m{self._mark}",)

    def started(self, pid: int) -> None:
        """Its script is a child of ours that did not escape: not one to look at."""
        self._leader = pid
        self._leaders.add(pid)

    def wrap(self, argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """``/bin/sh`` sets the mark and execs the command; the environment carries it too."""
        marked = {**env, MARK_ENV: str(self._mark)}
        return ["/bin/sh", "-c", _MARK, "async-consumer", str(self._mark), *argv], marked

    def _escaped(self) -> list[int]:
        """The trial's processes that came back to us, and all their descendants."""
        leaders = self._leaders
        found = [
            pid
            for pid in _children(os.getpid())
            if pid not in leaders and _mark_of(pid) == self._mark
        ]
        for pid in found:  # grows as it goes: breadth first
            found.extend(_children(pid))
        return found

    def kill_now(self) -> None:
        """SIGKILL the trial's escaped processes now."""
        _signal_all(self._escaped(), signal.SIGKILL)

    async def close(self) -> None:
        """Stop every escaped process (so none forks), kill them, reap those that are ours."""
        if self._leader is not None:
            self._leaders.discard(self._leader)
        stopped: set[int] = set()
        with anyio.move_on_after(KILL_BOUND):
            while found := [pid for pid in self._escaped() if pid not in stopped]:
                _signal_all(found, signal.SIGSTOP)
                stopped.update(found)
            _signal_all(stopped, signal.SIGKILL)
            await _until(lambda: not self._reap(stopped))

    def _reap(self, killed: set[int]) -> bool:
        """Reap our children among the killed (or marked); whether some are left to reap."""
        left = False
        for pid in _children(os.getpid()):
            if pid in killed or _mark_of(pid) == self._mark:
                with contextlib.suppress(ChildProcessError):
                    done, _ = os.waitpid(pid, os.WNOHANG)
                    left = left or done == 0
        return left or any(_alive(pid) for pid in killed)


def _reap_ours(killed: set[int]) -> None:
    """Reap the killed processes that came back to us (we are a subreaper): none stays a zombie."""
    if not killed:
        return
    for pid in _children(os.getpid()):
        if pid in killed:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


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
