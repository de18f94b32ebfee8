"""
The cgroup modes' parts: where this process's cgroups are, and one trial's cgroup.

A trial's cgroup is made under the consumer's own in each hierarchy used (v1: ``freezer`` to
kill, ``memory``, ``pids``, ``cpu`` for their limits; v2: one directory), so a Slurm job's or a
container's limits still bound it. The script joins it before its ``exec``: a ``/bin/sh`` in
front of the command writes its own pid in each ``cgroup.procs`` and ``exec``\\ s the command.
When the trial ends it is killed (v2: ``cgroup.kill``; v1: frozen, every member SIGKILLed,
thawed), waited for, its usage read, and removed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from .._limits import Limits
from .marks import KILL_BOUND, reap_ours, signal_all, until

__all__ = ["BoxUsage", "Cgroup", "own_cgroups", "read_file", "sweep", "writable", "write_file"]

CPU_PERIOD_US = 100_000
# the cgroup.procs files to join, then "--" and the command
_JOIN = 'for f; do shift; [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; done; exec "$@"'


@dataclass(frozen=True, slots=True)
class BoxUsage:
    """What a trial's cgroup saw: its peak memory, OOM kills, and forks refused by its limit."""

    peak_memory_bytes: int | None = None
    oom_kills: int = 0
    forks_refused: int = 0


def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _inside(mount: str, root: str, own: str) -> Path | None:
    """The directory of the cgroup ``own`` in a hierarchy mounted at ``mount`` from ``root``."""
    if root == "/":
        return Path(mount + own)
    if own == root or own.startswith(root + "/"):
        return Path(mount + own[len(root) :])
    return None  # our cgroup is outside what this mount shows


def own_cgroups() -> tuple[dict[str, Path], Path | None]:
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


def writable(directory: Path | None) -> bool:
    return directory is not None and directory.is_dir() and os.access(directory, os.W_OK)


def read_file(path: Path) -> str:
    with open(path) as file:
        return file.read()


def write_file(path: Path, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def _members(directory: Path) -> list[int]:
    try:
        return [int(pid) for pid in read_file(directory / "cgroup.procs").split()]
    except OSError:
        return []


def _counter(path: Path, key: str) -> int:
    """The number after ``key`` in a flat-keyed file such as ``memory.events`` (0 if none)."""
    with contextlib.suppress(OSError, ValueError):
        for line in read_file(path).splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


def _number(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(read_file(path))
    return None


class Cgroup:
    """One trial's cgroup: a directory in each v1 hierarchy used, or one in v2."""

    def __init__(self, v2: bool, directories: dict[str, Path]) -> None:
        self._v2 = v2
        self._directories = directories  # v1: controller -> directory; v2: "" -> directory

    @classmethod
    def make(cls, v2: bool, name: str, parents: Mapping[str, Path], limits: Limits) -> Cgroup:
        """Make the cgroup (in every hierarchy) and set its limits; remove it on a failure."""
        made = cls(v2, {})
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
        if self._v2:
            here = self._directories[""]
            if limits.memory is not None:
                write_file(here / "memory.max", str(limits.memory))
                with contextlib.suppress(OSError):  # no swap in the limit's way
                    write_file(here / "memory.swap.max", "0")
            if limits.pids is not None:
                write_file(here / "pids.max", str(limits.pids))
            if limits.cpus is not None:
                write_file(
                    here / "cpu.max", f"{round(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}"
                )
            return
        if limits.memory is not None:
            memory = self._directories["memory"]
            write_file(memory / "memory.limit_in_bytes", str(limits.memory))
            with contextlib.suppress(OSError):  # swap accounting may be off
                write_file(memory / "memory.memsw.limit_in_bytes", str(limits.memory))
        if limits.pids is not None:
            write_file(self._directories["pids"] / "pids.max", str(limits.pids))
        if limits.cpus is not None:
            cpu = self._directories["cpu"]
            write_file(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            write_file(cpu / "cpu.cfs_quota_us", str(max(1000, round(limits.cpus * CPU_PERIOD_US))))

    def wrap(self, argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """``/bin/sh`` joins the cgroup (its pid, before exec) and execs the command."""
        procs = [str(d / "cgroup.procs") for d in self._directories.values()]
        return ["/bin/sh", "-c", _JOIN, "async-consumer", *procs, "--", *argv], dict(env)

    @property
    def _tracker(self) -> Path:
        """The directory whose ``cgroup.procs`` lists every member (freezer's in v1)."""
        return self._directories["" if self._v2 else "freezer"]

    def started(self, pid: int) -> None:
        """Nothing to note: the cgroup knows its members."""

    def traces(self) -> tuple[str, ...]:
        """Its directories, for the watchdog."""
        return tuple(f"c{directory}" for directory in self._directories.values())

    def kill_now(self) -> None:
        """SIGKILL every member now (v2: ``cgroup.kill``)."""
        if self._v2:
            with contextlib.suppress(OSError):
                write_file(self._tracker / "cgroup.kill", "1")
            return
        signal_all(_members(self._tracker), signal.SIGKILL)

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
        reap_ours(killed)
        usage = self._usage()
        self._remove()
        return usage

    async def _kill(self) -> None:
        if self._v2:
            write_file(self._tracker / "cgroup.kill", "1")
            return
        # v1: frozen, no member can fork while the others are being killed
        state = self._tracker / "freezer.state"
        write_file(state, "FROZEN")
        try:
            with anyio.move_on_after(1.0):  # a member in D state may keep it FREEZING
                await until(lambda: read_file(state).strip() == "FROZEN")
            signal_all(_members(self._tracker), signal.SIGKILL)
        finally:
            write_file(state, "THAWED")

    def _usage(self) -> BoxUsage:
        if self._v2:
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


def _warn(message: str) -> None:
    logging.getLogger("async_consumer").warning("%s", message)


async def sweep(parents: Mapping[str, Path]) -> None:
    """
    Remove the trial cgroups of consumers of this host that died without removing them (a
    SIGKILL to the consumer and its watchdog), killing what is left in them first. A cgroup is
    another consumer's while a process with the pid in its name exists: left alone.
    """
    for parent in parents.values():
        with contextlib.suppress(OSError), os.scandir(parent) as entries:
            for entry in entries:
                if _is_dead_consumers(entry.name):
                    await _empty_and_remove(Path(entry.path))


def _is_dead_consumers(name: str) -> bool:
    """Whether ``name`` is a trial cgroup's (``async-consumer-<pid>-<n>``) of a gone process."""
    parts = name.split("-")
    if not name.startswith("async-consumer-") or len(parts) != 4 or not parts[2].isdigit():
        return False
    return not os.path.exists(f"/proc/{parts[2]}")


async def _empty_and_remove(directory: Path) -> None:
    with contextlib.suppress(OSError):
        if (directory / "cgroup.kill").exists():
            write_file(directory / "cgroup.kill", "1")
        elif _members(directory) and (directory / "freezer.state").exists():
            write_file(directory / "freezer.state", "FROZEN")
            signal_all(_members(directory), signal.SIGKILL)
            write_file(directory / "freezer.state", "THAWED")
        else:
            signal_all(_members(directory), signal.SIGKILL)
    with anyio.move_on_after(KILL_BOUND):
        await until(lambda: not _members(directory))
    with contextlib.suppress(OSError):  # still busy (a member in D state): left
        os.rmdir(directory)
