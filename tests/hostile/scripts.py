"""
A corpus of hostile scripts, each a Python program with the outcome the README promises for it.

Every script runs as ``python -c CODE`` in its trial's working directory, the code given as the
trial's ``code`` parameter (so the corpus also checks that any program text reaches argv as one
argument). Scripts that leave processes behind write their pids to ``pids.txt`` in the working
directory, one a line, so that a test can check what became of them. Each script first turns
core dumps off, so that a crash never writes a core file.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from async_consumer import Reason, Status

__all__ = ["CASES", "MIB", "PIDS_FILE", "TIMEOUT", "Case"]

MIB = 1024 * 1024
PIDS_FILE = "pids.txt"
TIMEOUT = 1.0
"""The timeout of the cases that must time out; the others get a generous one."""

_PRELUDE = """\
import errno, json, os, resource, shutil, signal, sys, time
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
RESULTS = os.environ["ORION_RESULTS_PATH"]
HERE = os.environ["ORION_WORKING_DIR"]

def write_results(data: bytes) -> None:
    with open(RESULTS, "wb") as file:
        file.write(data)

def record_pids(pids: list[int]) -> None:
    # written then renamed, so that a reader never sees half the list
    with open(os.path.join(HERE, "pids.tmp"), "w") as file:
        file.write("".join(f"{pid}\\n" for pid in pids))
    os.replace(os.path.join(HERE, "pids.tmp"), os.path.join(HERE, "pids.txt"))

def fork_sleepers(count: int, seconds: float) -> list[int]:
    # children that sleep, then leave without running the parent's cleanup
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            time.sleep(seconds)
            os._exit(0)
        pids.append(pid)
    return pids

"""


@dataclass(frozen=True, slots=True)
class Case:
    """One hostile script and the outcome it must get."""

    name: str
    body: str
    status: Status
    reason: Reason | None
    signal: str | None = None
    returncode: int | None = None
    message: str = ""
    """A fragment the outcome's message must contain."""
    timeout: float | None = None
    """The trial's own timeout; ``None`` keeps the consumer's generous one."""
    copies: int = 5
    escapes: bool = False
    """Its recorded processes left the trial's process group: only its cgroup or mark holds them."""

    @property
    def code(self) -> str:
        """The whole program: the prelude, then the case's body."""
        return _PRELUDE + textwrap.dedent(self.body)


_BROKEN = Status.BROKEN


def _completed(name: str, body: str, *, copies: int = 5, escapes: bool = False) -> Case:
    """A script that writes its results and exits 0: completed."""
    return Case(name, body, Status.COMPLETED, None, returncode=0, copies=copies, escapes=escapes)


def _invalid_results(name: str, body: str, *, message: str, copies: int = 5) -> Case:
    """A script that exits 0 with results the consumer refuses, saying ``message``."""
    return Case(
        name, body, _BROKEN, Reason.INVALID_RESULTS, returncode=0, message=message, copies=copies
    )


CASES: tuple[Case, ...] = (
    _completed(
        "valid",
        'write_results(b\'[{"name": "loss", "type": "objective", "value": 0.5}]\')',
    ),
    Case(
        "segfault",
        "import ctypes; ctypes.string_at(0)",
        _BROKEN,
        Reason.SIGNAL,
        signal="SIGSEGV",
        returncode=-11,
        message="killed by SIGSEGV",
    ),
    Case(
        "abort",
        "os.abort()",
        _BROKEN,
        Reason.SIGNAL,
        signal="SIGABRT",
        returncode=-6,
        message="killed by SIGABRT",
    ),
    Case(
        "exit-255",
        'write_results(b"1.0"); sys.exit(255)',
        _BROKEN,
        Reason.EXIT_CODE,
        returncode=255,
        message="exited with code 255",
    ),
    Case(
        "interrupt-code",
        'write_results(b"1.0"); sys.exit(int(os.environ["ORION_INTERRUPT_CODE"]))',
        Status.INTERRUPTED,
        Reason.EXIT_CODE,
        returncode=130,
    ),
    Case(
        "sigkill-self",
        "os.kill(os.getpid(), signal.SIGKILL)",
        _BROKEN,
        Reason.SIGNAL,
        signal="SIGKILL",
        returncode=-9,
    ),
    Case(
        "endless-loop",
        """
        while True:
            pass
        """,
        _BROKEN,
        Reason.TIMEOUT,
        signal="SIGTERM",
        message="timed out",
        timeout=TIMEOUT,
    ),
    Case(
        "ignores-sigterm",
        """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1)
        """,
        _BROKEN,
        Reason.TIMEOUT,
        signal="SIGKILL",
        message="timed out",
        timeout=TIMEOUT,
    ),
    Case(
        # the script itself dies of SIGTERM; its ten children ignore it and need the SIGKILL
        "grandchildren-ignore-sigterm",
        """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by each child at fork
        pids = fork_sleepers(10, 60)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        record_pids(pids)
        time.sleep(60)
        """,
        _BROKEN,
        Reason.TIMEOUT,
        signal="SIGTERM",
        timeout=TIMEOUT,
    ),
    _completed(
        # exits at once, completed, leaving ten children that ignore SIGTERM in its group
        "orphans-ignore-sigterm",
        """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pids = fork_sleepers(10, 60)
        record_pids(pids)
        write_results(b"1.0")
        """,
    ),
    _completed(
        # a daemon in a session of its own: outside the trial's process group
        "setsid-daemon",
        """
        first = os.fork()
        if first == 0:
            os.setsid()
            if os.fork() == 0:
                record_pids([os.getpid()])
                time.sleep(120)  # bounded, should a test fail before it kills the daemon
                os._exit(0)
            os._exit(0)
        os.waitpid(first, 0)
        while not os.path.exists(os.path.join(HERE, "pids.txt")):
            time.sleep(0.01)
        write_results(b"1.0")
        """,
        escapes=True,
    ),
    _completed(
        # a child moved to a process group of its own, in the same session
        "setpgid-child",
        """
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)
            time.sleep(120)  # bounded, should a test fail before it kills the child
            os._exit(0)
        os.setpgid(pid, pid)  # in the parent too, so that it is done before the parent exits
        record_pids([pid])
        write_results(b"1.0")
        """,
        escapes=True,
    ),
    _completed(
        "closes-stdout",
        """
        print("before closing", flush=True)
        os.close(0)
        os.close(1)
        os.close(2)
        write_results(b"1.0")
        """,
    ),
    _completed(
        "stdout-100mb",
        """
        chunk = b"x" * (1024 * 1024 - 1) + b"\\n"
        for _ in range(100):
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        write_results(b"1.0")
        """,
        copies=3,
    ),
    _invalid_results(
        "results-symlink-to-passwd",
        'os.remove(RESULTS); os.symlink("/etc/passwd", RESULTS)',
        message="is a symbolic link, not a regular file",
    ),
    _invalid_results(
        "results-fifo",
        "os.remove(RESULTS); os.mkfifo(RESULTS)",
        message="is a named pipe (FIFO), not a regular file",
    ),
    _invalid_results(
        "results-directory",
        "os.remove(RESULTS); os.mkdir(RESULTS)",
        message="is a directory, not a regular file",
    ),
    _invalid_results(
        "results-50mb",
        'write_results(b"1.0" + b" " * (50 * 1024 * 1024))',
        message="larger than the limit of 1048576 bytes",
        copies=3,
    ),
    _invalid_results(
        "results-nested-100000",
        'write_results(b"[" * 100_000 + b"]" * 100_000)',
        message="recursion limit exceeded",
    ),
    _invalid_results(
        "results-nan",
        "write_results(b'{\"objective\": NaN}')",
        message="objective",
    ),
    _invalid_results(
        "results-two-objectives",
        'write_results(b\'[{"name": "a", "type": "objective", "value": 1},'
        ' {"name": "b", "type": "objective", "value": 2}]\')',
        message="[1]: another objective, after the one at [0]",
    ),
    Case(
        "results-half-written-then-sigkill",
        """
        with open(RESULTS, "wb", buffering=0) as file:
            file.write(b'[{"name": "loss", "type": "obj')
            os.kill(os.getpid(), signal.SIGKILL)
        """,
        _BROKEN,
        Reason.SIGNAL,
        signal="SIGKILL",
        returncode=-9,
    ),
    _invalid_results(
        "results-half-written-then-exit-0",
        """write_results(b'[{"name": "loss", "type": "obj')""",
        message="EOF while parsing",
    ),
    _invalid_results(
        "results-not-utf8",
        'write_results(b"\\xff\\xfe1.0")',
        message="not UTF-8: byte 0xff at offset 0",
    ),
    Case(
        # the message names the file as a whole; its wording ("does not exist", or that the
        # working directory was removed) is not part of the contract
        "removes-working-dir",
        "shutil.rmtree(HERE)",
        _BROKEN,
        Reason.MISSING_RESULTS,
        returncode=0,
        message="results.json: ",
    ),
    _completed(
        # results first, then every descriptor the script may have; exits 0 holding them all
        "exhausts-fds",
        """
        write_results(b"1.0")
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        held = []
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE
            os.write(2, f"EMFILE after opening {len(held)} descriptors\\n".encode())
        """,
    ),
)
