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


def make_config(data_root: Path, corpus_root: Path, count: int = 2, **clips):
    return config_from_dict(
        {"paths": {"data_root": str(data_root), "corpus_root": str(corpus_root)},
         "partitions": {"count": count}, "clips": clips},
        data_root,
    )


SYNTHETIC_TASKS = {
    "collect_wood": ("chop a tree", ["gather wood", "cut down a tree"]),
    "collect_dirt": ("dig some dirt", ["collect dirt", "get dirt"]),
    "go_swimming": ("go swimming", ["swim in the water", "take a swim"]),
    "open_inventory": ("open inventory", ["look in your inventory", "show the inventory"]),
}


def synthetic_goal_table(n_per_task: int = 10, *, dim: int = 24, frames: int = 16, seed: int = 0):
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


def synthetic_tasks_file(path):
    """A Crafter-style tasks.json for the synthetic tasks (instruction + paraphrases)."""
    import json

    path.write_text(json.dumps({t: {"instruction": i, "paraphrases": p} for t, (i, p) in SYNTHETIC_TASKS.items()}))
    return path
