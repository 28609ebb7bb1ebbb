"""The agent-success report from hand-made runs with known success counts: the pooled table's rates
and Wilson bounds (computed here independently), the highlight, the chart's bar heights and
whiskers, the paired differences, and the rollout GIFs decoded back."""

from __future__ import annotations

import base64
import io
import math
import re

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from goalcraft.evaluation.agent_report import (
    GIF_FRAMES,
    Animation,
    gif_stride,
    render_agent_report,
    rollout_animation,
    rollout_gif,
)
from goalcraft.evaluation.agent_success import AGENT_SUCCESS_SCHEMA, paired_difference
from goalcraft.evaluation.rollouts import RolloutRequest, RolloutResult

TASKS = ("collect_wood", "place_table")


def _wilson(k, n):
    """The Wilson score interval written out from its textbook form (z = 1.96)."""
    z, p = 1.959964, k / n
    centre = (2 * n * p + z ** 2) / (2 * (n + z ** 2))
    half = z * math.sqrt(n * p * (1 - p) + z ** 2 / 4) / (n + z ** 2)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def _table(wins):
    """``wins``: (model, λ) → successes per task, out of 20 worlds each; a success takes 10 steps and
    unlocks one other achievement, a failure runs out the 50 steps."""
    rows = []
    for (model, guidance), per_task in wins.items():
        for task, k in zip(TASKS, per_task):
            for world in range(20):
                win = world < k
                rows.append({"run_id": "r1", "timestamp": "2025-01-01T00:00:00Z", "model": model, "task": task,
                             "instruction": task, "guidance": guidance, "world_seed": 100 + world, "episode": world,
                             "success": win, "steps": 10 if win else 50,
                             "achievements": [task, "collect_sapling"] if win else [], "off_target": int(win),
                             "died": False, "max_steps": 50, "policy": "abc123"})
    return pa.Table.from_pylist(rows, schema=AGENT_SUCCESS_SCHEMA)


WINS = {("oracle_visual", 0.0): (5, 3), ("oracle_visual", 3.0): (20, 12), ("unconditional", 0.0): (2, 0),
        ("scripted", None): (20, 20)}


def _pooled_rows(page):
    """(model, guidance) → (highlighted, cell texts) of the pooled table."""
    table = re.search(r"<table class='agent-pooled'>.*?</table>", page).group(0)
    out = {}
    for attrs, body in re.findall(r"<tr (data-model=[^>]*)>(.*?)</tr>", table):
        model = re.search(r"data-model='([^']+)'", attrs).group(1)
        guidance = re.search(r"data-guidance='([^']+)'", attrs).group(1)
        out[(model, guidance)] = ("class='better'" in attrs, re.findall(r"<td[^>]*>(.*?)</td>", body))
    return out


def test_pooled_table_rates_wilson_bounds_steps_and_off_target():
    rows = _pooled_rows(render_agent_report(_table(WINS)))
    assert set(rows) == {("oracle_visual", "0.0"), ("oracle_visual", "3.0"), ("unconditional", "0.0"),
                         ("scripted", "None")}
    for (model, guidance), per_task in WINS.items():
        k = sum(per_task)
        p, low, high = _wilson(k, 40)
        _, cells = rows[(model, str(guidance))]
        assert cells[2:5] == ["40", str(k), f"{p:.3f} [{low:.3f}, {high:.3f}]"]
        assert cells[5] == ("10.000" if k else "–") and cells[6] == f"{k / 40:.3f}"
    assert rows[("scripted", "None")][1][:2] == ["scripted (ceiling)", "–"]
    assert rows[("unconditional", "0.0")][1][0] == "unconditional (floor)"


def test_the_best_source_is_highlighted_only_where_its_ci_clears_the_floor():
    rows = _pooled_rows(render_agent_report(_table(WINS)))
    # oracle λ=3: 32/40, [0.652, 0.895], above the floor's 2/40, [0.014, 0.165]; the ceiling is never highlighted.
    assert [key for key, (better, _) in rows.items() if better] == [("oracle_visual", "3.0")]
    close = {("oracle_visual", 3.0): (3, 2), ("unconditional", 0.0): (2, 0), ("scripted", None): (20, 20)}
    # 5/40 [0.055, 0.261] overlaps 2/40 [0.014, 0.165]: nothing is highlighted.
    assert not any(better for better, _ in _pooled_rows(render_agent_report(_table(close))).values())
    floorless = {("oracle_visual", 3.0): (20, 20), ("scripted", None): (20, 20)}
    assert not any(better for better, _ in _pooled_rows(render_agent_report(_table(floorless))).values())


def _svg(page):
    return re.search(r"<svg class='agent-bars'.*?</svg>", page).group(0)


def test_chart_bar_heights_whiskers_task_labels_and_distinct_floor_and_ceiling():
    svg = _svg(render_agent_report(_table(WINS)))
    top, bottom, ymin, ymax = (float(re.search(rf"data-{k}='([^']+)'", svg).group(1))
                               for k in ("top", "bottom", "ymin", "ymax"))
    assert (ymin, ymax) == (0.0, 1.0)

    def y(v):
        return bottom - v * (bottom - top)

    bars = {(e, t): (float(h), fill) for e, t, h, fill in re.findall(
        r"<rect class='bar' data-entry='([^']+)' data-task='([^']+)' data-value='[^']+' x='[^']+' y='[^']+' "
        r"width='[^']+' height='([^']+)' fill='([^']+)'", svg)}
    entry_of = dict(zip(WINS, ["oracle_visual λ=0", "oracle_visual λ=3", "unconditional (floor)", "scripted (ceiling)"]))
    entries = list(entry_of.values())
    assert set(bars) == {(e, t) for e in entries for t in TASKS}
    assert bars[("unconditional (floor)", "place_table")][0] == 0.0  # 0/20
    assert bars[("oracle_visual λ=3", "collect_wood")][0] == pytest.approx(bottom - top)  # 20/20
    assert bars[("oracle_visual λ=3", "place_table")][0] == pytest.approx(0.6 * (bottom - top), abs=0.01)  # 12/20
    whiskers = {(e, t): (float(a), float(b)) for e, t, a, b in re.findall(
        r"<line class='ci' data-entry='([^']+)' data-task='([^']+)' x1='[^']+' x2='[^']+' y1='([^']+)' y2='([^']+)'",
        svg)}
    for (model, guidance), per_task in WINS.items():
        for task, k in zip(TASKS, per_task):
            _, low, high = _wilson(k, 20)
            assert whiskers[(entry_of[(model, guidance)], task)] == pytest.approx((y(low), y(high)), abs=0.01)
    fills = {e: bars[(e, "collect_wood")][1] for e in entries}
    assert len(set(fills.values())) == 4  # every (model, λ) its own colour
    assert fills["scripted (ceiling)"] == "#222222" and fills["unconditional (floor)"] == "#b0b0b0"
    assert re.findall(r"<text class='group-label'[^>]*>([^<]+)</text>", svg) == list(TASKS)
    assert all(f">{e}</text>" in svg for e in entries)  # the legend


def test_paired_differences_pooled_and_per_task():
    wins = {("goal_predictor", 3.0): (20, 10), ("mineclip_prior_sampled", 3.0): (0, 10)}
    table = _table(wins)
    diffs = paired_difference(table, ("goal_predictor", 3.0), ("mineclip_prior_sampled", 3.0), n_boot=200)
    page = render_agent_report(table, differences=diffs)
    block = re.search(r"<table class='agent-differences' data-a='goal_predictor@3.0' "
                      r"data-b='mineclip_prior_sampled@3.0'>.*?</table>", page).group(0)
    rows = {t: re.findall(r"<td[^>]*>(.*?)</td>", body) for t, body in re.findall(r"<tr data-task='([^']+)'>(.*?)</tr>", block)}
    assert list(rows) == ["(all)", "collect_wood", "place_table"]
    assert rows["collect_wood"][:3] == ["collect_wood", "20", "+1.000 [1.000, 1.000]"]
    assert rows["collect_wood"][3] == "goal_predictor@3.0"  # its CI excludes 0
    pooled = next(d for d in diffs if d["task"] == "(all)")
    assert rows["(all)"][2] == f"+0.500 [{pooled['ci_low']:.3f}, {pooled['ci_high']:.3f}]"
    assert rows["place_table"][2:] == ["+0.000 [0.000, 0.000]", ""]  # no difference: no verdict
    assert "<td class='better'>+1.000" in block and "<td class='better'>+0.000" not in block


def _colours(n):
    return [(40 * i, 255 - 40 * i, 100) for i in range(n)]


def test_rollout_gif_decodes_to_the_frames():
    frames = np.stack([np.full((40, 64, 3), c, np.uint8) for c in _colours(5)])
    frames[:, :2, :3] = 0  # a corner, to check that upscaling is nearest, not smoothed
    for scale in (1, 3):
        with Image.open(io.BytesIO(rollout_gif(frames, scale=scale))) as gif:
            assert gif.n_frames == 5 and gif.size == (64 * scale, 40 * scale) and gif.info["loop"] == 0
            for i, colour in enumerate(_colours(5)):
                gif.seek(i)
                rgb = np.asarray(gif.convert("RGB"))
                assert tuple(rgb[20 * scale, 33 * scale]) == colour and (rgb[:2 * scale, :3 * scale] == 0).all()
                assert tuple(rgb[2 * scale, 3 * scale]) == colour
    with pytest.raises(ValueError, match="frames"):
        rollout_gif(np.zeros((0, 40, 64, 3), np.uint8))


def test_gif_stride_caps_the_frames():
    for max_steps in (1, 20, 73, 74, 150, 300, 1000):
        k = gif_stride(max_steps)
        # What run_rollouts keeps: observation 0, every k-th, and the last.
        kept = max(1 + steps // k + (steps % k > 0) for steps in range(1, max_steps + 1))
        assert k >= 2 and kept <= GIF_FRAMES
    assert gif_stride(20) == 2 and gif_stride(150) == 3


def test_animations_embedded_with_their_captions():
    frames = np.stack([np.full((40, 64, 3), c, np.uint8) for c in _colours(4)])
    won = RolloutResult(RolloutRequest(101, "collect_wood", 50), True, 6, ("collect_wood",), False, frames)
    lost = RolloutResult(RolloutRequest(101, "place_table", 50), False, 50, (), False, frames[:2])
    animations = [rollout_animation("oracle_visual", 3.0, "collect_wood", won, 2),
                  rollout_animation("scripted", None, "place_table", lost, 2)]
    assert isinstance(animations[0], Animation) and animations[0].frames == 4
    page = render_agent_report(_table(WINS), animations)
    figures = re.findall(r"<figure class='rollout'.*?</figure>", page)
    assert len(figures) == 2
    gifs = re.findall(r"<img src='data:image/gif;base64,([^']+)'", page)
    with Image.open(io.BytesIO(base64.b64decode(gifs[0]))) as gif:
        assert gif.n_frames == 4 and gif.size == (64, 40)
    assert "style='width:192px;height:120px;image-rendering:pixelated'" in figures[0]  # shown 3x, sharp
    assert "<b>oracle_visual λ=3</b><br>collect_wood: <span class='outcome'>success in 6 steps</span>" in figures[0]
    assert "4 frames: one every 2 steps and the last (at most 75)" in figures[0]
    assert "<b>scripted (ceiling)</b><br>place_table: <span class='outcome'>fail: not in 50 steps" in figures[1]
    with pytest.raises(ValueError, match="not recorded"):
        rollout_animation("x", None, "collect_wood", RolloutResult(won.request, True, 6, (), False), 2)
