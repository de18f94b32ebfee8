"""The HTML report: its parts, parsed back with the standard library, and hostile text escaped."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import anyio
import pytest

from async_consumer import Attempt, Outcome, Reason, Result, Status, StoredTrial, Trial, TrialStatus
from async_consumer._report.build import render_report, write_report
from async_consumer._report.charts import COLOURS, Span, assign_lanes, duration_text
from async_consumer.stores import MemoryStore, Reservation, SQLiteStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>"
SETTLED = {
    Status.COMPLETED: TrialStatus.COMPLETED,
    Status.BROKEN: TrialStatus.BROKEN,
    Status.INTERRUPTED: TrialStatus.INTERRUPTED,
    Status.LOST: TrialStatus.INTERRUPTED,
}


@dataclass
class Element:
    """A parsed tag: its name, attributes, the section it is in, and the text inside it."""

    tag: str
    attrs: dict[str, str]
    section: str
    text: list[str] = field(default_factory=list)

    @property
    def content(self) -> str:
        return "".join(self.text)

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()


class Page(HTMLParser):
    """Every element of a page, in document order (void and self-closed tags included)."""

    VOID = frozenset({"meta", "br", "img", "link", "input", "hr"})

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(text)
        self.close()

    def _section(self) -> str:
        return next((e.attrs.get("id", "") for e in reversed(self._open) if e.tag == "section"), "")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self._section())
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}, self._section()))

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text.append(data)

    def find(self, tag: str, cls: str | None = None, section: str | None = None) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag
            and (cls is None or cls in e.classes)
            and (section is None or e.section == section)
        ]


def attempt(
    trial_id: str,
    status: Status | None = Status.COMPLETED,
    start: float = 0.0,
    end: float | None = 1.0,
    *,
    number: int = 1,
    worker: str = "w1",
    objective: float | None = None,
    **fields: object,
) -> Attempt:
    """An attempt from ``start`` to ``end`` seconds after T0 (no outcome when status is None)."""
    outcome = None
    if status is not None:
        results = (
            () if objective is None else (Result(name="loss", type="objective", value=objective),)
        )
        outcome = Outcome.model_validate(
            {
                "trial_id": trial_id,
                "attempt": number,
                "status": status,
                "results": results,
                "started_at": T0 + timedelta(seconds=start),
                "ended_at": None if end is None else T0 + timedelta(seconds=end),
                **fields,
            }
        )
    reserved = T0 + timedelta(seconds=start)
    return Attempt(
        number=number, token=number, worker=worker, reserved_at=reserved, outcome=outcome
    )


def stored(
    trial_id: str, *attempts: Attempt, params: dict[str, object] | None = None
) -> StoredTrial:
    """A stored trial whose status follows its latest attempt (reserved while it runs)."""
    last = attempts[-1].outcome if attempts else None
    if not attempts:
        status = TrialStatus.NEW
    else:
        status = TrialStatus.RESERVED if last is None else SETTLED[last.status]
    trial = Trial.model_validate({"id": trial_id, "params": params or {"x": 1}})
    return StoredTrial(trial=trial, status=status, attempts=attempts)


def mixed_run() -> list[StoredTrial]:
    """Two completed trials, a broken one retried, an interrupted, a lost, a running, a new one."""
    return [
        stored("good", attempt("good", objective=0.5, end=3.0), params={"lr": 0.1, "layers": 4}),
        stored("fine", attempt("fine", objective=2.0, start=1.0, end=2.0, worker="w2")),
        stored(
            "bad",
            attempt("bad", Status.BROKEN, 0.5, 1.5, reason=Reason.SIGNAL, signal="SIGSEGV"),
            attempt(
                "bad",
                Status.BROKEN,
                2.0,
                4.0,
                number=2,
                reason=Reason.EXIT_CODE,
                returncode=1,
                message="exit status 1",
                stderr_tail="Traceback\nValueError: boom",
            ),
        ),
        stored("stopped", attempt("stopped", Status.INTERRUPTED, 3.0, 5.0, reason=Reason.STOPPED)),
        stored("gone", attempt("gone", Status.LOST, 4.0, None, reason=Reason.LEASE_LOST)),
        stored("busy", attempt("busy", None, 5.0, None, worker="w2")),
        stored("later"),
    ]


def header_counts(page: Page) -> dict[str, int]:
    """The number on each status card of the header, by the card's status."""
    counts, status = {}, ""
    for element in page.elements:
        if "card" in element.classes:
            status = element.attrs.get("data-status", "")
        elif "num" in element.classes and status:
            counts[status] = int(element.content)
    return counts


def test_header_counts_trials_by_status_and_shows_the_best() -> None:
    """The header counts trials by status and names the best objective with its parameters."""
    page = Page(render_report(mixed_run(), title="sweep 7"))
    assert header_counts(page) == {
        "completed": 2,
        "broken": 1,
        "interrupted": 2,
        "running": 1,
        "waiting": 1,
    }
    assert [e.content for e in page.find("h1")] == ["sweep 7"]
    (best,) = page.find("div", "best")
    assert "0.5" in best.content and "good" in best.content
    assert [chip.content for chip in page.find("span", "chip")] == ["lr = 0.1", "layers = 4"]


def test_timeline_has_one_bar_per_attempt_coloured_by_status() -> None:
    """Every attempt is one bar in the timeline, filled with its status's colour, with a tooltip."""
    page = Page(render_report(mixed_run()))
    bars = page.find("rect", "bar", section="timeline")
    fills = [(bar.attrs["data-status"], bar.attrs["fill"]) for bar in bars]
    assert sorted(status for status, _ in fills) == sorted(
        ["completed", "completed", "broken", "broken", "interrupted", "lost", "running"]
    )
    assert all(fill == COLOURS[status] for status, fill in fills)
    tips = [e.content for e in page.find("title", section="timeline")]
    assert "bad · attempt 2\nbroken (exit_code)\n2.00 s\nworker w1" in tips
    assert any(tip.startswith("busy · attempt 1\nrunning\n") and "so far" in tip for tip in tips)


def test_a_running_attempt_reaches_the_latest_time_known() -> None:
    """A bar without an end runs to the latest time in the store, and starts at its own start."""
    page = Page(render_report(mixed_run()))
    bars = {bar.attrs["data-status"]: bar for bar in page.find("rect", "bar")}
    running, first = bars["running"], page.find("rect", "bar")[0]
    right_edge = max(
        float(b.attrs["x"]) + float(b.attrs["width"]) for b in page.find("rect", "bar")
    )
    assert float(running.attrs["x"]) + float(running.attrs["width"]) == pytest.approx(right_edge)
    assert float(first.attrs["x"]) == pytest.approx(150)  # the first start is at 0 s


def span(start: float, end: float, worker: str = "w1", slot: str = "") -> Span:
    """A span on the timeline, for the lane tests."""
    return Span("t", 1, "completed", "", worker, slot, "", start, end)


def test_attempts_go_to_the_first_free_lane_of_their_worker() -> None:
    """Overlapping attempts of a worker take new lanes; a lane is reused once its attempt ended."""
    spans = [span(0, 2), span(1, 3), span(2, 4), span(0, 5, worker="w2"), span(3, 6)]
    names, lanes = assign_lanes(spans)
    assert lanes == [0, 1, 0, 2, 1]
    assert names == ["w1 · lane 1", "w1 · lane 2", "w2 · lane 1"]


def test_attempts_with_slots_get_a_lane_per_slot() -> None:
    """An attempt holding slots is drawn in the lane of its slot, named after it."""
    trials = [
        stored(f"t{i}", attempt(f"t{i}", start=i, end=i + 1.5, slots={"gpu": (str(i % 2),)}))
        for i in range(4)
    ]
    page = Page(render_report(trials))
    names = [e.content for e in page.find("text", "lane-name")]
    assert names == ["gpu 0", "gpu 1"]
    rows = [float(bar.attrs["y"]) for bar in page.find("rect", "bar")]
    assert rows[0] == rows[2] != rows[1] == rows[3]


def test_objective_points_follow_completion_order_with_the_running_best() -> None:
    """Each completed trial is a point in the order it ended; records are marked, a line follows."""
    trials = [
        stored("late", attempt("late", objective=1.0, start=0, end=9)),
        stored("early", attempt("early", objective=3.0, start=0, end=1)),
        stored("middle", attempt("middle", objective=2.0, start=0, end=5)),
        stored("broke", attempt("broke", Status.BROKEN, 0, 2, reason=Reason.EXIT_CODE)),
    ]
    page = Page(render_report(trials))
    points = page.find("circle", "point", section="objective")
    assert [p.content.split("\n")[0] for p in points] == ["early", "middle", "late"]
    assert all("record" in p.classes for p in points)
    heights = [float(p.attrs["cy"]) for p in points]
    assert heights == sorted(heights)  # lower objective, lower on the page
    assert page.find("path", "best", section="objective")


def test_objectives_spanning_decades_use_a_log_scale() -> None:
    """Positive objectives spanning more than two decades are drawn on a log scale."""
    trials = [stored(f"t{i}", attempt(f"t{i}", objective=10.0**i, end=i + 1)) for i in range(5)]
    assert "objective (log scale)" in render_report(trials)


def test_failures_table_lists_every_attempt_that_did_not_complete() -> None:
    """The failures table has a row per failed attempt with its reason, message and stderr tail."""
    page = Page(render_report(mixed_run()))
    rows = page.find("tr", section="failures")[1:]
    tds = [td.content for td in page.find("td", section="failures")]
    cells = [tds[i : i + 6] for i in range(0, len(tds), 6)]
    assert [row.attrs["data-status"] for row in rows] == [
        "broken",
        "broken",
        "interrupted",
        "lost",
    ]
    assert cells[0][:5] == ["bad", "1", "broken", "signal (SIGSEGV)", ""]
    assert cells[1][:5] == ["bad", "2", "broken", "exit_code (1)", "exit status 1"]
    assert [pre.content for pre in page.find("pre", section="failures")] == [
        "Traceback\nValueError: boom"
    ]


def test_stderr_is_shown_as_a_terminal_would() -> None:
    """Colour codes are dropped and a line rewritten with carriage returns shows its last state."""
    tail = "\x1b[31merror\x1b[0m\n 10%\r 50%\r100%\r\nbell\x07"
    trials = [stored("t", attempt("t", Status.BROKEN, reason=Reason.EXIT_CODE, stderr_tail=tail))]
    (pre,) = Page(render_report(trials)).find("pre")
    assert pre.content == "error\n100%\nbell\ufffd"


def test_hostile_text_is_escaped_everywhere() -> None:
    """Ids, parameters, messages, stderr and the title from scripts are shown as text, never run."""
    trial = stored(
        HOSTILE,
        attempt(
            HOSTILE,
            Status.BROKEN,
            reason=Reason.EXIT_CODE,
            message='"><img src=x onerror=1>',
            stderr_tail=f"</pre>{HOSTILE}",
        ),
        attempt(HOSTILE, objective=1.0, number=2, start=2.0, end=3.0),
        params={HOSTILE: HOSTILE},
    )
    text = render_report([trial], title=HOSTILE)
    assert "<script" not in text and "<img" not in text
    page = Page(text)
    assert not page.find("script") and not page.find("img")
    assert page.find("title")[0].content == HOSTILE
    assert [td.content for td in page.find("td", "trial-id")] == [HOSTILE]
    assert [pre.content for pre in page.find("pre")] == [f"</pre>{HOSTILE}"]
    assert any(HOSTILE in e.content for e in page.find("title", section="timeline"))
    assert any(HOSTILE in e.content for e in page.find("circle", "point"))
    assert '"><img src=x onerror=1>' in [td.content for td in page.find("td", "message")]


def test_the_page_needs_no_network() -> None:
    """The page refers to nothing outside itself: no URL, no script, no stylesheet link."""
    text = render_report(mixed_run())
    assert "http://" not in text and "https://" not in text
    page = Page(text)
    assert not [e for e in page.elements if "src" in e.attrs or "href" in e.attrs]
    assert not page.find("script") and not page.find("link")
    assert len(page.find("style")) == 1


def test_an_empty_run_renders_every_part() -> None:
    """With no trial at all the page still has its header, its sections and zero counts."""
    page = Page(render_report([]))
    assert [e.attrs["id"] for e in page.find("section")] == [
        "timeline",
        "objective",
        "parameters",
        "failures",
    ]
    assert header_counts(page) == dict.fromkeys(
        ["completed", "broken", "interrupted", "running", "waiting"], 0
    )
    assert not page.find("rect", "bar") and not page.find("circle", "point")
    assert "none yet" in page.find("div", "best")[0].content


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4213, "0.42 s"), (12.34, "12.3 s"), (245, "4 min 05 s"), (7380, "2 h 03 min")],
    ids=["under-10-s", "seconds", "minutes", "hours"],
)
def test_durations_read_naturally(seconds: float, text: str) -> None:
    """Durations are shown with the unit that suits them."""
    assert duration_text(seconds) == text


def many_trials(count: int) -> list[StoredTrial]:
    """``count`` trials of two attempts each (a lost one, then a completed one) on 8 workers."""
    trials = []
    for i in range(count):
        worker, start = f"w{i % 8}", (i // 8) * 3.0
        trials.append(
            stored(
                f"t{i}",
                attempt(
                    f"t{i}", Status.LOST, start, start + 1, worker=worker, reason=Reason.LEASE_LOST
                ),
                attempt(
                    f"t{i}",
                    number=2,
                    start=start + 1,
                    end=start + 3,
                    worker=worker,
                    objective=i % 97,
                ),
            )
        )
    return trials


def test_two_thousand_attempts_render_in_well_under_a_second() -> None:
    """A run of 2,000 attempts renders in less than a second of CPU, every attempt a bar."""
    trials = many_trials(1000)
    began = time.process_time()
    text = render_report(trials)
    cpu = time.process_time() - began
    # this process's CPU time, which other work on the machine does not inflate as it does the
    # wall clock: about 0.06 s here; the bound guards against a render that grows with the
    # square of the attempts (a lane search over every bar), not against a slow machine
    assert cpu < 1.0
    assert len(Page(text).find("rect", "bar")) == 2000
    objective = text[: text.index('id="parameters"')]
    assert len(re.findall(r'<circle class="point', objective)) == 1000
    assert len(Page(text).find("tr", section="failures")) == 1 + 500  # the rest is counted
    assert "…and 500 more" in text


@pytest.mark.asyncio
async def test_write_report_through_a_sqlite_store(tmp_path: Path) -> None:
    """A report of a real SQLite store is written atomically over any older one."""
    path = tmp_path / "report.html"
    path.write_text("old")
    async with SQLiteStore(tmp_path / "store.db") as store:
        await store.add([Trial(id=f"t{i}", params={"x": i}) for i in range(3)])
        for i, status in enumerate([Status.COMPLETED, Status.BROKEN]):
            lease = await store.reserve("w1", Reservation(host="h"))
            assert lease is not None
            results = [Result(name="o", type="objective", value=i)] if i == 0 else []
            outcome = Outcome(
                trial_id=lease.trial_id,
                status=status,
                results=tuple(results),
                started_at=T0,
                ended_at=T0 + timedelta(seconds=2),
                reason=None if i == 0 else Reason.EXIT_CODE,
                stderr_tail=HOSTILE,
            )
            await store.finish(lease, outcome)
        assert await write_report(store, path) == 3
    page = Page(path.read_text(encoding="utf-8"))
    assert len(page.find("rect", "bar")) == 2
    assert [pre.content for pre in page.find("pre")] == [HOSTILE]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "store.db"]


def test_write_report_runs_under_trio(tmp_path: Path) -> None:
    """Writing a report works on trio as well as asyncio."""

    async def main() -> int:
        async with MemoryStore() as store:
            await store.add([Trial(id="a"), Trial(id="b")])
            return await write_report(store, str(tmp_path / "r.html"))

    assert anyio.run(main, backend="trio") == 2
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
