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
    from goalcraft.data.crafter_corpus import generate_crafter_corpus

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
