"""Shared fixtures: a small Crafter corpus, generated once per test session (real game frames,
real H.264 video, real transcripts and trial folders), and corpora derived from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from goalcraft.config import config_from_dict

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def crafter_corpus(tmp_path_factory) -> Path:
    from goalcraft.crafter.corpus import generate_crafter_corpus

    root = tmp_path_factory.mktemp("crafter") / "corpus"
    generate_crafter_corpus(root, seed=3, n_videos=3, steps_per_video=150, n_trials=2, n_steve1_episodes=1)
    return root


@pytest.fixture
def corpus_copy(crafter_corpus, tmp_path) -> Path:
    """A private, writable copy of the session corpus, for tests that damage it."""
    root = tmp_path / "corpus"
    shutil.copytree(crafter_corpus, root)
    return root


def _make_config(data_root: Path, corpus_root: Path, count: int = 2, **clips):
    return config_from_dict(
        {"paths": {"data_root": str(data_root), "corpus_root": str(corpus_root)},
         "partitions": {"count": count}, "clips": clips},
        data_root,
    )


def _same_outputs(a: Path, b: Path) -> list[str]:
    """Every file under ``a`` and ``b`` (same names): shards, parquet and other files byte for byte,
    JSON records equal but for the wall time they record (``seconds``). Returns the names compared."""
    import filecmp
    import json

    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    for name in names:
        if name.endswith(".json"):
            left, right = (json.loads((root / name).read_text()) for root in (a, b))
            for record in (left, right):
                record.pop("seconds", None)
            assert left == right, name
        else:
            assert filecmp.cmp(a / name, b / name, shallow=False), name
    return names


@pytest.fixture(scope="session")
def same_outputs():
    """``same_outputs(a, b)``: assert two output folders hold the same files (see _same_outputs)."""
    return _same_outputs


@pytest.fixture(scope="session")
def make_config():
    """``make_config(data_root, corpus_root, count=2, **clips)``: settings for a corpus and data root."""
    return _make_config


SYNTHETIC_TASKS = {
    "collect_wood": ("chop a tree", ["gather wood", "cut down a tree"]),
    "collect_dirt": ("dig some dirt", ["collect dirt", "get dirt"]),
    "go_swimming": ("go swimming", ["swim in the water", "take a swim"]),
    "open_inventory": ("open inventory", ["look in your inventory", "show the inventory"]),
}


def _synthetic_goal_table(n_per_task: int = 10, *, dim: int = 24, frames: int = 16, seed: int = 0):
    """A goal-embeddings table (as the goal_embeddings asset writes it) with a known structure: every
    goal = a shared offset + its task's direction + noise, its per-frame features a noisy copy of the
    goal per frame, so a model that reads the instruction can predict the goal."""
    import numpy as np
    import pyarrow as pa

    from goalcraft.data.embeddings import embedding_table

    rng = np.random.default_rng(seed)
    shared = rng.normal(size=dim) * 3.0
    directions = {t: rng.normal(size=dim) for t in SYNTHETIC_TASKS}
    rows, goals, feats = [], {}, {}
    for t, (instruction, _) in SYNTHETIC_TASKS.items():
        for k in range(n_per_task):
            key = f"{t}-{k:05d}"
            goal = shared + directions[t] + 0.3 * rng.normal(size=dim)
            goals[key] = goal.astype(np.float32)
            feats[key] = (goal[None, :] + 0.3 * rng.normal(size=(frames, dim))).astype(np.float32)
            rows.append({"key": key, "shard": "p0000-00000", "source": "trial", "source_id": key, "miner": "trial",
                         "task": t, "instruction": instruction, "caption": instruction})
    return embedding_table(pa.Table.from_pylist(rows), goals, feats)


def _synthetic_tasks_file(path):
    """A Crafter-style tasks.json for the synthetic tasks (instruction + paraphrases)."""
    import json

    path.write_text(json.dumps({t: {"instruction": i, "paraphrases": p} for t, (i, p) in SYNTHETIC_TASKS.items()}))
    return path


# Fixtures rather than imports of this file: conftest is pytest's, not a module for tests to import.
@pytest.fixture(scope="session")
def synthetic_tasks() -> dict:
    """task -> (instruction, paraphrases) of the synthetic goal table."""
    return SYNTHETIC_TASKS


@pytest.fixture(scope="session")
def synthetic_goal_table():
    """``synthetic_goal_table(n_per_task=10, *, dim=24, frames=16, seed=0)`` (see _synthetic_goal_table)."""
    return _synthetic_goal_table


@pytest.fixture(scope="session")
def synthetic_tasks_file():
    """``synthetic_tasks_file(path)``: write the synthetic tasks as a Crafter-style tasks.json."""
    return _synthetic_tasks_file


@pytest.fixture(scope="session")
def toy_evaluation():
    """Constructed goal models with known answers for evaluation runs and reports: ``models`` (one that
    puts every task on its own axis, one collapsed), the ``instruction_set`` and held-out ``clips``."""
    import types

    import numpy as np

    from goalcraft.evaluation.instructions import InstructionSet, InstructionTask
    from goalcraft.evaluation.run import GoalModelUnderTest, HeldOutClips

    TASKS = ("wood", "dirt", "swim")
    SET = InstructionSet("toy", tuple(InstructionTask(t, (f"{t} a", f"{t} b")) for t in TASKS))
    AXES = {t: np.eye(4)[i] for i, t in enumerate(TASKS)}


    def _task_of(text: str) -> str:
        return text.split()[0]


    def _separating(texts, seed):  # every task its own axis: tasks fully apart, paraphrases identical
        return np.stack([AXES[_task_of(t)] * 5.0 for t in texts])


    def _collapsed(texts, seed):  # one goal for everything; sampled mode adds seeded noise
        z = np.tile(np.array([1.0, 1.0, 1.0, 1.0]), (len(texts), 1))
        if seed is not None:
            z = z + np.random.default_rng(seed).normal(scale=0.01, size=z.shape)
        return z


    MODELS = [GoalModelUnderTest("separating", _separating, checkpoints={"w": "a"}),
              GoalModelUnderTest("collapsed", _collapsed, checkpoints={"w": "b"}, stochastic=True)]
    CLIPS = HeldOutClips(["k0", "k1", "k2", "k3"], ["wood", "wood", "dirt", "swim"],
                         np.stack([AXES["wood"], AXES["wood"] * 2, AXES["dirt"], AXES["swim"]]))
    return types.SimpleNamespace(models=MODELS, instruction_set=SET, clips=CLIPS, axes=AXES)


# --------------------------------------------------------------------------------------------------
# A corpus in the layouts of a user's own STEVE-1 evaluation framework (konder/aimc): evaluation result
# folders (result.json + trial_<i>.mp4 or report PNG frames) and recorded samples (PNG frames +
# trial_info.json + visual_embeds.pkl). Every frame is one flat colour that encodes its index, so a
# clip cut from it says which frames it holds.

AIMC_RESULT = "evaluation/quick_test_20251121_214545/combat_pig_en_20251121_214600"
AIMC_OLD_RESULT = "evaluation/old/baseline_20251120_100000/harvest_1_log_zh_auto_20251120_100500"
AIMC_SAMPLES = "train_samples"


def aimc_colour(k: int) -> tuple[int, int, int]:
    return (8 * k) % 256, 255 - (8 * k) % 256, 100


def aimc_frames(n: int, height: int = 360, width: int = 640):
    import numpy as np

    return [np.full((height, width, 3), aimc_colour(k), np.uint8) for k in range(n)]


def write_png_frames(folder, n: int, height: int = 320, width: int = 640):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(aimc_frames(n, height, width)):
        Image.fromarray(frame).save(folder / f"step_{k:04d}.png")
    return folder


def write_aimc_result(folder, task: str, instruction: str, trials: list[dict], *, language: str = "en",
                      videos: dict[int, int] | None = None, reports: dict[int, int] | None = None):
    """``result.json`` as aimc's evaluation framework writes it, with ``trial_<i>.mp4`` of ``videos[i]``
    frames (640x360, 20 fps) and report frame folders of ``reports[i]`` frames."""
    import json

    from goalcraft.data.video_writer import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for index, n in (videos or {}).items():
        write_video(folder / f"trial_{index}.mp4", aimc_frames(n), 20)
    for index, n in (reports or {}).items():
        write_png_frames(folder / f"report_{task}_trial{index}" / "frames", n)
    successes = [t for t in trials if isinstance(t, dict) and t.get("success") is True]
    result = {"task_id": task, "language": language, "instruction": instruction,
              "success_rate": len(successes) / max(1, len(trials)),
              "avg_steps": sum(t["steps"] for t in successes) / max(1, len(successes)), "avg_time": 1.0,
              "trials": trials}
    (folder / "result.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    (folder / "result.txt").write_text("human-readable summary\n", encoding="utf-8")
    return folder


def write_recorded_sample(folder, task: str, instruction: str, *, success: bool, steps: int, frames: int,
                          embed=None):
    """``<task>/trial<N>/`` as aimc's record_samples writes it."""
    import json
    import pickle

    write_png_frames(folder / "frames", frames)
    info = {"task_id": task, "instruction": instruction, "success": success, "steps": steps, "time_seconds": 3.5}
    (folder / "trial_info.json").write_text(json.dumps(info), encoding="utf-8")
    (folder / "actions.json").write_text("[]", encoding="utf-8")
    if embed is not None:
        (folder / "visual_embeds.pkl").write_bytes(pickle.dumps(embed))
    return folder


def _aimc_corpus(root):
    import json

    import numpy as np

    write_aimc_result(root / AIMC_RESULT, "combat_pig", "hunt pig", [
        {"trial_idx": 1, "success": True, "steps": 24, "time_seconds": 3.1, "has_video": True},
        {"trial_idx": 2, "success": False, "steps": 30, "time_seconds": 4.0, "has_video": True},
        {"trial_idx": 3, "success": True, "steps": 20, "time_seconds": 2.2, "has_video": False},
    ], videos={1: 24, 2: 30}, reports={3: 20})
    write_aimc_result(root / AIMC_OLD_RESULT, "harvest_1_log", "砍树获取原木", [
        {"trial_idx": 1, "success": True, "steps": 18, "time_seconds": 2.0, "has_video": True},
    ], language="zh_auto", videos={1: 18})
    samples = root / AIMC_SAMPLES / "harvest_1_dirt"
    write_recorded_sample(samples / "trial1", "harvest_1_dirt", "dig dirt", success=True, steps=22, frames=22,
                          embed=np.linspace(-1, 1, 512, dtype=np.float32))
    write_recorded_sample(samples / "trial2", "harvest_1_dirt", "dig dirt", success=False, steps=17, frames=17)
    (samples / "result.json").write_text(json.dumps({"task_id": "harvest_1_dirt", "instruction": "dig dirt",
                                                     "trials": []}), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def aimc_corpus_master(tmp_path_factory):
    return _aimc_corpus(tmp_path_factory.mktemp("aimc") / "corpus")


@pytest.fixture
def aimc_corpus(aimc_corpus_master, tmp_path):
    """A private copy of a corpus in aimc's layouts (see the constants above): results under
    ``evaluation/`` (combat_pig: trial 1 succeeds at step 24 with an mp4, 2 fails, 3 succeeds at step 20
    with report frames only; harvest_1_log: trial 1 at step 18) and recorded samples under
    ``train_samples/harvest_1_dirt/`` (trial1 succeeds at step 22 with visual_embeds.pkl, trial2 fails)."""
    root = tmp_path / "corpus"
    shutil.copytree(aimc_corpus_master, root)
    return root


@pytest.fixture(scope="session")
def aimc():
    """The aimc-layout builders: ``aimc.result``, ``aimc.sample``, ``aimc.png_frames``, ``aimc.colour``
    and the folder constants ``RESULT``, ``OLD_RESULT``, ``SAMPLES``."""
    import types

    return types.SimpleNamespace(result=write_aimc_result, sample=write_recorded_sample, png_frames=write_png_frames,
                                 colour=aimc_colour, RESULT=AIMC_RESULT, OLD_RESULT=AIMC_OLD_RESULT,
                                 SAMPLES=AIMC_SAMPLES)


# --------------------------------------------------------------------------------------------------
# The user's own models in their original file formats: MineCLIP's attn.pth ({"state_dict":
# {"model.<key>": tensor}} with the alias copies) and STEVE-1's steve1_prior.pt (a plain TranslatorVAE
# state dict), at a small size (MineCLIP's "demo" architecture: 512-d like the real one; a prior with
# 64 hidden units and a 16-d latent).

USER_PRIOR_SIZES = {"input_dim": 512, "hidden_dim": 64, "latent_dim": 16}


@pytest.fixture(scope="session")
def user_models(tmp_path_factory):
    """``mineclip`` (attn.pth), ``prior`` (steve1_prior.pt), ``config`` (the MINECLIP_CONFIGS name)."""
    import types

    import torch

    from goalcraft.models.mineclip import MINECLIP_CONFIGS, MineCLIP, reference_state_dict
    from goalcraft.models.prior import PriorConfig, TranslatorVAE

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save({"state_dict": reference_state_dict(MineCLIP(MINECLIP_CONFIGS["demo"]))}, folder / "attn.pth")
    torch.manual_seed(1)
    torch.save(TranslatorVAE(PriorConfig(**USER_PRIOR_SIZES)).state_dict(), folder / "steve1_prior.pt")
    return types.SimpleNamespace(mineclip=folder / "attn.pth", prior=folder / "steve1_prior.pt", config="demo",
                                 prior_sizes=USER_PRIOR_SIZES)
