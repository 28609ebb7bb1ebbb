"""goalcraft's settings: one TOML file, or the defaults that run the embedded Crafter demo.

Where the settings come from, first match wins:
1. the file named by the ``GOALCRAFT_CONFIG`` environment variable;
2. ``goalcraft.toml`` in the current directory;
3. built-in defaults: the demo corpus under ``./goalcraft_data``.

Relative paths in a file are taken relative to that file's folder, so a config can live beside its
corpus. The sections are Dagster ``Config`` models, so the same schema is what the resources show in
the UI launchpad. docs/configuration.md lists every key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Optional

import dagster as dg
from pydantic import ValidationError

from goalcraft.pipelines.gpu import GpuExecution
from goalcraft.pipelines.schedules import AutomationConfig

CONFIG_ENV_VAR = "GOALCRAFT_CONFIG"
DEFAULT_CONFIG_NAME = "goalcraft.toml"

from goalcraft.formats import CLIP_FRAMES, CLIP_HEIGHT, CLIP_WIDTH


class PathsConfig(dg.Config):
    """Where the corpus is read from and where every output is written."""

    data_root: str = "goalcraft_data"
    # Empty means ``<data_root>/demo_corpus``, where ``goalcraft demo`` generates the Crafter corpus.
    corpus_root: str = ""
    # Manifest files, relative to corpus_root (JSONL, or JSON lists).
    manifests: list[str] = ["manifest.jsonl"]
    # Folder of agent trial recordings, relative to corpus_root; one subfolder per trial.
    trials_dir: str = "trials"

    @property
    def corpus_path(self) -> Path:
        return Path(self.corpus_root) if self.corpus_root else Path(self.data_root) / "demo_corpus"


class PartitionsConfig(dg.Config):
    # Videos and trials are hashed into this many partitions. For a 730K-video corpus use ~256
    # (~2,850 videos a partition); the demo corpus needs only a few.
    count: int = 4


class ClipsConfig(dg.Config):
    """Clip-stage rules (docs/data-formats.md, "Clip windows")."""

    min_window_s: float = 2.0
    max_window_s: float = 8.0
    overlap: Literal["trim", "merge", "keep"] = "trim"
    # Optional task vocabulary for the keyword filter: a text file (one phrase a line) or a JSON
    # file (a list of phrases, or a tasks.json mapping), relative to corpus_root.
    keywords_file: Optional[str] = None
    drop_bracketed: bool = True
    # Agent trials have no narration: they are tiled into windows of this length, captioned with
    # their instruction.
    trial_window_s: float = 3.2
    shard_target_bytes: int = 1_000_000_000
    jpeg_quality: int = 90
    decoder: Literal["auto", "decord", "pyav"] = "auto"


class SuccessConfig(dg.Config):
    """Success mining (docs/data-formats.md, "Goal clips")."""

    # Task vocabularies, relative to corpus_root: a tasks.json ({task: {instruction, paraphrases,
    # narration}}), MineDojo task YAML files, or folders of MineStudio task configs.
    task_files: list[str] = ["tasks.json"]
    # Add STEVE-1's 11 evaluation prompts (with paraphrases) to the vocabulary.
    steve1_prompts: bool = True
    # Folder of MineStudio-style VLM rating files (vlm_rating_res/*.json), relative to corpus_root.
    ratings_dir: Optional[str] = None
    rating_threshold: float = 8.0


class GoalSpaceConfig(dg.Config):
    """Training the MineCLIP goal space on the clip shards, and embedding with it."""

    preset: Literal["tiny-cpu", "vitb16-gpu"] = "tiny-cpu"
    seed: int = 0
    steps: Optional[int] = None  # overrides the preset's step count
    device: str = "cpu"
    embed_batch_size: int = 32


class PriorTrainingConfig(dg.Config):
    """Training STEVE-1's CVAE prior on (instruction text embedding, goal embedding) pairs."""

    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    beta: float = 0.01
    seed: int = 0


class PredictorSettings(dg.Config):
    """The goal predictor (issue: instruction → text states → 32 query tokens → aligner → z_goal).

    ``preset`` names a ``goalcraft.models.predictor.PREDICTOR_CONFIGS`` entry; ``backbone`` overrides
    its backbone folder (a local transformers folder, or ``minilm`` for the packaged MiniLM).
    ``launcher``: ``inprocess`` runs training inside the Dagster step (CPU, one GPU); ``torchrun``
    starts ``nproc_per_node`` DDP workers through Dagster Pipes.
    """

    preset: str = "minilm-demo"
    backbone: Optional[str] = None
    aligner: str = "mlp"  # "mlp" (variant A) or "attention" (variant B)
    lora_r: int = 8
    lora_alpha: int = 16
    stage1_epochs: int = 6
    stage1_batch_size: int = 16
    stage1_lr: float = 3e-4
    stage2_epochs: int = 150
    stage2_batch_size: int = 16
    stage2_lr: float = 1e-3
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"  # "bf16" on GPUs
    launcher: str = "inprocess"  # or "torchrun"
    nproc_per_node: int = 1


class EvaluationConfig(dg.Config):
    """Evaluation of the goal models (docs/metrics.md). ``instruction_sets``: ``steve1``, ``corpus``
    (the corpus's tasks.json), or task files / folders relative to corpus_root (MineDojo YAML,
    MineStudio folders, tasks.json-style files)."""

    instruction_sets: list[str] = ["steve1", "corpus"]
    n_boot: int = 1000
    seed: int = 0
    prior_seeds: list[int] = [0, 1, 2]  # the stochastic prior is also evaluated sampled, per seed
    examples_per_set: int = 4


class GoalcraftConfig(dg.Config):
    paths: PathsConfig = PathsConfig()
    partitions: PartitionsConfig = PartitionsConfig()
    clips: ClipsConfig = ClipsConfig()
    success: SuccessConfig = SuccessConfig()
    goal_space: GoalSpaceConfig = GoalSpaceConfig()
    prior: PriorTrainingConfig = PriorTrainingConfig()
    predictor: PredictorSettings = PredictorSettings()
    gpu: GpuExecution = GpuExecution()
    evaluation: EvaluationConfig = EvaluationConfig()
    automation: AutomationConfig = AutomationConfig()
    source: str = "defaults"


class ConfigError(ValueError):
    """The settings file is unreadable, or holds a key or value goalcraft does not accept."""


_SECTIONS: dict[str, type[dg.Config]] = {
    "paths": PathsConfig, "partitions": PartitionsConfig, "clips": ClipsConfig, "success": SuccessConfig,
    "goal_space": GoalSpaceConfig, "prior": PriorTrainingConfig, "predictor": PredictorSettings,
    "gpu": GpuExecution, "evaluation": EvaluationConfig,
    "automation": AutomationConfig,
}


def _absolute(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def config_from_dict(raw: dict[str, Any], base: Path, source: str = "defaults") -> GoalcraftConfig:
    """Validate a settings mapping (as read from TOML); relative roots resolve against ``base``."""
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s) in {source}: {', '.join(unknown)}; known: {', '.join(_SECTIONS)}")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        values = dict(raw.get(name, {}))
        extra = sorted(set(values) - set(cls.model_fields))
        if extra:
            raise ConfigError(f"unknown key(s) in [{name}] of {source}: {', '.join(extra)}; "
                              f"known: {', '.join(cls.model_fields)}")
        if name == "paths":
            values["data_root"] = _absolute(values.get("data_root", "goalcraft_data"), base)
            if values.get("corpus_root"):
                values["corpus_root"] = _absolute(values["corpus_root"], base)
            if isinstance(values.get("manifests"), str):
                values["manifests"] = [values["manifests"]]
        try:
            sections[name] = cls(**values)
        except ValidationError as exc:
            raise ConfigError(f"invalid value in [{name}] of {source}: {exc}") from exc
    if sections["partitions"].count < 1:
        raise ConfigError(f"[partitions] count must be at least 1 in {source}")
    return GoalcraftConfig(**sections, source=source)


def load_config(path: Path | None = None) -> GoalcraftConfig:
    """Load settings from ``path``, else ``$GOALCRAFT_CONFIG``, else ``./goalcraft.toml``, else defaults."""
    if path is None:
        env = os.environ.get(CONFIG_ENV_VAR)
        if env:
            path = Path(env)
        elif Path(DEFAULT_CONFIG_NAME).is_file():
            path = Path(DEFAULT_CONFIG_NAME)
    if path is None:
        return config_from_dict({}, Path.cwd())
    path = Path(path).expanduser().resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return config_from_dict(raw, path.parent, source=str(path))
