"""Tests of reading and validating results files."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from async_consumer._errors import InvalidResults, MissingResults, ResultsError
from async_consumer._models import Result
from async_consumer._trial.readback import DEFAULT_MAX_RESULTS_BYTES, read_results
from async_consumer._trial.results import parse_results

SHAPE = "results must be a JSON list"
NO_OBJECTIVE = "results.json: No objective found"


def entry(name: str, kind: str, value: object) -> dict[str, object]:
    """Build one entry of Orion's list format."""
    return {"name": name, "type": kind, "value": value}


def dumps(document: object) -> bytes:
    """Write a document as ``json.dump`` does, NaN and infinities included."""
    return json.dumps(document).encode()


def problems_of(raw: bytes) -> list[str]:
    """Parse bytes that must be refused and return the problems listed."""
    with pytest.raises(InvalidResults) as caught:
        parse_results(raw)
    return caught.value.problems


def write(path: Path, raw: bytes) -> Path:
    """Write bytes to a file and return its path."""
    path.write_bytes(raw)
    return path


# accepted shapes


def test_reads_the_file_orion_client_writes(tmp_path: Path) -> None:
    """The exact list Orion's ``report_objective`` writes with ``json.dump`` is accepted."""
    path = tmp_path / "results.json"
    with path.open("w") as f:
        json.dump([{"name": "objective", "type": "objective", "value": 0.5}], f)
    assert read_results(path) == (Result(name="objective", type="objective", value=0.5),)


def test_accepts_orion_documented_example() -> None:
    """Orion's documented example, gradient list included, comes back entry for entry."""
    document = [
        entry("example_objective", "objective", 23.4),
        entry("example_gradient", "gradient", [0.0012]),
        entry("another", "constraint", 1.0),
        entry("epoch_time", "statistic", 12.5),
        entry("guess", "lie", 3),
    ]
    assert parse_results(dumps(document)) == (
        Result(name="example_objective", type="objective", value=23.4),
        Result(name="example_gradient", type="gradient", value=[0.0012]),
        Result(name="another", type="constraint", value=1.0),
        Result(name="epoch_time", type="statistic", value=12.5),
        Result(name="guess", type="lie", value=3.0),
    )


def test_nan_written_by_json_dump_is_refused(tmp_path: Path) -> None:
    """The ``NaN`` that ``json.dump(float("nan"))`` writes is refused, though Orion accepts it."""
    path = tmp_path / "results.json"
    with path.open("w") as f:
        json.dump(float("nan"), f)
    with pytest.raises(InvalidResults) as caught:
        read_results(path)
    assert caught.value.problems == ["results.json: must be a finite number, not NaN"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"0.25", 0.25, id="bare-float"),
        pytest.param(b"3", 3.0, id="bare-int"),
        pytest.param(b"-1e-3", -0.001, id="bare-exponent"),
        pytest.param(b"\n  0.25 \n", 0.25, id="surrounded-by-whitespace"),
    ],
)
def test_bare_number_is_the_objective(raw: bytes, expected: float) -> None:
    """A bare JSON number is the objective, named ``objective``."""
    assert parse_results(raw) == (Result(name="objective", type="objective", value=expected),)


def test_mapping_is_objective_plus_statistics() -> None:
    """A mapping gives the objective first, then one statistic per other key, in order."""
    raw = b'{"accuracy": 0.9, "objective": 0.1, "losses": [1, 2.5], "val acc": 0}'
    assert parse_results(raw) == (
        Result(name="objective", type="objective", value=0.1),
        Result(name="accuracy", type="statistic", value=0.9),
        Result(name="losses", type="statistic", value=[1.0, 2.5]),
        Result(name="val acc", type="statistic", value=0.0),
    )


@pytest.mark.parametrize(
    "value",
    [
        pytest.param([], id="empty-list"),
        pytest.param([1, -2.5, 1e300], id="list"),
        pytest.param(0.5, id="number"),
    ],
)
def test_gradient_may_be_a_number_or_a_list(value: object) -> None:
    """A gradient's value may be a list of numbers, or a single number."""
    raw = dumps([entry("loss", "objective", 1), entry("grad", "gradient", value)])
    assert parse_results(raw)[1].value == value


def test_objective_need_not_come_first() -> None:
    """The objective may sit anywhere in the list, and JSON integers become floats."""
    results = parse_results(dumps([entry("t", "statistic", 2), entry("loss", "objective", 7)]))
    assert results[1] == Result(name="loss", type="objective", value=7.0)
    assert all(isinstance(r.value, float) for r in results)


# refused content


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b" \n\t\r\n", id="whitespace-only"),
    ],
)
def test_empty_content_is_missing_results(raw: bytes) -> None:
    """Empty or whitespace-only content means the script wrote no results."""
    with pytest.raises(MissingResults) as caught:
        parse_results(raw, path="r.json")
    assert caught.value.problems == ["results.json: file is empty: the script wrote no results"]
    assert caught.value.path == "r.json"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            b'[{"name": "objective", "ty', "results.json: Invalid JSON: EOF", id="half-written"
        ),
        pytest.param(
            b"oops", "results.json: Invalid JSON: expected value at line 1 column 1", id="not-json"
        ),
        pytest.param(b"[1]\n]", "trailing characters at line 2 column 1", id="trailing"),
        pytest.param(b"\xef\xbb\xbf0.5", "results.json: Invalid JSON", id="utf8-bom"),
        pytest.param(b'["\xff"]', "not UTF-8: byte 0xff at offset 2", id="not-utf8-in-string"),
        pytest.param(b"0.5\xc3", "not UTF-8: byte 0xc3 at offset 3", id="not-utf8-truncated"),
        pytest.param(b"\xed\xa0\x80", "not UTF-8: byte 0xed at offset 0", id="utf8-surrogate"),
        pytest.param(
            dumps(math.nan), "results.json: must be a finite number, not NaN", id="bare-nan"
        ),
        pytest.param(
            b"Infinity", "results.json: must be a finite number, not an inf", id="bare-inf"
        ),
        pytest.param(
            b"-Infinity", "results.json: must be a finite number, not an inf", id="bare-ninf"
        ),
        pytest.param(b"1e400", "results.json: must be a finite number, not an inf", id="overflow"),
        pytest.param(
            b"9" * 400, "results.json: must be a finite number, not an inf", id="huge-int"
        ),
        pytest.param(b"null", SHAPE, id="null"),
        pytest.param(b'"1.0"', SHAPE, id="string"),
        pytest.param(b"true", SHAPE, id="bool"),
        pytest.param(dumps(entry("loss", "objective", 1)), SHAPE, id="entry-not-in-list"),
        pytest.param(b'{"accuracy": 0.9}', NO_OBJECTIVE, id="mapping-without-objective"),
        pytest.param(b"{}", NO_OBJECTIVE, id="empty-mapping"),
        pytest.param(b"[]", NO_OBJECTIVE, id="empty-list"),
        pytest.param(dumps([entry("t", "statistic", 1)]), NO_OBJECTIVE, id="no-objective"),
        pytest.param(b"[1]", "[0]: Input should be an object", id="entry-not-object"),
        pytest.param(
            dumps([entry("loss", "objective", math.nan)]),
            "[0].value: must be a finite number, not NaN",
            id="nan-objective",
        ),
        pytest.param(
            dumps([entry("loss", "objective", 1), entry("g", "gradient", [0.1, -math.inf])]),
            "[1].value[1]: must be a finite number, not an inf",
            id="inf-in-gradient",
        ),
        pytest.param(
            dumps([entry("loss", "objective", "1.0")]),
            "[0].value: must be a finite number, not a string",
            id="string-objective",
        ),
        pytest.param(
            dumps([entry("loss", "objective", True)]),
            "[0].value: must be a finite number, not a boolean",
            id="bool-objective",
        ),
        pytest.param(
            dumps([entry("loss", "objective", None)]),
            "[0].value: must be a finite number, not null",
            id="null-objective",
        ),
        pytest.param(
            dumps([entry("loss", "objective", [0.5])]),
            "[0].value: must be a single number for an objective, not a list",
            id="list-objective",
        ),
        pytest.param(
            dumps([entry("loss", "objective", 1), entry("g", "gradient", [[1.0]])]),
            "[1].value[0]: must be a finite number, not a list",
            id="nested-gradient",
        ),
        pytest.param(
            dumps([entry("loss", "bad", 1)]), "[0].type: Input should be 'objective'", id="bad-type"
        ),
        pytest.param(
            dumps([{**entry("loss", "objective", 1), "unit": "s"}]),
            "[0].unit: Extra inputs are not permitted",
            id="extra-key",
        ),
        pytest.param(
            dumps([{"name": "loss", "type": "objective"}]),
            "[0].value: Field required",
            id="no-value",
        ),
        pytest.param(
            dumps([entry(1, "objective", 1)]),  # type: ignore[arg-type]
            "[0].name: Input should be a valid string",
            id="number-name",
        ),
        pytest.param(
            b'{"objective": [0.1]}', "objective: must be a finite number, not a list", id="map-list"
        ),
        pytest.param(
            b'{"objective": 1, "val acc": "x"}',
            '["val acc"]: must be a finite number, not a string',
            id="map-bad-statistic",
        ),
        pytest.param(
            b'{"objective": NaN}', "objective: must be a finite number, not NaN", id="map-nan"
        ),
    ],
)
def test_refused_content_names_the_problem(raw: bytes, expected: str) -> None:
    """Content of a wrong shape or value is InvalidResults, with a line naming where."""
    problems = problems_of(raw)
    assert any(p.startswith(expected) or expected in p for p in problems), problems


def test_two_objectives_name_both_locations() -> None:
    """A second objective is refused with a problem naming both its place and the first's."""
    raw = dumps(
        [entry("a", "objective", 1), entry("t", "statistic", 1), entry("b", "objective", 2)]
    )
    assert problems_of(raw) == ["[2]: another objective, after the one at [0]; only one is allowed"]


def test_one_message_lists_every_problem() -> None:
    """Every problem of a file is listed, one line each, in one error message."""
    raw = dumps(
        [
            {"name": "loss", "type": "objectiv", "value": "1.0", "unit": "s"},
            entry("g", "gradient", [1, None]),
        ]
    )
    problems = problems_of(raw)
    assert problems == [
        "[0].type: Input should be 'objective', 'constraint', 'gradient', 'statistic' or 'lie'",
        "[0].value: must be a finite number, not a string",
        "[0].unit: Extra inputs are not permitted",
        "[1].value[1]: must be a finite number, not null",
        'results.json: No objective found: one entry must have "type": "objective"',
    ]
    with pytest.raises(InvalidResults, match=r"\[0\]\.type: .*; \[1\]\.value\[1\]: "):
        parse_results(raw)


def test_bad_entries_and_two_objectives_are_all_listed() -> None:
    """An extra objective is reported beside the entries' own problems."""
    raw = dumps([entry("a", "objective", 1), entry("b", "objective", "x")])
    assert problems_of(raw) == [
        "[1].value: must be a finite number, not a string",
        "[1]: another objective, after the one at [0]; only one is allowed",
    ]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="lists"),
        pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, id="objects"),
        pytest.param(b"[" * 100_000, id="unclosed"),
    ],
)
def test_deep_nesting_is_invalid_not_recursion_error(raw: bytes) -> None:
    """JSON nested 100,000 deep is InvalidResults, not a RecursionError."""
    [problem] = problems_of(raw)
    assert problem.startswith(
        "results.json: Invalid JSON: recursion limit exceeded at line 1 column"
    )


# the Result model


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("1.0", id="string"),
        pytest.param(True, id="bool"),
        pytest.param(math.nan, id="nan"),
        pytest.param([1.0, math.inf], id="inf-in-list"),
        pytest.param(10**400, id="huge-int"),
    ],
)
def test_result_refuses_non_finite_or_non_numbers(value: object) -> None:
    """Result refuses strings, bools, NaN, infinities and overflowing ints, built in Python too."""
    with pytest.raises(ValidationError, match="must be a finite number"):
        Result(name="x", type="statistic", value=value)  # type: ignore[arg-type]


def test_result_takes_ints_as_floats() -> None:
    """Result stores an int value as a float, alone or in a list."""
    assert Result(name="x", type="objective", value=2).value == 2.0
    assert Result(name="x", type="gradient", value=[1, 2]).value == [1.0, 2.0]


# reading files


def test_missing_file_is_missing_results(tmp_path: Path) -> None:
    """A results file that does not exist is MissingResults."""
    with pytest.raises(MissingResults, match="does not exist"):
        read_results(tmp_path / "nope.json")


def test_pre_created_empty_file_is_missing_results(tmp_path: Path) -> None:
    """The empty file made before launch, left untouched, is MissingResults."""
    with pytest.raises(MissingResults, match="file is empty"):
        read_results(write(tmp_path / "r.json", b""))


def test_error_carries_the_path(tmp_path: Path) -> None:
    """The error keeps the path it was given, as a string."""
    path = write(tmp_path / "r.json", b"null")
    with pytest.raises(InvalidResults) as caught:
        read_results(path)
    assert caught.value.path == str(path)


@pytest.mark.parametrize(
    "target", [pytest.param("/etc/passwd", id="to-passwd"), pytest.param("nowhere", id="dangling")]
)
def test_symlink_is_refused(tmp_path: Path, target: str) -> None:
    """A symbolic link is refused, even one to a readable file, and is never followed."""
    link = tmp_path / "r.json"
    link.symlink_to(target)
    with pytest.raises(InvalidResults) as caught:
        read_results(link)
    assert caught.value.problems == ["results.json: is a symbolic link, not a regular file"]


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A named pipe with no writer is refused at once, not waited on."""
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            read_results(fifo)
        except ResultsError as exc:
            errors.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), "read_results blocked on a FIFO"
    assert [str(e) for e in errors] == ["results.json: is a named pipe (FIFO), not a regular file"]


def test_directory_is_refused(tmp_path: Path) -> None:
    """A directory in place of the results file is refused, naming the kind."""
    with pytest.raises(InvalidResults, match="is a directory, not a regular file"):
        read_results(tmp_path)


def test_device_is_refused() -> None:
    """A character device such as /dev/zero is refused without being read."""
    with pytest.raises(InvalidResults, match="is a character device, not a regular file"):
        read_results("/dev/zero")


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    """A bound Unix socket in the temporary directory."""
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        yield path


def test_socket_is_refused(unix_socket: Path) -> None:
    """A Unix socket in place of the results file is refused, naming the kind."""
    with pytest.raises(InvalidResults, match="is a socket, not a regular file"):
        read_results(unix_socket)


def test_file_over_default_cap_is_refused_unread(tmp_path: Path) -> None:
    """A 50 MB file is refused by its size under the default 1 MiB cap."""
    path = tmp_path / "r.json"
    with path.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: only the size matters, it is never read
    with pytest.raises(InvalidResults) as caught:
        read_results(path)
    limit = DEFAULT_MAX_RESULTS_BYTES
    assert caught.value.problems == [
        f"results.json: is {50 * 1024 * 1024} bytes, larger than the limit of {limit} bytes"
    ]


def test_custom_cap_is_inclusive(tmp_path: Path) -> None:
    """A file exactly at a custom cap is read; one byte more is refused."""
    path = write(tmp_path / "r.json", b"0.125")
    assert read_results(path, max_bytes=5)[0].value == 0.125
    with pytest.raises(InvalidResults, match="is 5 bytes, larger than the limit of 4 bytes"):
        read_results(path, max_bytes=4)


def test_negative_cap_is_a_value_error(tmp_path: Path) -> None:
    """A negative cap is a caller's mistake, a plain ValueError naming the argument."""
    with pytest.raises(ValueError, match="max_bytes"):
        read_results(write(tmp_path / "r.json", b"1"), max_bytes=-1)


def test_file_in_base_dir_is_read(tmp_path: Path) -> None:
    """A file inside base_dir, even through a symlinked base_dir, is read."""
    (tmp_path / "trial").mkdir()
    path = write(tmp_path / "trial" / "r.json", b"1")
    (tmp_path / "link").symlink_to(tmp_path)
    assert read_results(path, base_dir=tmp_path)[0].value == 1.0
    assert read_results(str(path), base_dir=tmp_path / "link")[0].value == 1.0


@pytest.mark.parametrize(
    "via_symlink", [pytest.param(False, id="plain"), pytest.param(True, id="symlinked-dir")]
)
def test_file_outside_base_dir_is_refused(tmp_path: Path, via_symlink: bool) -> None:
    """A file whose real directory lies outside base_dir is refused."""
    base, outside = tmp_path / "base", tmp_path / "base-sibling"
    base.mkdir()
    outside.mkdir()
    write(outside / "r.json", b"1")
    if via_symlink:
        (base / "escape").symlink_to(outside)
    path = base / "escape" / "r.json" if via_symlink else outside / "r.json"
    with pytest.raises(InvalidResults, match="outside the base directory"):
        read_results(path, base_dir=base)


def test_parent_that_is_a_file_is_invalid(tmp_path: Path) -> None:
    """A path through a regular file gives the system's reason."""
    parent = write(tmp_path / "f", b"")
    with pytest.raises(InvalidResults, match="cannot be opened: Not a directory"):
        read_results(parent / "r.json")


# read as an unprivileged user: root reads any file, and CI runs as root
READ_AS_NOBODY = """
import os, sys
from async_consumer._errors import InvalidResults
from async_consumer._trial.readback import read_results
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
try:
    read_results(sys.argv[1])
except InvalidResults as error:
    print(error)
"""


def test_unreadable_file_is_invalid() -> None:
    """A file we may not read gives the system's reason."""
    # in a directory any user may enter (a test's own tmp_path is root's alone when root runs it)
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        os.chmod(directory, 0o755)
        path = write(Path(directory) / "r.json", b"1")
        path.chmod(0)
        done = subprocess.run(
            [sys.executable, "-c", READ_AS_NOBODY, str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
    assert "cannot be opened: Permission denied" in done.stdout, done.stdout + done.stderr


# properties

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.sampled_from(["objective", "gradient", "name", "type", "value"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["objective", "name", "type", "value", "x"]), children, max_size=4
        )
    ),
    max_leaves=12,
)


def outcome_of(call: Callable[[], tuple[Result, ...]]) -> tuple[Result, ...] | ResultsError:
    """Return what a call gives, or the MissingResults or InvalidResults it raises."""
    try:
        return call()
    except (MissingResults, InvalidResults) as exc:
        return exc


def assert_sound(outcome: tuple[Result, ...] | ResultsError) -> None:
    """Check an outcome: exactly one objective, or an error listing located problems."""
    if isinstance(outcome, ResultsError):
        assert outcome.problems
        assert all(": " in problem for problem in outcome.problems)
    else:
        assert [r.type for r in outcome].count("objective") == 1


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_results_error(raw: bytes) -> None:
    """Any bytes give results or MissingResults/InvalidResults, never another exception."""
    assert_sound(outcome_of(lambda: parse_results(raw)))


@pytest.mark.slow
@given(_json)
def test_any_json_parses_or_raises_results_error(document: object) -> None:
    """Any JSON document, NaN included, gives results or InvalidResults, never another exception."""
    assert_sound(outcome_of(lambda: parse_results(dumps(document))))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory kept across hypothesis examples."""
    return tmp_path_factory.mktemp("results")


@settings(max_examples=50)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=100))
def test_any_file_reads_or_raises_results_error(scratch: Path, raw: bytes, cap: int) -> None:
    """Any bytes in a file, under any cap, give results or MissingResults/InvalidResults."""
    path = write(scratch / "r.json", raw)
    assert_sound(outcome_of(lambda: read_results(path, max_bytes=cap, base_dir=scratch)))
