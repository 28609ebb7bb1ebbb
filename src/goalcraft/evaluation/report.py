"""The HTML comparison report of one evaluation run: one self-contained file (frames inlined as JPEG).

Sections: the metric table with 95% CIs, models side by side; a task-similarity heatmap per model and
instruction set; the most-confused task pairs; examples (instruction → nearest goal clips, with their
last frame, the success moment).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from goalcraft.data.shards import FRAME_FIELDS, iter_shard
from goalcraft.evaluation.metrics import most_confused_pairs

Frame = Callable[[str], bytes | None]  # clip key → JPEG bytes of its last frame (or None)


def summary_markdown(summary: pa.Table, instruction_set: str | None = None) -> str:
    """Deterministic-mode metrics as a markdown table: one row per metric, one column per model."""
    rows = [r for r in summary.to_pylist() if r.get("mode") == "deterministic"
            and (instruction_set is None or r["instruction_set"] == instruction_set)]
    models = list(dict.fromkeys(r["model"] for r in rows))
    keys = list(dict.fromkeys((r["instruction_set"], r["metric"]) for r in rows))
    cell = {(r["instruction_set"], r["metric"], r["model"]): r for r in rows}
    out = "| set | metric | " + " | ".join(models) + " |\n|---|---|" + "---|" * len(models) + "\n"
    for iset, metric in keys:
        values = []
        for m in models:
            r = cell.get((iset, metric, m))
            values.append(_fmt_ci(r) if r else "")
        out += f"| {iset} | {metric} | " + " | ".join(values) + " |\n"
    return out


def _fmt(x) -> str:
    return "–" if x is None or x != x else f"{x:.3f}"


def _fmt_ci(r: dict) -> str:
    return f"{_fmt(r['value'])} [{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}]"


def _heat(value: float | None) -> str:
    if value is None or value != value:
        return "#eee"
    v = max(0.0, min(1.0, (value + 1) / 2))  # cosine −1..1 → white..red
    g = int(255 * (1 - v))
    return f"rgb(255,{g},{g})"


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


def render_report(run_id: str, tables: dict[str, pa.Table], examples: Sequence[dict], frame: Frame,
                  *, confused: int = 10) -> str:
    """The report's HTML. ``examples``: ``{"model", "instruction", "task", "clips": [{"key", "task",
    "cosine"}, ...]}``."""
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>goalcraft evaluation {esc(run_id)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px}th{background:#f4f4f4}"
             ".heat td{width:2.2em;text-align:center}img{height:80px;margin:2px}</style></head><body>",
             f"<h1>Goal models compared — run {esc(run_id)}</h1>"]
    runs = tables["runs"].to_pylist()
    if runs:
        parts.append(f"<p>{esc(str(runs[0]['timestamp']))}; held-out goal clips: {runs[0]['held_out_clips']}; "
                     f"data versions: <code>{esc(runs[0]['data_versions'])}</code></p>")
    # 1. metric table, models side by side
    parts.append("<h2>Metrics (deterministic mode; value [95% bootstrap CI over tasks])</h2>")
    rows = tables["summary"].to_pylist()
    models = list(dict.fromkeys(r["model"] for r in rows))
    parts.append("<table><tr><th>instruction set</th><th>metric</th>"
                 + "".join(f"<th>{esc(m)}</th>" for m in models) + "</tr>")
    cell = {(r["instruction_set"], r["metric"], r["model"], r["mode"]): r for r in rows}
    for iset, metric in dict.fromkeys((r["instruction_set"], r["metric"]) for r in rows):
        parts.append(f"<tr><td>{esc(iset)}</td><td>{esc(metric)}</td>")
        for m in models:
            r = cell.get((iset, metric, m, "deterministic"))
            sampled = cell.get((iset, metric, m, "sampled"))
            text = _fmt_ci(r) if r else ""
            if sampled:
                text += f"<br><small>sampled: {_fmt(sampled['value'])} ± {_fmt(sampled.get('seed_std'))}</small>"
            parts.append(f"<td>{text}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    # 2. heatmaps and 3. most-confused pairs
    pairs = tables["per_pair"].to_pylist()
    groups: dict[tuple[str, str], list[dict]] = {}
    for p in pairs:
        groups.setdefault((p["model"], p["instruction_set"]), []).append(p)
    parts.append("<h2>Task similarity (mean cosine between the z_goal of two tasks)</h2>")
    for (model, iset), items in groups.items():
        tasks = list(dict.fromkeys([p["task_a"] for p in items]))
        value = {(p["task_a"], p["task_b"]): p["cosine"] for p in items}
        parts.append(f"<h3>{esc(model)} — {esc(iset)}</h3><table class='heat'><tr><th></th>"
                     + "".join(f"<th title='{esc(t)}'>{i}</th>" for i, t in enumerate(tasks)) + "</tr>")
        for i, a in enumerate(tasks):
            parts.append(f"<tr><th style='text-align:left'>{i} {esc(a)}</th>")
            for b in tasks:
                v = value.get((a, b)) if a != b else None
                parts.append(f"<td style='background:{_heat(v)}' title='{esc(a)} / {esc(b)}'>"
                             f"{'' if v is None else f'{v:.2f}'}</td>")
            parts.append("</tr>")
        parts.append("</table>")
        matrix = np.array([[value.get((a, b), np.nan) for b in tasks] for a in tasks], dtype=np.float64)
        top = most_confused_pairs(tasks, matrix, confused)
        parts.append("<p>Most confused: " + "; ".join(f"{esc(a)} / {esc(b)} ({c:.3f})" for a, b, c in top) + "</p>")
    # 4. examples with frames
    parts.append("<h2>Examples: instruction → nearest held-out goal clips (last frame = the success moment)</h2>")
    for ex in examples:
        parts.append(f"<h3>{esc(ex['model'])}: “{esc(ex['instruction'])}” <small>(task {esc(ex['task'])})</small></h3><div>")
        for clip in ex["clips"]:
            jpeg = frame(clip["key"])
            img = (f"<img src='data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}' alt='{esc(clip['key'])}'>"
                   if jpeg else "")
            parts.append(f"<figure style='display:inline-block'>{img}<figcaption>{esc(str(clip.get('task')))} "
                         f"{clip['cosine']:.3f}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
