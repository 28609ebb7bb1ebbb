"""The HTML report of one agent-success run (docs/closed-loop.md §4): one self-contained file in the
style of the goal-model report (goalcraft.evaluation.report: plain HTML, inline SVG, no scripts).

- the pooled table per (model, guidance λ): episodes, successes, success rate with its Wilson 95%
  interval, mean steps to success, mean off-target achievements; the goal source with the best
  pooled rate is highlighted only where its interval lies wholly above the unconditional floor's;
- a success-rate chart: per task a bar per (model, λ) with its Wilson whisker; a colour per goal
  source (lighter for smaller λ), the scripted ceiling black, the unconditional floor grey;
- the paired differences (:data:`~goalcraft.evaluation.agent_success.COMPARISONS`: goal predictor −
  prior, REINFORCE head − predictor, oracle − zero goal, oracle − predictor) per λ, pooled and per
  task, with their bootstrap intervals (:func:`~goalcraft.evaluation.agent_success.paired_difference`);
- a short rollout animation per model and task: an animated GIF of the policy's observations
  (every ``stride``-th step and the last, at most :data:`GIF_FRAMES` frames), shown
  :data:`GIF_SCALE` x larger with sharp pixels.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from goalcraft.evaluation.agent_success import SCRIPTED, UNCONDITIONAL, summarize
from goalcraft.evaluation.report import _PALETTE, _STYLE, BarGroup, _fmt, _fmt_ci, _num, esc, grouped_bars_svg
from goalcraft.evaluation.rollouts import RolloutResult

__all__ = [
    "GIF_FRAMES",
    "Animation",
    "agent_report_section",
    "best_above_floor",
    "entry_name",
    "gif_stride",
    "render_agent_report",
    "rollout_animation",
    "rollout_gif",
]

#: At most this many frames per animation (the HTML holds one per model and task).
GIF_FRAMES = 75
#: The policy's observations are 64x40: shown 3x larger with sharp pixels. The browser scales them
#: (nearest): a GIF stored at 3x was 3.7x the bytes for the same picture.
GIF_SCALE = 3
CEILING_FILL, FLOOR_FILL = "#222222", "#b0b0b0"


def gif_stride(max_steps: int, cap: int = GIF_FRAMES) -> int:
    """Every how many steps to keep an observation so that an episode of up to ``max_steps`` steps
    has at most ``cap`` frames with the first and the last (at least every 2nd step)."""
    if cap < 3:
        raise ValueError(f"cap must be >= 3, got {cap}")
    # 1 + steps // k + (the last, when steps % k) <= 2 + steps / k <= cap.
    return max(2, math.ceil(max_steps / (cap - 2)))


def rollout_gif(frames: np.ndarray, *, scale: int = 1, frame_ms: int = 100, hold_ms: int = 1500) -> bytes:
    """An animated GIF (looping) of ``frames`` ``[T, H, W, 3]`` uint8, upscaled ``scale`` x (nearest);
    the last frame, the episode's outcome, held ``hold_ms``. One palette for the whole episode (at
    most 256 colours, no dithering). Pillow merges consecutive identical frames (the agent standing
    still), adding up their durations."""
    from PIL import Image

    frames = np.asarray(frames, np.uint8)
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3] with T >= 1, got {frames.shape}")
    # A shared undithered palette: frames do not flicker and flat runs compress (Pillow's default,
    # a dithered palette per frame, made a Crafter episode's GIF 1.5x larger).
    quantized = Image.fromarray(frames.reshape(-1, frames.shape[2], 3)).quantize(
        256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = quantized.getpalette()
    indices = np.asarray(quantized).reshape(frames.shape[:3]).repeat(scale, axis=1).repeat(scale, axis=2)
    images = []
    for frame in indices:
        image = Image.fromarray(frame)
        image.putpalette(palette)
        images.append(image)
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=[frame_ms] * (len(images) - 1) + [hold_ms])
    return out.getvalue()


@dataclass(frozen=True)
class Animation:
    """One recorded episode as shown in the report: its source, λ, task and outcome, and the GIF of
    ``frames`` observations (every ``stride``-th step and the last)."""

    model: str
    guidance: float | None
    task: str
    world_seed: int
    success: bool
    steps: int
    died: bool
    stride: int
    frames: int
    size: tuple[int, int]  # (width, height) of the frames
    gif: bytes


def rollout_animation(model: str, guidance: float | None, task: str, result: RolloutResult, stride: int) -> Animation:
    """The animation of an episode recorded with ``record_frames`` and ``frame_stride=stride``."""
    if result.frames is None:
        raise ValueError(f"the episode of {model} on {task} was not recorded")
    return Animation(model, guidance, task, result.request.world_seed, result.success, result.steps, result.died,
                     stride, len(result.frames), (result.frames.shape[2], result.frames.shape[1]),
                     rollout_gif(result.frames))


def entry_name(model: str, guidance: float | None) -> str:
    """How the report names a (model, λ): the floor and the ceiling by their role, guided sources with λ."""
    if model == SCRIPTED:
        return f"{model} (ceiling)"
    if model == UNCONDITIONAL:
        return f"{model} (floor)"
    return model if guidance is None else f"{model} λ={guidance:g}"


def _tint(colour: str, t: float) -> str:
    """``colour`` (#rrggbb) mixed with white: t = 1 the colour itself, smaller t lighter."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 - (255 - c) * t):02x}" for c in rgb)


def _fills(keys: Sequence[tuple[str, float | None]]) -> dict[str, str]:
    """Entry → colour: a palette colour per goal source, lighter for its smaller λ; the ceiling black,
    the floor grey (so neither can be taken for a goal source)."""
    sources = list(dict.fromkeys(m for m, _ in keys if m not in (SCRIPTED, UNCONDITIONAL)))
    out = {}
    for model, guidance in keys:
        if model == SCRIPTED:
            out[entry_name(model, guidance)] = CEILING_FILL
        elif model == UNCONDITIONAL:
            out[entry_name(model, guidance)] = FLOOR_FILL
        else:
            scales = sorted(g or 0.0 for m, g in keys if m == model)
            rank = scales.index(guidance or 0.0) / max(len(scales) - 1, 1)
            out[entry_name(model, guidance)] = _tint(_PALETTE[sources.index(model) % len(_PALETTE)], 0.4 + 0.6 * rank)
    return out


def _ordered(rows: list[dict]) -> list[dict]:
    """Pooled rows by model (first seen) then λ ascending; the floor and the ceiling last."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    role = {UNCONDITIONAL: 1, SCRIPTED: 2}
    return sorted(rows, key=lambda r: (role.get(r["model"], 0), models.index(r["model"]),
                                       -1.0 if r["guidance"] is None else r["guidance"]))


def _ci_row(r: dict) -> dict:
    return {"value": r["success_rate"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
            "note": f"({r['successes']}/{r['episodes']})"}


def best_above_floor(pooled: list[dict]) -> set[tuple[str, float | None]]:
    """The (model, λ) of the goal sources with the best pooled success rate (the ceiling aside), where
    its Wilson interval lies wholly above the unconditional floor's; empty where it overlaps (or there
    is no floor)."""
    floor = next((r for r in pooled if r["model"] == UNCONDITIONAL), None)
    sources = [r for r in pooled if r["model"] not in (SCRIPTED, UNCONDITIONAL) and _num(r["success_rate"])]
    if floor is None or not sources:
        return set()
    best = max(r["success_rate"] for r in sources)
    return {(r["model"], r["guidance"]) for r in sources if r["success_rate"] == best and r["ci_low"] > floor["ci_high"]}


def _pooled_table(pooled: list[dict]) -> str:
    better = best_above_floor(pooled)
    out = ("<table class='agent-pooled'><tr><th>model</th><th>λ</th><th>episodes</th><th>successes</th>"
           "<th>success rate<br><small>[Wilson 95% CI]</small></th><th>mean steps to success</th>"
           "<th>mean off-target</th></tr>")
    for r in pooled:
        attrs = f"data-model='{esc(r['model'])}' data-guidance='{esc(str(r['guidance']))}'"
        if (r["model"], r["guidance"]) in better:
            attrs += " class='better' title='best pooled rate; its 95% CI lies above the unconditional floor'"
        label = entry_name(r["model"], None) if r["model"] in (SCRIPTED, UNCONDITIONAL) else r["model"]
        guidance = "–" if r["guidance"] is None else f"{r['guidance']:g}"
        out += (f"<tr {attrs}><td>{esc(label)}</td><td>{guidance}</td><td>{r['episodes']}</td>"
                f"<td>{r['successes']}</td><td class='rate'>{_fmt_ci(_ci_row(r))}</td>"
                f"<td>{_fmt(r['mean_steps_to_success'])}</td><td>{_fmt(r['mean_off_target'])}</td></tr>")
    return out + "</table>"


def _chart(rows: list[dict], pooled: list[dict]) -> str:
    keys = [(r["model"], r["guidance"]) for r in pooled]
    entries = [entry_name(*k) for k in keys]
    cells: dict[str, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault(r["task"], {})[entry_name(r["model"], r["guidance"])] = _ci_row(r)
    groups = [BarGroup(task, task, by_entry) for task, by_entry in cells.items()]
    svg = grouped_bars_svg(groups, entries, kind="task", fills=_fills(keys), css_class="agent-bars")
    return f"<div style='overflow-x:auto'>{svg}</div>" if svg else ""


def _differences_tables(differences: Sequence[dict]) -> str:
    pairs: dict[tuple[str, str], list[dict]] = {}
    for d in differences:
        pairs.setdefault((d["a"], d["b"]), []).append(d)
    out = []
    for (a, b), rows in pairs.items():
        out.append(f"<h4>{esc(a)} − {esc(b)}</h4><table class='agent-differences' data-a='{esc(a)}' data-b='{esc(b)}'>"
                   "<tr><th>task</th><th>pairs</th><th>Δ success<br><small>[95% bootstrap CI]</small></th>"
                   "<th>better</th></tr>")
        for d in sorted(rows, key=lambda d: (d["task"] != "(all)", d["task"])):
            better = a if d["ci_low"] > 0 else b if d["ci_high"] < 0 else ""
            highlight = " class='better'" if better else ""
            out.append(f"<tr data-task='{esc(d['task'])}'><td>{esc(d['task'])}</td><td>{d['pairs']}</td>"
                       f"<td{highlight}>{d['difference']:+.3f} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]</td>"
                       f"<td>{esc(better)}</td></tr>")
        out.append("</table>")
    return "".join(out)


def _animation_figure(a: Animation) -> str:
    outcome = (f"success in {a.steps} steps" if a.success else f"fail: died at step {a.steps}" if a.died
               else f"fail: not in {a.steps} steps")
    name = entry_name(a.model, a.guidance)
    src = "data:image/gif;base64," + base64.b64encode(a.gif).decode()
    return (f"<figure class='rollout' data-model='{esc(a.model)}' data-task='{esc(a.task)}' "
            "style='display:inline-block;vertical-align:top;margin:0 1em 1em 0'>"
            f"<img src='{src}' alt='{esc(name)} on {esc(a.task)}' style='width:{a.size[0] * GIF_SCALE}px;"
            f"height:{a.size[1] * GIF_SCALE}px;image-rendering:pixelated'>"
            f"<figcaption><b>{esc(name)}</b><br>{esc(a.task)}: <span class='outcome'>{esc(outcome)}</span><br>"
            f"<small>world {a.world_seed}; {a.frames} frames: one every {a.stride} steps and the last "
            f"(at most {GIF_FRAMES})</small></figcaption></figure>")


_LEGEND = ("<p>Success: the target achievement unlocked within T steps; rates with Wilson 95% intervals over "
           "the episodes. <span style='background:#d4f0d4;font-weight:bold'>Green</span>: the goal source with the "
           "best pooled success rate (the scripted ceiling aside), only where its interval lies wholly above the "
           "unconditional floor's. Chart: a colour per goal source, lighter for smaller λ; the scripted ceiling "
           f"<span style='color:{CEILING_FILL}'>■</span> black, the unconditional floor "
           f"<span style='color:{FLOOR_FILL}'>■</span> grey.</p>")


def agent_report_section(table: pa.Table, animations: Sequence[Animation] = (),
                         differences: Sequence[dict] = ()) -> str:
    """The agent-success section (HTML, no page around it): ``table`` one run's episodes
    (:data:`~goalcraft.evaluation.agent_success.AGENT_SUCCESS_SCHEMA`), ``animations`` one per model and
    task, ``differences`` rows of :func:`~goalcraft.evaluation.agent_success.paired_difference`."""
    summary = summarize(table)
    pooled = _ordered([r for r in summary if r["task"] == "(all)"])
    rows = [r for r in summary if r["task"] != "(all)"]
    records = table.select(["run_id", "timestamp", "world_seed", "max_steps", "policy"]).to_pylist()
    parts = ["<h2>Agent success</h2>"]
    if records:
        first = records[0]
        parts.append(f"<p>Run {esc(first['run_id'])}, {esc(first['timestamp'])}: {len({r['task'] for r in rows})} tasks, "
                     f"{len({r['world_seed'] for r in records})} world seeds, T = {first['max_steps']} steps; policy "
                     f"<code>{esc((first['policy'] or '')[:12])}</code>.</p>")
    parts += [_LEGEND, "<h3>Pooled over tasks</h3>", _pooled_table(pooled)]
    chart = _chart(rows, pooled)
    if chart:
        parts.append("<h3>Success rate per task (Wilson 95% CI whiskers)</h3>" + chart)
    if differences:
        parts.append("<h3>Paired differences in success (same task and world; green: the 95% CI excludes 0)</h3>"
                     + _differences_tables(differences))
    if animations:
        parts.append("<h3>Rollouts: one episode per model and task (the first world seed; guided sources at the "
                     "largest λ)</h3>")
        for task in dict.fromkeys(a.task for a in animations):
            parts.append(f"<h4>{esc(task)}</h4><div>"
                         + "".join(_animation_figure(a) for a in animations if a.task == task) + "</div>")
    return "\n".join(parts)


def render_agent_report(table: pa.Table, animations: Sequence[Animation] = (), differences: Sequence[dict] = ()) -> str:
    """The agent-success report as a page (:func:`agent_report_section`)."""
    run_id = table.column("run_id")[0].as_py() if table.num_rows else ""
    return "\n".join([f"<!doctype html><html><head><meta charset='utf-8'><title>goalcraft agent success {esc(run_id)}"
                      f"</title><style>{_STYLE}</style></head><body>",
                      agent_report_section(table, animations, differences), "</body></html>"])
