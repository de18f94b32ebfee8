"""Any parameter text reaches the script's argv byte for byte: no shell, no splitting, no escaping."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_consumer import Consumer, Status, Trial

pytestmark = pytest.mark.slow

# the script keeps its raw command line, as the kernel holds it, and sys.argv as Python sees it
ECHO_ARGV = """
import json, os, sys
here = os.environ["ORION_WORKING_DIR"]
with open("/proc/self/cmdline", "rb") as cmdline, open(os.path.join(here, "cmdline"), "wb") as out:
    out.write(cmdline.read())
with open(os.path.join(here, "argv.json"), "w") as out:
    json.dump(sys.argv[1:], out)
with open(os.environ["ORION_RESULTS_PATH"], "w") as out:
    out.write("1")
"""

# argv cannot hold NUL, and a lone surrogate has no encoding to pass through exec
ARGUMENT_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
)

TRICKY = {
    "command-substitution": "$(touch pwned)",
    "whitespace": "a b\tc\nd",
    "quotes": "'\"\\",
    "placeholder": "{lr}",
    "braces": "{{",
    "option": "-c",
    "empty": "",
    "non-ascii": "é漢字🙂",
    "control": "\x7f\x01",
}

_ids = itertools.count()


async def _echo(base: Path, value: str) -> tuple[list[bytes], list[str]]:
    consumer = Consumer(
        [sys.executable, "-c", ECHO_ARGV, "{value}", "--x={value}"],
        base_dir=base,
        grace=1.0,
        code_change="ignore",
    )
    outcome = await consumer.run(Trial(id=f"argv-{next(_ids)}", params={"value": value}))
    assert outcome.status is Status.COMPLETED, outcome.message
    here = Path(outcome.working_dir)
    raw = (here / "cmdline").read_bytes()
    return raw.split(b"\x00")[:-1], json.loads((here / "argv.json").read_text())


@settings(max_examples=40, deadline=None)
@given(value=ARGUMENT_TEXT)
def test_parameter_text_reaches_argv_byte_for_byte(
    tmp_path_factory: pytest.TempPathFactory, value: str
) -> None:
    """Any text without NUL given as a parameter is exactly one argument, byte for byte."""
    base = tmp_path_factory.getbasetemp() / "argv"
    raw, argv = anyio.run(_echo, base, value)
    assert raw[3:] == [value.encode("utf-8"), b"--x=" + value.encode("utf-8")]
    assert argv == [value, f"--x={value}"]


@pytest.mark.parametrize("value", list(TRICKY.values()), ids=list(TRICKY))
def test_tricky_values_pass_unchanged(tmp_path: Path, value: str) -> None:
    """Shell syntax, placeholders, options and empty text pass as they are, and create nothing."""
    raw, argv = anyio.run(_echo, tmp_path / "trials", value)
    assert argv == [value, f"--x={value}"]
    assert raw[3] == value.encode("utf-8")
    assert not Path("pwned").exists()
    assert not (tmp_path / "pwned").exists()
