"""Dagster resources: the corpus to read, where outputs go, and each stage's settings.

The settings classes live in goalcraft.config (no Dagster there); :func:`dagster_config` derives the
Dagster config schema of each from the class itself, so no field or default is declared twice and a
resource's value IS the settings object the plain functions take. goalcraft.definitions builds the
resources from goalcraft.toml; the UI launchpad can override any of them for a run, and the assets
and the sensor read the same resources.
"""

import functools
import typing
from pathlib import Path

import dagster as dg
from pydantic import BaseModel, Field, create_model

from goalcraft.config import (
    AgentSettings,
    ClipsSettings,
    EvaluationSettings,
    GoalSpaceSettings,
    GoalsSettings,
    PathsSettings,
    PolicySettings,
    PredictorRLSettings,
    PredictorSettings,
    PriorSettings,
    SplitSettings,
)
from goalcraft.data.clip_stage import ClipStageSettings
from goalcraft.data.task_vocabulary import load_keywords
from goalcraft.storage import StoragePaths


def _model_of(annotation: typing.Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


@functools.cache
def dagster_config(settings: type[BaseModel]) -> type[dg.Config]:
    """A ``dg.Config`` subclass of a settings class: same fields, defaults and validators; nested
    settings (and lists of them) become their own derived classes, as Dagster's schema needs."""
    overrides: dict[str, typing.Any] = {}
    for name, info in settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if (nested := _model_of(info.annotation)) is not None:
            derived = dagster_config(nested)
            overrides[name] = (derived, Field(default_factory=lambda d=default, c=derived: c(**d.model_dump())))
        elif typing.get_origin(info.annotation) is list and (nested := _model_of(typing.get_args(info.annotation)[0])):
            # Dagster wants plain values as list defaults; pydantic validates them into the class.
            overrides[name] = (list[dagster_config(nested)],
                               Field(default_factory=lambda d=default: [x.model_dump() for x in d]))
    return create_model(f"{settings.__name__}Config", __base__=(settings, dg.Config), __doc__=settings.__doc__,
                        __module__=__name__, **overrides)


def as_config(settings: BaseModel) -> dg.Config:
    """A settings object as the value of a resource field (its :func:`dagster_config` class)."""
    return dagster_config(type(settings))(**settings.model_dump())


class StorageResource(dg.ConfigurableResource):
    """The data root under which every stage writes (layout in goalcraft.storage)."""

    data_root: str

    @property
    def paths(self) -> StoragePaths:
        return StoragePaths(Path(self.data_root))


class CorpusResource(dg.ConfigurableResource):
    """The input corpus: manifests of narrated videos and a folder of agent trials (``[paths]``)."""

    paths: dagster_config(PathsSettings) = dagster_config(PathsSettings)()  # type: ignore[valid-type]

    @property
    def root(self) -> Path:
        return self.paths.corpus_path

    @property
    def manifest_paths(self) -> list[Path]:
        return [self.root / m for m in self.paths.manifests]

    @property
    def trials_path(self) -> Path:
        return self.root / self.paths.trials_dir


class ClipStageResource(dg.ConfigurableResource):
    """Window rules, shard size, JPEG quality and decoder for the clip stage (``[clips]``)."""

    clips: dagster_config(ClipsSettings) = dagster_config(ClipsSettings)()  # type: ignore[valid-type]

    def settings(self, corpus_root: Path) -> ClipStageSettings:
        keywords = load_keywords(corpus_root / self.clips.keywords_file) if self.clips.keywords_file else ()
        return ClipStageSettings.from_config(self.clips, keywords)


class GoalsResource(dg.ConfigurableResource):
    """Task vocabularies and rating files for the goal stage (``[goals]``)."""

    goals: dagster_config(GoalsSettings) = dagster_config(GoalsSettings)()  # type: ignore[valid-type]


class TrainingResource(dg.ConfigurableResource):
    """Goal-space, prior and predictor training, the goal-clip split, and the evaluation settings."""

    goal_space: dagster_config(GoalSpaceSettings) = dagster_config(GoalSpaceSettings)()  # type: ignore[valid-type]
    prior: dagster_config(PriorSettings) = dagster_config(PriorSettings)()  # type: ignore[valid-type]
    predictor: dagster_config(PredictorSettings) = dagster_config(PredictorSettings)()  # type: ignore[valid-type]
    splits: dagster_config(SplitSettings) = dagster_config(SplitSettings)()  # type: ignore[valid-type]
    evaluation: dagster_config(EvaluationSettings) = dagster_config(EvaluationSettings)()  # type: ignore[valid-type]


class AgentResource(dg.ConfigurableResource):
    """The goal-conditioned policy's training (``[policy]``), the agent-success evaluation (``[agent]``)
    and the predictor's REINFORCE fine-tuning (``[predictor_rl]``)."""

    policy: dagster_config(PolicySettings) = dagster_config(PolicySettings)()  # type: ignore[valid-type]
    agent: dagster_config(AgentSettings) = dagster_config(AgentSettings)()  # type: ignore[valid-type]
    predictor_rl: dagster_config(PredictorRLSettings) = dagster_config(PredictorRLSettings)()  # type: ignore[valid-type]
