"""Goal-space training: the loss and metrics on known answers, learning on real Crafter clips,
checkpoints, bitwise resume, and the best checkpoint reloading to its logged validation loss."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import pytest
import torch

from goalcraft.data.clip_stage import ClipStageSettings, build_clip_partition
from goalcraft.data.manifest import read_manifests
from goalcraft.data.trials import scan_trials
from goalcraft.data.windows import WindowRules
from goalcraft.models.checkpoints import load_state_dict_file
from goalcraft.models.mineclip import MINECLIP_CONFIGS, load_mineclip
from goalcraft.storage import StoragePaths
from goalcraft.training.data import ClipBatches, caption_to_task, task_caption_map
from goalcraft.training.goal_space import (
    GOAL_SPACE_TRAINING,
    contrastive_loss,
    evaluate_goal_space,
    retrieval_metrics,
    train_goal_space,
)

TINY = MINECLIP_CONFIGS["tiny"]


# --- loss and metrics on known answers --------------------------------------------------------


def test_contrastive_loss_matches_the_formula():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0], [-1.0, 3.0]])
    index = torch.tensor([0, 0, 1])  # clips 0 and 1 share caption 0
    lsm_rows = torch.log_softmax(logits, dim=1)
    v2t = -(lsm_rows[0, 0] + lsm_rows[1, 0] + lsm_rows[2, 1]) / 3
    lsm_cols = torch.log_softmax(logits.T, dim=1)
    t2v = -(0.5 * (lsm_cols[0, 0] + lsm_cols[0, 1]) + lsm_cols[1, 2]) / 2
    assert float(contrastive_loss(logits, index)) == pytest.approx(float(0.5 * (v2t + t2v)), abs=1e-6)


def test_clips_sharing_a_caption_are_not_negatives():
    # Two clips of caption 0, one of caption 1, perfectly separated.
    logits = (50.0 * torch.tensor([[1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])).requires_grad_()
    loss = contrastive_loss(logits, torch.tensor([0, 0, 1]))
    # Video→text is solved (0); text→video of caption 0 is at its minimum, the entropy of a target
    # spread over its two clips (log 2); caption 1 is solved. Mean of directions: log 2 / 4.
    assert float(loss.detach()) == pytest.approx(math.log(2) / 4, abs=1e-6)
    loss.backward()
    # Nothing pushes the two clips of caption 0 apart: the gradient vanishes.
    assert float(logits.grad.abs().max()) < 1e-6
    # Plain InfoNCE over the 3x3 matrix (caption repeated per clip) would keep pushing them apart.
    naive = torch.cat([logits.detach(), logits.detach()[:, :1]], dim=1)[:, [0, 2, 1]].requires_grad_()
    plain = 0.5 * (torch.nn.functional.cross_entropy(naive, torch.arange(3))
                   + torch.nn.functional.cross_entropy(naive.T, torch.arange(3)))
    plain.backward()
    assert float(plain.detach()) > math.log(2) / 2 and float(naive.grad.abs().max()) > 0.1


def test_retrieval_metrics_and_chance_levels():
    # 4 clips with captions [0, 0, 1, 2]; scores[clip, caption].
    index = torch.tensor([0, 0, 1, 2])
    scores = torch.tensor([
        [0.5, 0.0, 0.9],
        [0.1, 0.0, 0.8],
        [0.9, 0.7, 0.0],   # caption 0 ranks clip 2 first (a miss), then clip 0 (hit at 2)
        [0.0, 0.9, 0.1],   # caption 1 ranks clip 3 first (miss), clip 2 second (hit at 2)
    ])                     # caption 2 ranks clip 0, clip 1, clip 3: a hit only at 3
    m = retrieval_metrics(scores, index, ks=(1, 2, 3, 5))
    assert m["top1"] == pytest.approx(0.0)
    assert m["top2"] == pytest.approx(2 / 3)
    assert m["top3"] == pytest.approx(1.0)
    assert m["top5"] == pytest.approx(1.0)  # k beyond the set size: everything is retrieved
    # Random ranking: caption 0 has 2 of 4 clips, captions 1 and 2 one each.
    assert m["chance_top1"] == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3)
    assert m["chance_top2"] == pytest.approx(((1 - 1 / 6) + (1 - 3 / 6) + (1 - 3 / 6)) / 3)
    assert m["chance_top5"] == pytest.approx(1.0)


def test_presets_name_real_configs_and_valid_arguments():
    params = inspect.signature(train_goal_space).parameters
    assert set(GOAL_SPACE_TRAINING) == {"tiny-cpu", "vitb16-gpu"}
    for name, preset in GOAL_SPACE_TRAINING.items():
        assert preset.model in MINECLIP_CONFIGS
        assert set(preset.training_kwargs()) <= set(params), name
    assert GOAL_SPACE_TRAINING["vitb16-gpu"].precision == "bf16"
    assert GOAL_SPACE_TRAINING["vitb16-gpu"].device == "cuda"
    assert GOAL_SPACE_TRAINING["tiny-cpu"].training_kwargs(steps=3)["steps"] == 3
    with pytest.raises(TypeError, match="not preset fields"):
        GOAL_SPACE_TRAINING["tiny-cpu"].training_kwargs(step=3)
    # The settings accept exactly the preset names.
    from typing import get_args

    from goalcraft.config import GoalSpaceSettings

    assert set(get_args(GoalSpaceSettings.model_fields["preset"].annotation)) == set(GOAL_SPACE_TRAINING)


# --- training on Crafter clip shards ------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(crafter_corpus, tmp_path_factory) -> list[Path]:
    storage = StoragePaths(tmp_path_factory.mktemp("clips"))
    videos, _ = read_manifests([crafter_corpus / "manifest.jsonl"], crafter_corpus)
    trials, _ = scan_trials(crafter_corpus / "trials", crafter_corpus)
    settings = ClipStageSettings(rules=WindowRules(), trial_window_s=3.2, shard_target_bytes=2_000_000)
    build_clip_partition("p0000", videos, trials, crafter_corpus, storage, settings)
    return sorted(storage.clip_partition_dir("p0000").glob("*.tar"))


@pytest.fixture(scope="module")
def caption_map(crafter_corpus):
    table = task_caption_map(crafter_corpus / "tasks.json")
    return lambda caption: caption_to_task(caption, table)


# The learning run: tiny MineCLIP, 4 of 16 frames with temporal jitter, demo-sized batches, in-memory clips.
LEARN = dict(steps=150, batch_size=16, lr=1e-3, seed=0, val_fraction=0.2, eval_every=25, frames=4, jitter=True,
             cache=True, warmup_steps=5)


@pytest.fixture(scope="module")
def trained(shards, caption_map, tmp_path_factory):
    out = tmp_path_factory.mktemp("goal_space")
    records = []
    result = train_goal_space(shards, TINY, out, caption_map=caption_map, log=records.append, **LEARN)
    return result, [r for r in records if r["event"] == "eval"]  # progress records: see test_progress_lines


@pytest.mark.slow  # the shared `trained` fixture is a 20-30 s training run
def test_training_lowers_validation_loss_and_aligns_clips_with_captions(trained, shards, caption_map):
    """The session corpus (50 clips: 39 train, 11 validation) is too small for held-out retrieval:
    on it even nearest-neighbour retrieval in pixel space is at chance, so retrieval above chance on
    validation is asserted on the demo-sized corpus (the slow test below). Here: validation loss
    falls, and the trained model retrieves its training clips far above chance."""
    result, records = trained
    history = result.history
    assert [h["step"] for h in history] == list(range(0, LEARN["steps"] + 1, LEARN["eval_every"]))
    assert [r["step"] for r in records] == [h["step"] for h in history]
    first = history[0]
    assert math.isnan(first["train_loss"]) and all(math.isfinite(h["train_loss"]) for h in history[1:])
    # Known facts of the validation set: 11 clips of 6 task captions; top-1 chance is the mean of
    # n_c / 11 over the 6 captions, and the n_c sum to 11.
    assert (first["val_clips"], first["val_captions"]) == (11, 6)
    assert first["chance_top1"] == pytest.approx(1 / 6)
    assert all(0 <= h["top1"] <= h["top5"] <= 1 for h in history)
    # Validation loss: the best checkpoint well below step 0 (measured: 2.55 -> 1.88).
    assert result.best_val_loss < first["val_loss"] - 0.4, history
    assert result.best_step > 0
    # The training loss falls too.
    assert history[-1]["train_loss"] < history[1]["train_loss"] - 0.3, history
    # Video–text alignment: text→video retrieval among the 39 training clips (11 captions).
    model = load_mineclip(result.last_dir)
    train = ClipBatches(shards, batch_size=16, split="train", frames=LEARN["frames"], caption_map=caption_map)
    fit = evaluate_goal_space(model, train)
    assert (fit["val_clips"], fit["val_captions"]) == (39, 11)
    assert fit["top1"] >= fit["chance_top1"] + 0.4, fit
    assert fit["top5"] >= fit["chance_top5"] + 0.4, fit


@pytest.mark.slow
def test_held_out_retrieval_beats_chance_on_the_demo_corpus(tmp_path):
    """The demo corpus (seed 0, ~120 clips, the one `goalcraft demo` builds): after 150 steps,
    text→video retrieval of validation clips (26 clips, 12 task captions) is above chance.
    Measured on 3 seeds: final top-5 0.33-0.41 above chance, top-1 0.08-0.42 above."""
    from goalcraft.crafter.corpus import generate_crafter_corpus

    corpus = tmp_path / "corpus"
    generate_crafter_corpus(corpus, seed=0)
    storage = StoragePaths(tmp_path / "data")
    videos, _ = read_manifests([corpus / "manifest.jsonl"], corpus)
    trials, _ = scan_trials(corpus / "trials", corpus)
    build_clip_partition("p0000", videos, trials, corpus, storage, ClipStageSettings(shard_target_bytes=5_000_000))
    shards = sorted(storage.clip_partition_dir("p0000").glob("*.tar"))
    table = task_caption_map(corpus / "tasks.json")
    result = train_goal_space(shards, TINY, tmp_path / "run", caption_map=lambda c: caption_to_task(c, table),
                              tensorboard=False, **LEARN)
    history = result.history
    assert (history[0]["val_clips"], history[0]["val_captions"]) == (26, 12)
    assert result.best_val_loss < history[0]["val_loss"] - 1.0, history
    final = history[-1]
    assert final["top5"] >= final["chance_top5"] + 0.2, history
    assert final["top1"] > final["chance_top1"], history
    later = [h for h in history if h["step"] >= 50]
    assert sum(h["top5"] - h["chance_top5"] for h in later) / len(later) >= 0.15, history
    assert sum(h["top1"] - h["chance_top1"] for h in later) / len(later) >= 0.05, history


@pytest.mark.slow  # the shared `trained` fixture is a 20-30 s training run
def test_checkpoints_and_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, _ = trained
    for d in (result.last_dir, result.best_dir):
        assert {p.name for p in d.iterdir()} >= {"model.safetensors", "config.json"}
    state = torch.load(result.last_dir / "trainer_state.pt", weights_only=True)  # plain data only
    assert state["step"] == LEARN["steps"] and state["best_step"] == result.best_step
    assert len(state["history"]) == len(result.history)
    assert not [p for p in result.out_dir.rglob("*") if ".staging" in p.name or ".tmp-" in p.name]
    events = EventAccumulator(str(result.tensorboard_dir))
    events.Reload()
    assert [e.step for e in events.Scalars("val/loss")] == [h["step"] for h in result.history]
    assert len(events.Scalars("train/loss")) == LEARN["steps"]


@pytest.mark.slow  # the shared `trained` fixture is a 20-30 s training run
def test_best_checkpoint_reloads_to_its_logged_validation_loss(trained, shards, caption_map):
    result, _ = trained
    best_json = json.loads((result.best_dir / "best.json").read_text())
    assert best_json["step"] == result.best_step
    logged = next(h for h in result.history if h["step"] == result.best_step)
    assert logged["val_loss"] == min(h["val_loss"] for h in result.history) == result.best_val_loss
    model = load_mineclip(result.best_dir)
    val = ClipBatches(shards, batch_size=8, split="val", val_fraction=LEARN["val_fraction"], frames=LEARN["frames"],
                      caption_map=caption_map)
    again = evaluate_goal_space(model, val, chunk=5)  # other chunking, no cache: same numbers
    assert again["val_loss"] == pytest.approx(logged["val_loss"], abs=1e-5)
    assert again["top1"] == logged["top1"] and again["top5"] == logged["top5"]


# --- resume --------------------------------------------------------------------------------------

QUICK = dict(batch_size=8, lr=2e-3, seed=1, eval_every=3, frames=2, cache=True, warmup_steps=2)


def _weights(d: Path) -> dict[str, torch.Tensor]:
    return load_state_dict_file(d / "model.safetensors")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _strip(history):
    """History without wall-clock times, NaN (no train loss at step 0) made comparable."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in h.items() if k != "seconds"}
            for h in history]


@pytest.mark.slow
def test_resume_gives_bitwise_the_uninterrupted_run(shards, caption_map, tmp_path):
    n, k = 9, 3
    whole = train_goal_space(shards, TINY, tmp_path / "whole", steps=n, caption_map=caption_map, **QUICK)
    reference = _weights(whole.last_dir)

    # A run of k steps, then the same call asked for n: continues from last/.
    split = tmp_path / "split"
    first = train_goal_space(shards, TINY, split, steps=k, caption_map=caption_map, **QUICK)
    assert first.resumed_from is None and not _same(_weights(first.last_dir), reference)
    second = train_goal_space(shards, TINY, split, steps=n, caption_map=caption_map, **QUICK)
    assert second.resumed_from == k
    assert _same(_weights(second.last_dir), reference)
    assert _same(_weights(second.best_dir), _weights(whole.best_dir))
    assert _strip(second.history) == _strip(whole.history)
    a = torch.load(second.last_dir / "trainer_state.pt", weights_only=True)
    b = torch.load(whole.last_dir / "trainer_state.pt", weights_only=True)
    for pid, slots in b["optimizer"]["state"].items():
        assert all(torch.equal(slots[s], a["optimizer"]["state"][pid][s]) for s in slots)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])

    # A run that crashes after its step-6 checkpoint, resumed: the same again.
    crashed = tmp_path / "crashed"

    def crash(record):
        if record["event"] == "eval" and record["step"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_goal_space(shards, TINY, crashed, steps=n, caption_map=caption_map, log=crash, **QUICK)
    resumed = train_goal_space(shards, TINY, crashed, steps=n, caption_map=caption_map, **QUICK)
    assert resumed.resumed_from == 6
    assert _same(_weights(resumed.last_dir), reference)

    # Already done: nothing to train. Changed settings: refused, not silently mixed.
    again = train_goal_space(shards, TINY, split, steps=n, caption_map=caption_map, **QUICK)
    assert again.resumed_from == n and _same(_weights(again.last_dir), reference)
    with pytest.raises(ValueError, match="batch_size"):
        train_goal_space(shards, TINY, split, steps=n + 3, caption_map=caption_map, **{**QUICK, "batch_size": 4})
    fresh = train_goal_space(shards, TINY, split, steps=k, caption_map=caption_map, resume=False, **QUICK)
    assert fresh.resumed_from is None and _same(_weights(fresh.last_dir), _weights(first.last_dir))


def test_progress_lines_are_printed_by_default(shards, caption_map, tmp_path, capsys):
    """Without ``log`` each evaluation prints one line: step, train loss (NaN before training),
    validation loss and retrieval with its chance level, as in the history."""
    result = train_goal_space(shards, TINY, tmp_path, steps=4, caption_map=caption_map, tensorboard=False,
                              **{**QUICK, "eval_every": 2})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" train_loss ")[0] for line in lines] == [f"goal space: step {s}/4" for s in (0, 2, 4)]
    for line, h in zip(lines, result.history):
        assert (f"train_loss {h['train_loss']:.4g} val_loss {h['val_loss']:.4g} top1 {h['top1']:.4g} "
                f"(chance {h['chance_top1']:.2g}) top5 {h['top5']:.4g} (chance {h['chance_top5']:.2g})") in line, line
    assert "train_loss nan" in lines[0]


@pytest.mark.slow
def test_streamed_prefetched_bf16_run(shards, caption_map, tmp_path):
    """Streaming with parallel decoding and prefetch trains bitwise like streaming without; bf16
    autocast (the GPU preset's precision, here on the CPU) trains to finite losses."""
    common = dict(QUICK, cache=False, steps=4, eval_every=2)
    plain = train_goal_space(shards, TINY, tmp_path / "plain", caption_map=caption_map, tensorboard=False, **common)
    fast = train_goal_space(shards, TINY, tmp_path / "fast", caption_map=caption_map, tensorboard=False,
                            decode_workers=2, **common)
    assert _same(_weights(plain.last_dir), _weights(fast.last_dir))
    assert _strip(plain.history) == _strip(fast.history)
    bf16 = train_goal_space(shards, TINY, tmp_path / "bf16", caption_map=caption_map, tensorboard=False,
                            precision="bf16", **{**common, "steps": 2})
    assert all(math.isfinite(h["val_loss"]) for h in bf16.history) and math.isfinite(bf16.history[-1]["train_loss"])
    with pytest.raises(ValueError, match="cache"):  # another data order: not a resume
        train_goal_space(shards, TINY, tmp_path / "plain", caption_map=caption_map, tensorboard=False,
                         **{**common, "cache": True, "steps": 6})


def test_goal_space_data_leaves_out_test_sources_and_adds_the_others_goal_clips(tmp_path):
    """Real shards and indexes: clips of sources in the test split (by the goal clips' by-source split)
    are left out of the goal space's data; goal clips of the other sources are added under "goal/"."""
    import pyarrow as pa

    from goalcraft.config import SplitSettings
    from goalcraft.data.splits import source_splits
    from goalcraft.stages.training import goal_space_data
    from goalcraft.storage import StoragePaths, write_parquet_atomic
    from goalcraft.training.data import ClipBatches, shard_keys

    paths = StoragePaths(tmp_path)
    sources = [f"vid{i}" for i in range(8)]
    frames = {f"f{j:02d}.jpg": _jpeg() for j in range(16)}

    def write(folder, keys_sources, caption):
        import tarfile, io
        folder.mkdir(parents=True)
        with tarfile.open(folder / "p0000-00000.tar", "w") as tar:
            for key, _ in keys_sources:
                for name, data in {**frames, "txt": caption.encode()}.items():
                    info = tarfile.TarInfo(f"{key}.{name}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        write_parquet_atomic(pa.table({"key": [k for k, _ in keys_sources], "source_id": [s for _, s in keys_sources]}),
                             folder / "p0000-00000.parquet")

    # Each source: one narrated clip and two goal clips; the same keys in both stages.
    write(paths.clips_dir / "p0000", [(f"{s}-00000", s) for s in sources], "chop a tree")
    write(paths.goals_dir / "p0000", [(f"{s}-{i:05d}", s) for s in sources for i in range(2)], "chop a tree")
    data = goal_space_data(paths, SplitSettings(val_fraction=0.25, test_fraction=0.25))
    expected = source_splits([s for s in sources for _ in range(2)], val_fraction=0.25, test_fraction=0.25)
    test = sorted(s for s, k in expected.items() if k == "test")
    assert list(data.test_sources) == test and len(test) >= 1
    batches = ClipBatches(data.shards, batch_size=2, split="all", exclude=data.exclude, key_prefix=data.key_prefix)
    kept = set(batches.keys)
    kept_sources = {k.removeprefix("goal/").rsplit("-", 1)[0] for k in kept}
    assert kept_sources == set(sources) - set(test)
    assert len(kept) == 3 * (len(sources) - len(test))  # 1 clip + 2 goal clips per remaining source
    assert {k for k in kept if k.startswith("goal/")} == {f"goal/{s}-{i:05d}" for s in kept_sources for i in range(2)}
    assert len(list(shard_keys(data.shards[0]))) == len(sources)  # the shards themselves are untouched
    # train_on = "goal_clips": the goal clips alone, the same sources left out.
    goal_only = goal_space_data(paths, SplitSettings(val_fraction=0.25, test_fraction=0.25), goal_clips_only=True)
    assert goal_only.shards == paths.goal_shards() and goal_only.test_sources == data.test_sources
    only = set(ClipBatches(goal_only.shards, batch_size=2, split="all", exclude=goal_only.exclude,
                           key_prefix=goal_only.key_prefix).keys)
    assert only == {k for k in kept if k.startswith("goal/")}


def _jpeg() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.zeros((160, 256, 3), np.uint8)).save(out, format="JPEG")
    return out.getvalue()
