"""The report's page: its layout and style, inline, so the file opens anywhere without a network."""

from __future__ import annotations

__all__ = ["page"]

_STYLE = """
:root { --ink: #1d232b; --muted: #6b7380; --line: #e6e8ec; --panel: #fff; --bg: #f4f5f7; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 2px; letter-spacing: -0.01em; }
h2 { font-size: 17px; margin: 0 0 4px; }
.sub, .muted, .hint { color: var(--muted); }
.hint { margin: 0 0 10px; font-size: 13px; }
code, pre, .trial-id { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
.cards { display: grid; grid-template-columns: repeat(5, minmax(100px, 1fr)) minmax(260px, 2.2fr);
  gap: 12px; margin: 20px 0 8px; }
.card { background: var(--panel); border-radius: 10px; padding: 12px 16px;
  border-top: 4px solid var(--c, #3a7bd5); box-shadow: 0 1px 2px rgb(0 0 0 / 6%); min-width: 0; }
.card .num { font-size: 30px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: 0.06em; }
.card.best { --c: #7b5cd6; }
.card.best .num { font-size: 24px; }
.card .trial-id { font-size: 13px; overflow-wrap: anywhere; }
.chips { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 6px; }
.chip { background: #efeafc; color: #4a3a8c; border-radius: 999px; padding: 1px 9px;
  font-size: 12px; overflow-wrap: anywhere; }
.chip.result { background: #e6f4ea; color: #1e5631; }
.later { display: block; font-size: 12px; color: #1e7d3a; margin-top: 2px; }
section { background: var(--panel); border-radius: 10px; padding: 18px 22px; margin-top: 18px;
  box-shadow: 0 1px 2px rgb(0 0 0 / 6%); }
.legend { display: flex; flex-wrap: wrap; gap: 16px; margin: 0 0 10px; font-size: 13px; }
.key i { display: inline-block; width: 12px; height: 12px; border-radius: 3px; margin-right: 6px;
  vertical-align: -1px; }
svg.chart { display: block; width: 100%; height: auto; font-size: 12px; }
.lane0 { fill: #f7f8fa; } .lane1 { fill: #fff; }
.grid { stroke: var(--line); stroke-width: 1; }
.tick { fill: var(--muted); text-anchor: middle; font-size: 11px; }
.tick.value { text-anchor: end; }
.axis-title { fill: var(--muted); font-size: 12px; }
.lane-name { fill: #4a525e; text-anchor: end; font-size: 12px; }
.bar { stroke: rgb(255 255 255 / 70%); stroke-width: 0.5; }
.bar:hover, .point:hover { opacity: 0.75; }
.in-bar { fill: #fff; font-size: 11px; pointer-events: none;
  font-family: ui-monospace, Menlo, Consolas, monospace; }
.point { fill: #9db4d8; stroke: #fff; stroke-width: 1; }
.point.record { fill: #2f9e58; }
.best { fill: none; stroke: #2f9e58; stroke-width: 2; stroke-linejoin: round; opacity: 0.8; }
.best-ring { fill: none; stroke: #2f9e58; stroke-width: 2; }
.best-label { fill: #1f6e3d; font-size: 12px; font-weight: 600; paint-order: stroke;
  stroke: #fff; stroke-width: 4px; stroke-linejoin: round; }
.card[data-zero] { opacity: 0.55; }
.empty { color: var(--muted); font-style: italic; }
table { width: 100%; border-collapse: collapse; font-size: 13px; table-layout: fixed; }
th { text-align: left; color: var(--muted); font-weight: 600; font-size: 12px;
  text-transform: uppercase; letter-spacing: 0.04em; padding: 6px 8px;
  border-bottom: 2px solid var(--line); }
td { padding: 8px; border-bottom: 1px solid var(--line); vertical-align: top;
  overflow-wrap: anywhere; }
th:nth-child(1) { width: 13%; } th:nth-child(2) { width: 7%; } th:nth-child(3) { width: 10%; }
th:nth-child(4) { width: 12%; } th:nth-child(5) { width: 20%; }
td.n { font-variant-numeric: tabular-nums; }
td.message { white-space: pre-wrap; }
.param-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr));
  gap: 12px; }
.badge { display: inline-block; border-radius: 999px; padding: 1px 9px; font-size: 12px;
  color: #fff; background: var(--c); }
.tail { display: flex; flex-direction: column-reverse; max-height: 11.5em; overflow: auto;
  background: #141a22; border-radius: 6px; }
.tail pre { margin: 0; padding: 8px 10px; color: #dfe6ee; font-size: 12px; line-height: 1.4;
  white-space: pre-wrap; overflow-wrap: anywhere; }
footer { color: var(--muted); font-size: 12px; margin-top: 18px; }
@media (max-width: 900px) { .cards { grid-template-columns: repeat(3, 1fr); } }
"""


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main>
<header id="summary">
<h1>{title}</h1>
<div class="sub">{summary}</div>
{header}
</header>
<section id="timeline">
<h2>Timeline</h2>
<p class="hint">Every attempt, one row per concurrency lane or slot. Hover a bar for details.</p>
<div class="legend">{legend}</div>
{timeline}
</section>
<section id="objective">
<h2>Objective by trial</h2>
<p class="hint">Each completed trial in the order it finished; the line is the best so far
({better} is better).</p>
{objective}
</section>
<section id="parameters">
<h2>Objective by parameter</h2>
<p class="hint">Each completed trial, once per parameter: the parameter's value across, the
objective up ({better} is better); the best trial in green. Hover a point for its id.</p>
{params}
</section>
<section id="failures">
<h2>Failures</h2>
<p class="hint">Attempts that did not complete, with their reason and the end of their stderr.</p>
{failures}
</section>
<footer>Written by async-consumer. This file needs no network to open.</footer>
</main>
</body>
</html>
"""
"""The page, with a place for each part (none of the parts is re-read as a template)."""


def page(
    *,
    title: str,
    summary: str,
    header: str,
    legend: str,
    timeline: str,
    objective: str,
    failures: str,
    params: str = "",
    better: str = "lower",
) -> str:
    """Put the report's parts (already HTML, already escaped) into one page."""
    return _PAGE.format(
        title=title,
        style=_STYLE,
        summary=summary,
        header=header,
        legend=legend,
        timeline=timeline,
        objective=objective,
        failures=failures,
        params=params,
        better=better,
    )
