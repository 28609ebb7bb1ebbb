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
