"""Dagster resources: the corpus to read, where outputs go, and the clip-stage settings.

Each is built from goalcraft.toml by goalcraft.definitions and can be overridden in the UI launchpad.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from goalcraft.config import ClipsConfig, EvaluationConfig, GoalSpaceConfig, PredictorSettings, PriorTrainingConfig, SuccessConfig
from goalcraft.data.clip_stage import ClipStageSettings
from goalcraft.data.task_vocabulary import load_keywords
from goalcraft.storage import StoragePaths


class StorageResource(dg.ConfigurableResource):
    """The data root under which every stage writes (layout in goalcraft.storage)."""

    data_root: str

    @property
    def paths(self) -> StoragePaths:
        return StoragePaths(Path(self.data_root))


class CorpusResource(dg.ConfigurableResource):
    """The input corpus: manifests of narrated videos and a folder of agent trials."""

    corpus_root: str
    manifests: list[str] = ["manifest.jsonl"]
    trials_dir: str = "trials"

    @property
    def root(self) -> Path:
        return Path(self.corpus_root)

    @property
    def manifest_paths(self) -> list[Path]:
        return [self.root / m for m in self.manifests]

    @property
    def trials_path(self) -> Path:
        return self.root / self.trials_dir


class ClipStageResource(dg.ConfigurableResource):
    """Window rules, shard size, JPEG quality and decoder for the clip stage."""

    clips: ClipsConfig = ClipsConfig()

    def settings(self, corpus_root: Path) -> ClipStageSettings:
        keywords = load_keywords(corpus_root / self.clips.keywords_file) if self.clips.keywords_file else ()
        return ClipStageSettings.from_config(self.clips, keywords)


class MiningResource(dg.ConfigurableResource):
    """Task vocabularies and rating files for success mining."""

    success: SuccessConfig = SuccessConfig()


class TrainingResource(dg.ConfigurableResource):
    """Goal-space (MineCLIP) and prior training settings, and the device embeddings run on."""

    goal_space: GoalSpaceConfig = GoalSpaceConfig()
    prior: PriorTrainingConfig = PriorTrainingConfig()
    predictor: PredictorSettings = PredictorSettings()
    evaluation: EvaluationConfig = EvaluationConfig()
