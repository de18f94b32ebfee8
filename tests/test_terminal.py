"""What the screen shows: a run in a real terminal (tmux), read back with ``capture-pane``."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from async_consumer._cli.progress import LiveBar, eta_text

from .conftest import screen, type_command, wait_until, wait_until_sync

# x = 3, 6: broken; x = 4: killed by SIGKILL on its first attempt (retried, a log record)
SCRIPT = """
import json, os, signal, sys, time
x = int(sys.argv[1])
time.sleep(0.4)
if x == 4 and os.environ["ASYNC_CONSUMER_ATTEMPT"] == "1":
    os.kill(os.getpid(), signal.SIGKILL)
if x % 3 == 0:
    sys.exit(4)
json.dump(float(x), open(os.environ["ORION_RESULTS_PATH"], "w"))
"""


@pytest.mark.slow
def test_the_screen_stays_clean(tmux: str, tmp_path: Path) -> None:
    """No torn or stale progress bars; one line per failure; log records on lines of their own."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    exe = Path(sys.executable).with_name("async-consumer")
    command = (
        f"cd {tmp_path} && {exe} run --grid x=1,2,3,4,5,6 -j 2 --retries 1 -- "
        f"{sys.executable} {script} {{x}}; echo EXIT=$?"
    )
    type_command(tmux, command)
    wait_until_sync(
        lambda: any(line.startswith("EXIT=") for line in screen(tmux)), "the run's exit", every=0.2
    )
    lines = screen(tmux)
    shown = "\n".join(lines)
    assert "EXIT=1" in lines, shown
    assert not any("━" in line for line in lines), shown  # the bar is gone, no stale copies
    failures = [line for line in lines if line.startswith("!! ")]
    assert len(failures) == 3, shown  # x = 3 and 6 broken; x = 4's first attempt killed
    assert not any(": broken (" in line for line in lines), shown  # not shown twice
    retries = [line for line in lines if "retrying in" in line]
    assert len(retries) == 1 and retries[0].startswith("warning "), shown
    assert any(line.startswith("ok ") and " #2 completed" in line for line in lines), shown
    assert "2 trials broken: once the script is fixed" in shown


def test_eta_is_unknown_until_a_trial_ends() -> None:
    """The average pace of the whole run; ``?`` before anything finished."""
    assert eta_text(0, 10, 30.0) == "?"
    assert eta_text(2, 10, 10.0) == "0:00:40"
    assert eta_text(9, 10, 3600.0) == "0:06:40"
    assert eta_text(10, 10, 5.0) == "0:00:00"


def _bar(out: io.StringIO) -> Progress:
    """A bar like the command's, drawn on ``out`` as on a terminal."""
    console = Console(file=out, force_terminal=True, force_interactive=True, width=80)
    return Progress(console=console, transient=True, auto_refresh=False)


def test_outcome_lines_wait_for_the_redraw_and_keep_their_order_with_log_records() -> None:
    """Lines are printed together at the next redraw; a log record prints those before it first."""
    out = io.StringIO()
    with _bar(out) as progress:
        bar = LiveBar(progress, total=3)
        bar.line("ok first")
        bar.advance(failed=0)
        assert "ok first" not in out.getvalue()  # not laid out once per outcome
        bar.line("!! second")
        bar.log("warning third")
        bar.line("ok fourth")
        bar.flush()
    text = out.getvalue()
    assert text.index("ok first") < text.index("!! second") < text.index("warning third")
    assert text.index("warning third") < text.index("ok fourth")


@pytest.mark.asyncio
async def test_the_bar_is_redrawn_while_trials_run_and_their_error_is_raised_as_itself() -> None:
    """The lines waiting are printed by the redraw loop; an error of the work is not grouped."""
    out = io.StringIO()

    async def work() -> None:
        bar.line("ok shown by the redraw")
        await wait_until(lambda: "ok shown by the redraw" in out.getvalue(), "the redraw")
        raise KeyError("the worker's own error")

    with _bar(out) as progress:
        bar = LiveBar(progress, total=1)
        with pytest.raises(KeyError, match="the worker's own error"):
            await bar.redraw_while(work)
