"""The HTML comparison report of one evaluation run: one self-contained file (plain HTML, inline SVG,
frames inlined as JPEG; no scripts).

Per instruction set:

- the metric table: one row per metric with its direction (↑ higher is better, ↓ lower, · a
  property), one column per entry (the models, the prior sampled and deterministic, the oracles) with
  value [95% CI], ± seed std over training seeds, a ⚠ where the CI has zero width; the chance level;
  each model's fraction of the training-mean oracle; the paired difference goal_predictor −
  mineclip_prior with its CI. The better of the pair is highlighted only where that CI excludes 0
  (the ``differences`` table's ``better``). ``goalcraft sql comparison`` gives the same columns.
- the text probes (the design's "kill pig" pairs), and the design's table: its MineCLIP + prior
  figures and hoped-for ranges (:data:`DESIGN_FIGURES`) beside ours;
- a bar chart of the headline metrics with CI whiskers (chance dashed);
- a task-similarity heatmap per entry and of the success visuals, task names on both axes, its
  colour scale spanning the data; the most-confused task pairs.

Then examples: instruction → nearest held-out goal clips, with their last frame (the success moment).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from goalcraft.data.shards import FRAME_FIELDS, iter_shard
from goalcraft.evaluation.metrics import most_confused_pairs
from goalcraft.evaluation.run import BASELINE, PREDICTOR

Frame = Callable[[str], bytes | None]  # clip key → JPEG bytes of its last frame (or None)

esc = html.escape


@dataclass(frozen=True)
class DesignFigure:
    """A figure the design quotes, measured by the user's STEVE-1 evaluator on MineCLIP + prior.
    ``figure``: its MineCLIP + prior value; ``hoped``: the range it hopes for (either may be None);
    ``probe``: ours is the text probe of that name (goal_model_metrics.probe_cosines), not a metric."""

    metric: str
    figure: float | None = None
    hoped: tuple[float, float] | None = None
    probe: str | None = None
    what: str = ""


#: The design's table, in one place: what it reports for MineCLIP + prior and what it hopes for.
DESIGN_FIGURES: tuple[DesignFigure, ...] = (
    DesignFigure("text_discriminability", figure=0.013, probe="difference",
                 what="1.3%: cos(kill pig, chop tree) − cos(kill pig, build house) on the text side"),
    DesignFigure("visual_similarity", figure=0.925, what="mean cross-task cosine of the success visuals"),
    DesignFigure("prior_collapse", figure=0.873, what="mean cross-task cosine of the prior's goals"),
    DesignFigure("goal_accuracy", hoped=(0.91, 0.99)),
    DesignFigure("discriminability", figure=0.12, what="MineCLIP + prior"),
    DesignFigure("semantic_robustness", hoped=(0.96, 0.99)),
)

#: The bar chart's metrics.
HEADLINE = ("goal_accuracy", "discriminability", "top1", "semantic_robustness", "prior_collapse")

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def _num(x) -> bool:
    return x is not None and x == x


def _fmt(x) -> str:
    if not _num(x):
        return "–"
    text = f"{x:.3f}"
    return "0.000" if text == "-0.000" else text


def _fmt_ci(r: dict) -> str:
    if not _num(r.get("value")):
        return "–"
    return f"{_fmt(r['value'])} [{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}]"


# --------------------------------------------------------------------------- the comparison rows

@dataclass
class Difference:
    """A paired difference of one metric: ``a`` − ``b`` (entry keys) with its CI; ``better`` the entry
    its CI says is better (None: it includes 0, or the metric has no direction)."""

    a: str
    b: str
    mode_b: str
    row: dict

    @property
    def better(self) -> str | None:
        return self.row.get("better")

    def text(self) -> str:
        r = self.row
        value = f"{r['difference']:+.3f}" if _num(r.get("difference")) else "–"
        return f"{value} [{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}]"

    def verdict(self) -> str:
        return f"{self.better} > {self.b if self.better == self.a else self.a}" if self.better else ""


@dataclass
class MetricRow:
    """One metric of one instruction set: its cells per entry (summary rows), the paired differences."""

    instruction_set: str
    metric: str
    direction: str
    chance: float | None
    cells: dict[str, dict] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)

    def chance_text(self) -> str:
        return _fmt(self.chance) if self.chance is not None else ""

    def better(self) -> dict[str, list[str]]:
        """Entry → the entries it is better than (paired CI excludes 0)."""
        out: dict[str, list[str]] = {}
        for d in self.differences:
            if d.better:
                out.setdefault(d.better, []).append(d.b if d.better == d.a else d.a)
        return out


def _rows(table: pa.Table | None) -> list[dict]:
    return table.to_pylist() if table is not None else []


def comparison_rows(summary: pa.Table | None, differences: pa.Table | None = None,
                    instruction_set: str | None = None) -> tuple[list[str], list[MetricRow]]:
    """The entries (models, then oracles; first-seen order) and one row per (set, metric) of the
    ``summary`` table (text probes excluded), with the ``differences`` of each: what the report's
    metric table, the markdown summary and ``goalcraft sql comparison`` show."""
    rows = [r for r in _rows(summary) if r.get("mode") != "text_probe" and r.get("entry") is not None
            and (instruction_set is None or r["instruction_set"] == instruction_set)]
    entries = list(dict.fromkeys(r["entry"] for r in rows if r.get("mode") != "oracle"))
    entries += list(dict.fromkeys(r["entry"] for r in rows if r.get("mode") == "oracle"))
    entry_of = {(r["model"], r["mode"]): r["entry"] for r in rows}
    out: dict[tuple[str, str], MetricRow] = {}
    for r in rows:
        m = out.setdefault((r["instruction_set"], r["metric"]),
                           MetricRow(r["instruction_set"], r["metric"], r.get("direction") or "·", None))
        m.cells[r["entry"]] = r
        if m.chance is None and _num(r.get("chance")):
            m.chance = r["chance"]
    for d in _rows(differences):
        m = out.get((d["instruction_set"], d["metric"]))
        a, b = entry_of.get((d["model_a"], d["mode_a"])), entry_of.get((d["model_b"], d["mode_b"]))
        if m is not None and a and b:
            m.differences.append(Difference(a, b, d["mode_b"], d))
    return entries, list(out.values())


def _difference_columns(rows: Iterable[MetricRow]) -> list[tuple[str, str, str]]:
    """(a, b, mode_b) of every paired difference present, in first-seen order."""
    return list(dict.fromkeys((d.a, d.b, d.mode_b) for m in rows for d in m.differences))


def _difference(m: MetricRow, column: tuple[str, str, str]) -> Difference | None:
    return next((d for d in m.differences if (d.a, d.b, d.mode_b) == column), None)


def summary_markdown(summary: pa.Table, differences: pa.Table | None = None,
                     instruction_set: str | None = None) -> str:
    """Every metric as a markdown table: direction, one column per entry (value [CI]), chance, and
    the better of the paired comparison where its CI excludes 0."""
    entries, rows = comparison_rows(summary, differences, instruction_set)
    out = ("| set | metric | dir | " + " | ".join(entries) + " | chance | better |\n|---|---|---|"
           + "---|" * len(entries) + "---|---|\n")
    for m in rows:
        values = [_fmt_ci(m.cells[e]) if e in m.cells else "" for e in entries]
        verdicts = "; ".join(v for v in (d.verdict() for d in m.differences) if v)
        out += (f"| {m.instruction_set} | {m.metric} | {m.direction} | " + " | ".join(values)
                + f" | {m.chance_text()} | {verdicts} |\n")
    return out


# --------------------------------------------------------------------------- HTML pieces

_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px;vertical-align:top}th{background:#f4f4f4}"
    "td.better{background:#d4f0d4;font-weight:bold;color:#145a14}small{color:#555}"
    ".zw{color:#b35900}img{height:80px;margin:2px}svg text{font-family:sans-serif}"
    "figure.heat{display:inline-block;margin:0 2em 2em 0;vertical-align:top}"
)


_ZERO_WIDTH = "<br><small class='zw'>⚠ zero-width CI</small>"


def _entry_header(entry: str, cells: Iterable[dict]) -> str:
    mode = next((c.get("mode") for c in cells if c.get("entry") == entry), "")
    return f"<th>{esc(entry)}<br><small>{esc(str(mode or ''))}</small></th>"


def _cell(m: MetricRow, entry: str, better: dict[str, list[str]]) -> str:
    r = m.cells.get(entry)
    attrs = f"data-entry='{esc(entry)}' data-metric='{esc(m.metric)}'"
    if r is None:
        return f"<td {attrs}></td>"
    text = _fmt_ci(r)
    if (r.get("n_seeds") or 0) > 1:
        text += f"<br><small>± {_fmt(r.get('seed_std'))} over {r['n_seeds']} seeds</small>"
    if r.get("zero_width_ci"):
        text += _ZERO_WIDTH
    if entry in better:
        title = "better than " + ", ".join(better[entry]) + " (paired 95% CI excludes 0)"
        return f"<td {attrs} class='better' title='{esc(title)}'>{text}</td>"
    return f"<td {attrs}>{text}</td>"


def _metric_table(entries: list[str], rows: list[MetricRow]) -> str:
    cells = [c for m in rows for c in m.cells.values()]
    fraction_of = [e for e in entries
                   if any(_num(m.cells.get(e, {}).get("fraction_of_oracle")) for m in rows)
                   and all(m.cells.get(e, {}).get("mode") != "oracle" for m in rows)]
    diffs = _difference_columns(rows)
    head = ("<table class='metrics'><tr><th>metric</th><th>dir</th>"
            + "".join(_entry_header(e, cells) for e in entries) + "<th>chance</th>"
            + "".join(f"<th>{esc(e)}<br><small>÷ oracle</small></th>" for e in fraction_of)
            + "".join(f"<th>Δ {esc(a)} − {esc(b)}<br><small>paired, 95% CI</small></th>" for a, b, _ in diffs)
            + "</tr>")
    body = []
    for m in rows:
        better = m.better()
        tds = [f"<td>{esc(m.metric)}</td><td class='dir' data-metric='{esc(m.metric)}'>{esc(m.direction)}</td>"]
        tds += [_cell(m, e, better) for e in entries]
        tds.append(f"<td class='chance' data-metric='{esc(m.metric)}'>{m.chance_text()}</td>")
        tds += [f"<td>{_fmt(m.cells.get(e, {}).get('fraction_of_oracle'))}</td>" for e in fraction_of]
        for column in diffs:
            d = _difference(m, column)
            if d is None:
                tds.append("<td></td>")
                continue
            text = d.text() + (_ZERO_WIDTH if d.row.get("zero_width_ci") else "")
            highlight = ""
            if d.better:
                text += f"<br><small>{esc(d.verdict())}</small>"
                highlight = " class='better'"
            tds.append(f"<td{highlight} data-difference='{esc(d.mode_b)}'>{text}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return head + "".join(body) + "</table>"


def _probe_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    models = list(dict.fromkeys(r["model"] for r in rows))
    value = {(r["model"], r["metric"]): r["value"] for r in rows}
    out = ("<h3>Text probes (the model's text side)</h3><table class='probes'><tr><th>probe</th>"
           + "".join(f"<th>{esc(m)}</th>" for m in models) + "</tr>")
    for probe in dict.fromkeys(r["metric"] for r in rows):
        out += (f"<tr><td>{esc(probe)}</td>"
                + "".join(f"<td>{_fmt(value.get((m, probe)))}</td>" for m in models) + "</tr>")
    return out + "</table>"


def _design_value(x: float | None) -> str:
    return "–" if x is None else f"{x:g}"


def _ours(fig: DesignFigure, summary: dict[tuple[str, str], dict], probes: dict[tuple[str, str], float],
          model: str) -> str:
    if fig.probe is not None:
        value = probes.get((model, fig.probe))
        text = _fmt(value)
    else:
        r = summary.get((model, fig.metric))
        value = r["value"] if r else None
        text = _fmt_ci(r) if r else "–"
    if fig.hoped is not None and _num(value):
        lo, hi = fig.hoped
        text += " <small>(" + ("below" if value < lo else "above" if value > hi else "in") + " range)</small>"
    return text


def _design_table(iset_rows: list[dict]) -> str:
    """The design's figures beside ours: the baseline (prior sampled, as STEVE-1; else its mode) and
    the predictor."""
    summary: dict[tuple[str, str], dict] = {}
    for r in iset_rows:
        if r.get("mode") not in ("text_probe", "oracle"):
            key = (r["model"], r["metric"])
            if key not in summary or r.get("mode") == "sampled":
                summary[key] = r
    probes = {(r["model"], r["metric"]): r["value"] for r in iset_rows if r.get("mode") == "text_probe"}
    out = ("<h3>The design's table</h3><p>The design's figures were measured by the user's STEVE-1 "
           "evaluator; ours by the same formulas on this run. Baseline: the prior sampled, as STEVE-1 samples "
           "it (its mode where it was not sampled); text_discriminability: the probes' difference.</p>"
           "<table class='design'><tr><th>metric</th>"
           "<th>design: MineCLIP + prior</th><th>design: hoped-for range</th>"
           f"<th>ours: {esc(BASELINE)}</th><th>ours: {esc(PREDICTOR)}</th></tr>")
    for fig in DESIGN_FIGURES:
        hoped = "–" if fig.hoped is None else f"{_design_value(fig.hoped[0])}–{_design_value(fig.hoped[1])}"
        what = f"<br><small>{esc(fig.what)}</small>" if fig.what else ""
        out += (f"<tr data-metric='{esc(fig.metric)}'><td>{esc(fig.metric)}{what}</td>"
                f"<td>{_design_value(fig.figure)}</td><td>{hoped}</td>"
                + "".join(f"<td>{_ours(fig, summary, probes, model)}</td>" for model in (BASELINE, PREDICTOR))
                + "</tr>")
    return out + "</table>"


def _colour(t: float) -> str:
    """Viridis at ``t`` in [0, 1]."""
    t = min(1.0, max(0.0, t)) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    f = t - i
    r, g, b = (round(a + (c - a) * f) for a, c in zip(_VIRIDIS[i], _VIRIDIS[i + 1]))
    return f"rgb({r},{g},{b})"


def heatmap_svg(tasks: Sequence[str], value: dict[tuple[str, str], float | None], ident: str) -> str:
    """A task × task heatmap: task names on both axes, the colour scale spanning the off-diagonal
    values' min..max (its ends in the legend), grey where there is no value."""
    values = [v for (a, b), v in value.items() if a != b and _num(v)]
    lo, hi = (min(values), max(values)) if values else (math.nan, math.nan)
    n = len(tasks)
    cell = max(8, min(22, 520 // max(n, 1)))
    margin = 12 + 6 * max((len(t) for t in tasks), default=1)
    scale_width = max(n * cell, 100)
    width, height = margin + scale_width + 30, margin + n * cell + 50
    parts = [f"<svg class='heatmap' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"font-size='10'><defs><linearGradient id='{ident}'>"
             + "".join(f"<stop offset='{k / 4:.2f}' stop-color='{_colour(k / 4)}'/>" for k in range(5))
             + "</linearGradient></defs>"]
    for i, t in enumerate(tasks):
        y = margin + i * cell + cell / 2 + 3
        x = margin + i * cell + cell / 2 + 3
        parts.append(f"<text class='row-label' x='{margin - 4}' y='{y:.1f}' text-anchor='end'>{esc(t)}</text>")
        parts.append(f"<text class='col-label' transform='translate({x:.1f},{margin - 4}) rotate(-90)'>{esc(t)}</text>")
    for i, a in enumerate(tasks):
        for j, b in enumerate(tasks):
            v = value.get((a, b)) if a != b else None
            fill = ("#ddd" if a == b else "#f4f4f4" if not _num(v)
                    else _colour(0.5 if hi == lo else (v - lo) / (hi - lo)))
            title = f"{a} / {b}: {_fmt(v)}" if a != b else a
            parts.append(f"<rect x='{margin + j * cell}' y='{margin + i * cell}' width='{cell}' height='{cell}' "
                         f"fill='{fill}'><title>{esc(title)}</title></rect>")
    y = margin + n * cell + 12
    parts.append(f"<rect x='{margin}' y='{y}' width='{scale_width}' height='10' fill='url(#{ident})'/>"
                 f"<text class='legend-lo' x='{margin}' y='{y + 24}'>{_fmt(lo)}</text>"
                 f"<text class='legend-hi' x='{margin + scale_width}' y='{y + 24}' text-anchor='end'>"
                 f"{_fmt(hi)}</text></svg>")
    return "".join(parts)


@dataclass(frozen=True)
class BarGroup:
    """One group of :func:`grouped_bars_svg`: ``cells`` entry → row with ``value``, ``ci_low``,
    ``ci_high`` (and an optional ``note`` for the tooltip); ``label`` under the group; ``reference`` a
    dashed level across it (``reference_name``: what it is)."""

    name: str
    label: str
    cells: dict[str, dict]
    reference: float | None = None
    reference_name: str = "chance"


def grouped_bars_svg(groups: Sequence[BarGroup], entries: Sequence[str], *, kind: str = "metric",
                     fills: dict[str, str] | None = None, css_class: str = "bars") -> str:
    """Grouped bars, a bar per entry with its CI whisker, a legend of the entries (wrapped to the
    chart's width). Each bar, whisker and reference line carries ``data-entry`` and ``data-<kind>``
    (the group's name); the svg's ``data-ymin``/``data-ymax`` map to pixel rows
    ``data-bottom``/``data-top``. ``fills``: entry → colour (default: the palette in entry order)."""
    if not groups or not entries:
        return ""

    def fill(k: int, entry: str) -> str:
        return (fills or {}).get(entry) or _PALETTE[k % len(_PALETTE)]

    numbers = [x for g in groups for r in g.cells.values()
               for x in (r.get("value"), r.get("ci_low"), r.get("ci_high")) if _num(x)]
    ymin, ymax = min([0.0, *numbers]), max([1.0, *numbers])
    top, bottom, left, bar = 20, 220, 40, 14
    group = max(bar * len(entries) + 24, 7 * max(len(g.label) for g in groups) + 30)
    chart_width = left + group * len(groups) + 10
    # Legend items left to right, a new row where the next would pass the chart's width (at least 600 px).
    legend: list[tuple[int, int]] = []
    x, row = left, 0
    for entry in entries:
        item = 7 * len(entry) + 34
        if x > left and x + item > max(chart_width, 600):
            x, row = left, row + 1
        legend.append((x, row))
        x += item
    legend_width = max(left + 7 * len(e) + 34 for e in entries) if row else x

    def y(v: float) -> float:
        return bottom - (v - ymin) / (ymax - ymin) * (bottom - top)

    width = max(chart_width, legend_width)
    parts = [f"<svg class='{esc(css_class)}' xmlns='http://www.w3.org/2000/svg' width='{width}' "
             f"height='{bottom + 40 + 16 * row}' font-size='10' data-ymin='{ymin!r}' data-ymax='{ymax!r}' "
             f"data-top='{top}' data-bottom='{bottom}'>",
             f"<line x1='{left}' x2='{width}' y1='{y(0):.2f}' y2='{y(0):.2f}' stroke='#999'/>"]
    for tick in np.linspace(ymin, ymax, 5):
        parts.append(f"<text x='{left - 4}' y='{y(tick) + 3:.2f}' text-anchor='end'>{tick:.2f}</text>")
    for g_index, g in enumerate(groups):
        x0 = left + g_index * group + (group - bar * len(entries)) // 2
        parts.append(f"<text class='group-label' x='{x0 + bar * len(entries) / 2:.1f}' y='{bottom + 14}' "
                     f"text-anchor='middle'>{esc(g.label)}</text>")
        for k, entry in enumerate(entries):
            r = g.cells.get(entry)
            if r is None or not _num(r.get("value")):
                continue
            x, v = x0 + k * bar, r["value"]
            y0, y1 = sorted((y(v), y(0)))
            data = f"data-entry='{esc(entry)}' data-{kind}='{esc(g.name)}'"
            note = f" {r['note']}" if r.get("note") else ""
            parts.append(f"<rect class='bar' {data} data-value='{v!r}' x='{x}' y='{y0:.2f}' width='{bar - 2}' "
                         f"height='{y1 - y0:.2f}' fill='{fill(k, entry)}'>"
                         f"<title>{esc(entry)} {esc(g.name)}: {esc(_fmt_ci(r) + note)}</title></rect>")
            if _num(r.get("ci_low")) and _num(r.get("ci_high")):
                cx = x + (bar - 2) / 2
                parts.append(f"<line class='ci' {data} x1='{cx}' x2='{cx}' y1='{y(r['ci_low']):.2f}' "
                             f"y2='{y(r['ci_high']):.2f}' stroke='#000'/>")
                for end in (r["ci_low"], r["ci_high"]):
                    parts.append(f"<line x1='{cx - 3}' x2='{cx + 3}' y1='{y(end):.2f}' y2='{y(end):.2f}' "
                                 "stroke='#000'/>")
        if g.reference is not None:
            parts.append(f"<line class='{esc(g.reference_name)}' data-{kind}='{esc(g.name)}' x1='{x0 - 4}' "
                         f"x2='{x0 + bar * len(entries) + 2}' y1='{y(g.reference):.2f}' y2='{y(g.reference):.2f}' "
                         f"stroke='#c00' stroke-dasharray='4 3'><title>{esc(g.reference_name)} "
                         f"{_fmt(g.reference)}</title></line>")
    for k, (entry, (x, row)) in enumerate(zip(entries, legend)):
        ly = bottom + 30 + 16 * row
        parts.append(f"<rect x='{x}' y='{ly - 8}' width='10' height='10' fill='{fill(k, entry)}'/>"
                     f"<text x='{x + 14}' y='{ly + 1}'>{esc(entry)}</text>")
    return "".join(parts) + "</svg>"


def bar_chart_svg(entries: Sequence[str], rows: Sequence[MetricRow], metrics: Sequence[str] = HEADLINE) -> str:
    """Grouped bars of ``metrics`` (one group each), a bar per entry with its CI whisker; the chance
    level dashed where the metric has one (:func:`grouped_bars_svg`)."""
    by_metric = {m.metric: m for m in rows}
    return grouped_bars_svg([BarGroup(k, f"{k} {by_metric[k].direction}", by_metric[k].cells, by_metric[k].chance)
                             for k in metrics if k in by_metric], entries)


def _heatmaps(pairs: list[dict], confused: int, counter: list[int]) -> list[str]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for p in pairs:
        groups.setdefault((p["model"], p.get("mode") or ""), []).append(p)
    parts = []
    for (model, mode), items in groups.items():
        tasks = list(dict.fromkeys([p["task_a"] for p in items] + [p["task_b"] for p in items]))
        value = {(p["task_a"], p["task_b"]): p["cosine"] for p in items}
        counter[0] += 1
        label = f"{model} ({mode})" if mode else model
        matrix = np.array([[value.get((a, b)) if _num(value.get((a, b))) else np.nan for b in tasks] for a in tasks],
                          dtype=np.float64)
        top = most_confused_pairs(tasks, matrix, confused)
        parts.append(f"<figure class='heat'><figcaption><b>{esc(label)}</b></figcaption>"
                     + heatmap_svg(tasks, value, f"scale{counter[0]}")
                     + "<p>Most confused: " + "; ".join(f"{esc(a)} / {esc(b)} ({c:.3f})" for a, b, c in top)
                     + "</p></figure>")
    return parts


def shard_frame_reader(index: pa.Table, shard_dir_of: Callable[[str], Path]) -> Frame:
    """Last frames of goal clips, read from their shards on demand (``index`` has key and shard)."""
    where = dict(zip(index.column("key").to_pylist(), index.column("shard").to_pylist()))
    cache: dict[str, dict[str, bytes]] = {}

    def frame(key: str) -> bytes | None:
        shard = where.get(key)
        if shard is None:
            return None
        if shard not in cache:
            tar = shard_dir_of(shard) / f"{shard}.tar"
            cache[shard] = ({s["__key__"]: s[FRAME_FIELDS[-1]] for s in iter_shard(tar)} if tar.is_file() else {})
        return cache[shard].get(key)

    return frame


_LEGEND = ("<p>↑ higher is better, ↓ lower is better, · a property (no better). Cells: value [95% bootstrap CI "
           "over tasks, clips and training seeds], ± the std over training seeds; ⚠ a zero-width CI (the "
           "resamples never moved it). <span style='background:#d4f0d4;font-weight:bold'>Green</span>: the "
           "better of the paired comparison, only where its paired 95% CI excludes 0. Oracles are upper "
           "bounds: each task's mean training goal, and (with hindsight) its mean held-out goal.</p>")


def render_report(run_id: str, tables: dict[str, pa.Table], examples: Sequence[dict], frame: Frame,
                  *, confused: int = 10) -> str:
    """The report's HTML. ``tables``: the run's evaluation tables (goalcraft.evaluation.run; any may be
    missing); ``examples``: ``{"model", "instruction", "task", "clips": [{"key", "task", "cosine"}, ...]}``."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>goalcraft evaluation {esc(run_id)}</title>",
             f"<style>{_STYLE}</style></head><body>", f"<h1>Goal models compared — run {esc(run_id)}</h1>"]
    runs = _rows(tables.get("runs"))
    if runs:
        parts.append(f"<p>{esc(str(runs[0]['timestamp']))}; held-out goal clips: {runs[0]['held_out_clips']}; "
                     f"data versions: <code>{esc(runs[0]['data_versions'])}</code></p>")
    parts.append(_LEGEND)
    summary = _rows(tables.get("summary"))
    pairs = _rows(tables.get("per_pair"))
    sets = list(dict.fromkeys([r["instruction_set"] for r in summary] + [p["instruction_set"] for p in pairs]))
    counter = [0]
    for iset in sets:
        parts.append(f"<h2>Instruction set {esc(iset)}</h2>")
        iset_rows = [r for r in summary if r["instruction_set"] == iset]
        entries, rows = comparison_rows(tables.get("summary"), tables.get("differences"), iset)
        if rows:
            first = next(iter(rows[0].cells.values()))
            parts.append(f"<p>{first.get('n_tasks')} tasks, {first.get('n_tasks_with_clips')} with held-out goal clips "
                         f"({first.get('n_clips')} clips).</p>")
            parts.append(_metric_table(entries, rows))
        parts.append(_probe_table([r for r in iset_rows if r.get("mode") == "text_probe"]))
        if iset_rows:
            parts.append(_design_table(iset_rows))
        chart = bar_chart_svg(entries, rows)
        if chart:
            parts.append("<h3>Headline metrics (95% CI whiskers; dashed: chance)</h3>" + chart)
        set_pairs = [p for p in pairs if p["instruction_set"] == iset]
        if set_pairs:
            parts.append("<h3>Task similarity: cosine between the canonical z_goal of two tasks (success_visuals: "
                         "mean cosine between their held-out goal clips); each map's colours span its own "
                         "min..max</h3>")
            parts += _heatmaps(set_pairs, confused, counter)
    parts.append("<h2>Examples: instruction → nearest held-out goal clips (last frame = the success moment)</h2>")
    for ex in examples:
        parts.append(f"<h3>{esc(ex['model'])}: “{esc(ex['instruction'])}” <small>(task {esc(ex['task'])})</small></h3><div>")
        for clip in ex["clips"]:
            jpeg = frame(clip["key"])
            img = (f"<img src='data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}' alt='{esc(clip['key'])}'>"
                   if jpeg else "")
            source = clip.get("source")
            shown = f" <small>({esc(source)})</small>" if source and source != "test_split" else ""
            parts.append(f"<figure style='display:inline-block'>{img}<figcaption>{esc(str(clip.get('task')))} "
                         f"{clip['cosine']:.3f}{shown}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
