"""
Scripts that try to outlive their trial, and scripts that try to take the machine's memory, CPUs
or processes: the containment corpus.

Each escape script starts a process that leaves the trial's session, records its pid in
``escaped.pid`` in the working directory once it is out, and only then writes its results and
exits (or, for the ``timeout`` ending, waits to be stopped). Every process a script starts has
``token`` in its command line, so that a test can find any that lives on and kill it whatever
happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

from ..conftest import is_alive

__all__ = [
    "BOMB",
    "ESCAPES",
    "HOG",
    "SPIN",
    "cleanup",
    "escape_code",
    "left_running",
    "sleeper",
]

ESCAPED = "escaped.pid"

_WAIT_AND_END = """
import os, sys, time
here = os.environ["ORION_WORKING_DIR"]
while not os.path.exists(os.path.join(here, "{escaped}")):
    time.sleep(0.005)
if sys.argv[1] == "timeout":
    time.sleep(3600)  # {token}: stopped by the trial's timeout
with open(os.environ["ORION_RESULTS_PATH"], "w") as results:
    results.write("1")
"""

ESCAPES = {
    # setsid(1): a new session, the output to /dev/null
    "setsid": """
        subprocess.Popen(["setsid", "sh", "-c", f"echo $$ > {PIDFILE}; exec sleep {SLEEP}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=False)
    """,
    # a double fork: the middle process leaves at once, the grandchild in a new session
    "double-fork": """
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                write_pid()
                os.execvp("sleep", ["sleep", SLEEP])
            os._exit(0)
    """,
    # a daemon: double fork, chdir /, umask 0, every descriptor closed, and a re-exec with an
    # empty environment (nothing of the trial's environment is left in the new image)
    "daemon": """
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.chdir("/")
                os.umask(0)
                write_pid()
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.closerange(3, 65536)
                os.execve(SLEEP_PATH, ["sleep", SLEEP], {})
            os._exit(0)
    """,
    # nohup in a new session
    "nohup": """
        subprocess.Popen(["nohup", "setsid", "sh", "-c", f"echo $$ > {PIDFILE}; exec sleep {SLEEP}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    """,
    # re-parented (its parent gone), then deaf to SIGTERM, SIGHUP and SIGINT
    "ignores-sigterm": """
        if os.fork() == 0:
            os.setsid()
            middle = os.getpid()
            if os.fork() == 0:
                for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                    signal.signal(sig, signal.SIG_IGN)
                while os.getppid() == middle:  # until re-parented
                    time.sleep(0.005)
                write_pid()
                while True:
                    time.sleep(1)
            os._exit(0)
    """,
}
"""How a script's process leaves its trial's session, by name."""

_ESCAPE_PRELUDE = """
import os, signal, subprocess, sys, time
SLEEP = "{sleep}"
SLEEP_PATH = "{sleep_path}"
PIDFILE = os.path.join(os.environ["ORION_WORKING_DIR"], "{escaped}")

def write_pid():
    with open(PIDFILE + ".tmp", "w") as file:
        file.write(str(os.getpid()))
    os.replace(PIDFILE + ".tmp", PIDFILE)
"""


def escape_code(kind: str, token: str) -> str:
    """A program that escapes as ``kind`` says, its processes marked with ``token``."""
    prelude = _ESCAPE_PRELUDE.format(
        sleep=sleeper(token), sleep_path=shutil.which("sleep"), escaped=ESCAPED
    )
    wait = _WAIT_AND_END.format(escaped=ESCAPED, token=token)
    # the escape first (in the script's own process), then wait for it and end
    return f"# {token}\n{prelude}\n{textwrap.dedent(ESCAPES[kind])}\n{wait}"


def sleeper(token: str) -> str:
    """A ``sleep`` argument of about four days that carries ``token`` (digits)."""
    return f"3{token}.25"


HOG = """
import os  # {token}
hog = []
while True:
    hog.append(bytearray(4 << 20))
    os.getpid()
"""
"""Allocates (and touches: a bytearray is zeroed) 4 MiB after 4 MiB until killed."""

BOMB = """
import os, time  # {token}
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.001)
"""
"""Forks for ever, every process it makes forking too."""

SPIN = """
import os, time  # {token}
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    pass
with open(os.environ["ORION_RESULTS_PATH"], "w") as results:
    results.write("1")
"""
"""Spins on one CPU for a while of wall time, then completes."""


def _with_token(token: str) -> Iterator[int]:
    me = os.getpid()
    needle = token.encode()
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as file:
                    cmdline = file.read()
            except OSError:
                continue
            if needle in cmdline:
                yield int(entry.name)


def left_running(token: str) -> list[int]:
    """The live processes (zombies excluded) whose command line holds ``token``."""
    return [pid for pid in _with_token(token) if is_alive(pid)]


def cleanup(token: str) -> None:
    """Kill every process with ``token`` and remove this process's trial cgroups, if any."""
    for pid in _with_token(token):
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for directory in trial_cgroups(os.getpid()):
        _remove_cgroup(directory)


def trial_cgroups(pid: int) -> list[Path]:
    """
    The trial cgroups of the consumer ``pid`` under /sys/fs/cgroup, in every hierarchy.

    ``os.walk`` passes over a directory removed while it is read (other suites' trials come and
    go beside this one), where ``Path.rglob`` would raise ``FileNotFoundError``.
    """
    prefix = f"async-consumer-{pid}-"
    return [
        Path(parent, name)
        for parent, names, _ in os.walk("/sys/fs/cgroup")
        for name in names
        if name.startswith(prefix)
    ]


def _remove_cgroup(directory: Path) -> None:
    """Kill what a left-over cgroup holds, and remove it (a test failed half-way)."""
    state = directory / "freezer.state"
    if state.exists():
        state.write_text("THAWED")
    kill = directory / "cgroup.kill"
    if kill.exists():
        kill.write_text("1")
    for pid in (directory / "cgroup.procs").read_text().split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        directory.rmdir()
    except OSError:
        pass
