"""goalcraft's settings: one typed tree, read from one TOML file, shared by the CLI, the code and Dagster.

Where the settings come from, first match wins:
1. the file named by the ``GOALCRAFT_CONFIG`` environment variable;
2. ``goalcraft.toml`` in the current directory;
3. built-in defaults: the demo corpus under ``./goalcraft_data``.

Each TOML section is one settings class below (``[predictor.stage1]`` is :class:`Stage1Settings`),
and the plain functions take those objects. Every default is written once, here; values are
validated when the file loads (closed sets are literals, sizes and rates must be positive). Dagster
resources carry the same objects (goalcraft.resources derives their config schema from these
classes), so a launchpad override reaches assets and sensors alike.

This module imports neither Dagster nor goalcraft's pipelines: the model and data layers may use it.
Relative paths in a file are taken relative to that file's folder. docs/configuration.md lists every
key.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from goalcraft.formats import CLIP_FRAMES, CLIP_HEIGHT, CLIP_WIDTH, MINECRAFT_FPS  # noqa: F401  (re-exported)

CONFIG_ENV_VAR = "GOALCRAFT_CONFIG"
DEFAULT_CONFIG_NAME = "goalcraft.toml"

Device = Optional[str]  # "cpu", "cuda", "cuda:1"; None: the preset's or the machine's choice
Precision = Literal["fp32", "bf16"]


class Settings(BaseModel):
    """Base of every settings section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsSettings(Settings):
    """Where the corpus is read from and where every output is written."""

    data_root: str = "goalcraft_data"
    # Empty means ``<data_root>/demo_corpus``, where ``goalcraft demo`` generates the Crafter corpus.
    corpus_root: str = ""
    # Manifest files, relative to corpus_root (JSONL, or JSON lists). [] for a corpus of trials only.
    manifests: list[str] = ["manifest.jsonl"]
    # Folder of agent trial recordings, relative to corpus_root; one subfolder per trial.
    trials_dir: str = "trials"
    # Folders of STEVE-1 evaluation results (konder/aimc: <set>_<ts>/<task>_<lang>_<ts>/result.json
    # with trial_<i>.mp4 or report frames), searched at any depth; relative to corpus_root.
    steve1_results_dirs: list[str] = []
    # Folders of recorded samples (<task>/trial<N>/ with frames/step_NNNN.png and trial_info.json),
    # relative to corpus_root.
    recorded_samples_dirs: list[str] = []

    @property
    def corpus_path(self) -> Path:
        return Path(self.corpus_root) if self.corpus_root else Path(self.data_root) / "demo_corpus"


class PartitionsSettings(Settings):
    # Videos and trials are hashed into this many partitions. For a 730K-video corpus use ~256
    # (~2,850 videos a partition); the demo corpus needs only a few.
    count: PositiveInt = 4


class ClipsSettings(Settings):
    """Clip-stage rules (docs/data-formats.md, "Clip windows")."""

    min_window_s: PositiveFloat = 2.0
    max_window_s: PositiveFloat = 8.0
    overlap: Literal["trim", "merge", "keep"] = "trim"
    # Optional task vocabulary for the keyword filter: a text file (one phrase a line) or a JSON
    # file (a list of phrases, or a tasks.json mapping), relative to corpus_root.
    keywords_file: Optional[str] = None
    drop_bracketed: bool = True
    # Agent trials have no narration: they are tiled into windows of this length, captioned with
    # their instruction.
    trial_window_s: PositiveFloat = 3.2
    shard_target_bytes: PositiveInt = 1_000_000_000
    jpeg_quality: int = Field(90, ge=1, le=100)
    decoder: Literal["auto", "decord", "pyav"] = "auto"
    # Frame rate of PNG frame-folder sources (step_NNNN.png, as STEVE-1 evaluation tools save
    # episodes), which carry none: Minecraft's tick rate by default.
    frames_fps: PositiveFloat = MINECRAFT_FPS
    # How frames reach 160x256 (goalcraft.data.resize): "ffmpeg-bicubic", "steve1-bilinear" (OpenCV
    # INTER_LINEAR, as STEVE-1 resizes before MineCLIP), "pil-lanczos" (aimc's visual_embeds.pkl), or
    # "auto": steve1-bilinear when [goal_space] mineclip_checkpoint is set, else ffmpeg-bicubic
    # (resolved when the settings load).
    resize: Literal["auto", "ffmpeg-bicubic", "steve1-bilinear", "pil-lanczos"] = "auto"

    @property
    def resize_method(self) -> str:
        """``resize`` with "auto" read as ffmpeg-bicubic (a whole settings file resolves it first)."""
        return "ffmpeg-bicubic" if self.resize == "auto" else self.resize

    @model_validator(mode="after")
    def _window_range(self) -> ClipsSettings:
        if self.max_window_s < self.min_window_s:
            raise ValueError(f"max_window_s ({self.max_window_s}) must be >= min_window_s ({self.min_window_s})")
        return self


class GoalsSettings(Settings):
    """The goal stage: mining success moments and cutting goal clips (docs/data-formats.md, "Goal clips")."""

    # Task vocabularies, relative to corpus_root: a tasks.json ({task: {instruction, paraphrases,
    # narration}}), MineDojo task YAML files, or folders of MineStudio task configs. Loaded once
    # (goalcraft.data.task_vocabulary.load_task_vocabulary) for every stage that needs tasks.
    task_files: list[str] = ["tasks.json"]
    # Add STEVE-1's 11 evaluation prompts (with paraphrases) to the vocabulary.
    steve1_prompts: bool = True
    # Folder of MineStudio-style VLM rating files (vlm_rating_res/*.json), relative to corpus_root.
    ratings_dir: Optional[str] = None
    rating_threshold: float = Field(8.0, ge=0, le=10)
    # Seconds a narrator goes on speaking after the success: a transcript's success moment is placed
    # that long before the end of the speech (goalcraft.data.mining). Measure it where ground truth
    # exists (goal_clips' event_coverage metadata) rather than guess; the study preset's is measured.
    transcript_lag_s: float = Field(0.0, ge=0, le=60)
    # Drop a transcript moment when another task's moment in the same video is this close (seconds):
    # its clip would show two successes (quarantine reason ambiguous_moment). 0 keeps every moment.
    # About the clip's length (1.6 s at 10 fps) plus the lag's spread; goal_clips' event_coverage
    # "purity" measures the effect where ground truth exists.
    exclusive_s: float = Field(0.0, ge=0, le=60)


#: goalcraft.models.mineclip.MINECLIP_CONFIGS names (tests/test_config.py keeps the two lists equal).
MineCLIPConfigName = Literal["vitb16", "demo", "tiny"]


class GoalSpaceSettings(Settings):
    """Training the MineCLIP goal space on the clip shards, and embedding with it; or, with
    ``mineclip_checkpoint``, the real MineCLIP as the goal space (no training)."""

    preset: Literal["tiny-cpu", "vitb16-gpu"] = "tiny-cpu"
    seed: int = 0
    steps: Optional[PositiveInt] = None  # None: the preset's step count
    batch_size: Optional[PositiveInt] = None  # None: the preset's
    # "all_clips": every clip window (captioned by its narration) and goal clip; "goal_clips": only
    # the goal clips, whose captions are their task's instruction (the study's pure trial clips).
    train_on: Literal["all_clips", "goal_clips"] = "all_clips"
    device: Device = None  # None: the preset's device
    embed_batch_size: PositiveInt = 32
    # MineCLIP's released checkpoint (attn.pth, {"state_dict": {"model.<key>": tensor}}): when set it IS
    # the goal space (goal and clip embeddings come from it) and goal_space_model trains nothing.
    # Relative to the settings file's folder.
    mineclip_checkpoint: Optional[str] = None
    # The checkpoint's architecture: "vitb16" is attn.pth's (MineCLIP's "attn" variant at 160x256).
    mineclip_config: MineCLIPConfigName = "vitb16"


class PriorSettings(Settings):
    """Training STEVE-1's CVAE prior on (instruction text embedding, goal embedding) pairs; or, with
    ``checkpoint``, STEVE-1's released prior as the baseline (no training)."""

    epochs: PositiveInt = 60
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 1e-3
    beta: float = Field(0.01, ge=0)
    seed: int = 0
    # STEVE-1's prior (steve1_prior.pt, a plain TranslatorVAE state dict; sizes read from its shapes):
    # when set it IS the baseline and steve1_prior trains nothing. Needs [goal_space]
    # mineclip_checkpoint (it reads the real MineCLIP's text embeddings). Relative to the settings
    # file's folder.
    checkpoint: Optional[str] = None


class TrainRunSettings(Settings):
    """What every predictor training stage shares: its seed, device and numeric precision."""

    seed: int = 0
    device: str = "cpu"
    precision: Precision = "fp32"  # "bf16" on GPUs


class Stage1Settings(TrainRunSettings):
    """``[predictor.stage1]``: text → 32 visual query tokens (InfoNCE + MSE), LoRA on the backbone."""

    epochs: PositiveInt = 6
    batch_size: PositiveInt = 16
    lr: PositiveFloat = 3e-4
    weight_decay: float = Field(0.01, ge=0)
    lora_r: PositiveInt = 8
    lora_alpha: PositiveInt = 16
    temperature: PositiveFloat = 0.07
    mse_weight: float = Field(0.5, ge=0)
    # Epochs between last/ checkpoints (the final epoch always writes); a last/ of the MiniLM predictor
    # with its optimizer state is ~650 MB, so every epoch cost the demo seconds of disk writes.
    checkpoint_every: PositiveInt = 2


class Stage2Settings(TrainRunSettings):
    """``[predictor.stage2]``: the aligner, 32 tokens → z_goal (std-unit MSE + cosine)."""

    # 40: on the demo corpus validation loss is within 7% of a 150-epoch run's best by epoch 17 and
    # stays on that plateau (docs/benchmarks.md, "The demo's time").
    epochs: PositiveInt = 40
    batch_size: PositiveInt = 16
    lr: PositiveFloat = 1e-3
    weight_decay: float = Field(0.01, ge=0)
    cos_weight: float = Field(0.1, ge=0)
    # A contrastive term: each predicted goal against the batch's goal clips in standardised units,
    # positives its own task's clips (goalcraft.training.predictor.task_contrastive_loss).
    contrastive_weight: float = Field(0.0, ge=0)
    temperature: PositiveFloat = 0.1
    checkpoint_every: PositiveInt = 10


class PredictorSettings(Settings):
    """The goal predictor (instruction → text states → 32 query tokens → aligner → z_goal).

    ``preset`` names a ``goalcraft.models.predictor.PREDICTOR_CONFIGS`` entry; ``backbone`` overrides
    its backbone folder (a local transformers folder, or ``minilm`` for the packaged MiniLM).
    ``launcher``: ``inprocess`` trains inside the Dagster step (CPU, one GPU); ``torchrun`` starts
    ``[gpu] nproc_per_node`` DDP workers through Dagster Pipes.
    """

    preset: str = "minilm-demo"
    backbone: Optional[str] = None
    aligner: Literal["mlp", "attention"] = "mlp"  # variant A or B
    launcher: Literal["inprocess", "torchrun"] = "inprocess"
    stage1: Stage1Settings = Stage1Settings()
    stage2: Stage2Settings = Stage2Settings()


class SplitSettings(Settings):
    """The train/val/test split of goal clips, assigned once by source (a video or a trial), so the
    clips of one source never cross splits. Stored in the goal-embeddings table's ``split`` column."""

    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    # The goal clips of the user's own STEVE-1 trials ([paths] steve1_results_dirs,
    # recorded_samples_dirs) take no part in the hash split: "references": all are held-out success
    # visuals of the evaluation (split test); "references_and_training": all also train the prior
    # and the aligner (split train), and still serve as references, marked as trained on.
    steve1_trials: Literal["references", "references_and_training"] = "references"

    @model_validator(mode="after")
    def _sum(self) -> SplitSettings:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"val_fraction + test_fraction must be below 1, got "
                             f"{self.val_fraction} + {self.test_fraction}")
        return self


# --------------------------------------------------------------------------------------------------
# [gpu]

_TOLERATION_OPERATORS = ("Exists", "Equal")
_TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_POOL_NAME = re.compile(r"^[A-Za-z0-9_\-./]+$")
_QUANTITY = re.compile(r"^([+]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = {
    None: Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def parse_quantity(quantity: str | int | float) -> Decimal:
    """A Kubernetes resource quantity ("500m", "8", "32Gi", "1e3") as a number (cores, bytes)."""
    text = str(quantity).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}") from exc
    return number * _SUFFIX[match.group(2)]


class Toleration(Settings):
    """A Kubernetes toleration (``spec.tolerations[]`` of the step pod)."""

    key: Optional[str] = None
    operator: str = "Exists"  # Exists | Equal
    value: Optional[str] = None
    # NoSchedule | PreferNoSchedule | NoExecute; None: all effects. (Plain strings: Dagster's config
    # schema has no optional literals.)
    effect: Optional[str] = None
    toleration_seconds: Optional[int] = None

    @model_validator(mode="after")
    def _check(self) -> Toleration:
        if self.operator not in _TOLERATION_OPERATORS:
            raise ValueError(f"toleration operator must be one of {_TOLERATION_OPERATORS}, got {self.operator!r}")
        if self.effect is not None and self.effect not in _TOLERATION_EFFECTS:
            raise ValueError(f"toleration effect must be one of {_TOLERATION_EFFECTS}, got {self.effect!r}")
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("a toleration with operator 'Exists' takes no value")
        if self.operator == "Equal" and self.key is None:
            raise ValueError("a toleration with operator 'Equal' needs a key")
        return self

    def to_k8s(self) -> dict[str, Any]:
        """The toleration in dagster-k8s's (snake_case) form of ``V1Toleration``."""
        out: dict[str, Any] = {"operator": self.operator}
        for name in ("key", "value", "effect", "toleration_seconds"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def _default_tolerations() -> list[Toleration]:
    # GKE, EKS and AKS GPU node pools taint their nodes nvidia.com/gpu:NoSchedule.
    return [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]


class GpuSettings(Settings):
    """``[gpu]``: where GPU steps run (docs/gpu-execution.md; goalcraft.pipelines.gpu applies it).

    ``cpu``/``memory``/``shm_size`` are Kubernetes quantities ("8", "500m", "32Gi"); for Ray they
    are converted to ``num_cpus`` and bytes. ``pool_limit`` is how many steps of ``pool`` may run at
    once across the deployment (usually: GPUs in the cluster // ``gpus_per_step``).
    """

    target: Literal["inprocess", "k8s", "ray"] = "inprocess"
    pool: str = "gpu"
    pool_limit: PositiveInt = 1
    gpus_per_step: int = Field(1, ge=0)
    # DDP workers per step (torchrun --nproc_per_node); at most gpus_per_step when GPUs are asked for.
    nproc_per_node: PositiveInt = 1
    cpu: Optional[str] = None
    memory: Optional[str] = None
    # --- Kubernetes ---
    # Image for GPU steps only (a CUDA build of torch); None: the run's image.
    image: Optional[str] = None
    namespace: Optional[str] = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=_default_tolerations)
    # Memory-backed /dev/shm for DataLoader workers; None keeps the container runtime's 64 MiB.
    shm_size: Optional[str] = "8Gi"
    # Run launcher settings (the Helm chart's names for a release called "dagster"): the ConfigMap
    # holding the instance's dagster.yaml (<release>-instance), and the pods' service account.
    instance_config_map: str = "dagster-instance"
    service_account_name: str = "dagster"
    # --- Ray ---
    # Ray job-submission address (the dashboard, e.g. http://ray-head:8265); None: $RAY_ADDRESS.
    ray_address: Optional[str] = None
    # Ray runtime_env for every step (pip, working_dir, env_vars, ...).
    ray_runtime_env: dict[str, Any] = Field(default_factory=dict)
    # Custom Ray resources a GPU step asks for, e.g. {"accelerator_type:A100": 0.001}.
    ray_resources: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> GpuSettings:
        if not self.pool or not _POOL_NAME.match(self.pool):
            raise ValueError(f"pool must be a non-empty name of letters, digits and _-./, got {self.pool!r}")
        if self.gpus_per_step and self.nproc_per_node > self.gpus_per_step:
            raise ValueError(f"nproc_per_node ({self.nproc_per_node}) exceeds gpus_per_step ({self.gpus_per_step}): "
                             "each DDP worker needs its own GPU")
        for name in ("cpu", "memory", "shm_size"):
            value = getattr(self, name)
            if value is not None and parse_quantity(value) <= 0:
                raise ValueError(f"{name} must be a positive Kubernetes quantity, got {value!r}")
        return self


class EvaluationSettings(Settings):
    """Evaluation of the goal models (docs/metrics.md). ``instruction_sets``: ``steve1``, ``corpus``
    (the corpus's task vocabulary), or task files / folders relative to corpus_root (MineDojo YAML,
    MineStudio folders, tasks.json-style files)."""

    instruction_sets: list[str] = ["steve1", "corpus"]
    n_boot: PositiveInt = 1000
    seed: int = 0
    # Training replicates of each goal model: the prior and the whole predictor (stage 1 and its aligner)
    # are trained this many times (seeds seed, seed + 1, ...; replicate 0 is the served model), and the evaluation's
    # CIs carry the variance between them. The study run uses 3.
    replicates: PositiveInt = 1
    examples_per_set: int = Field(4, ge=0)
    # Imported success visuals, held-out goal references beside the test split: grouped pickles
    # ({task: {instruction, success_visual_embeds, ...}}) or recorded-samples folders (their
    # visual_embeds.pkl), relative to corpus_root. MineCLIP attn.pth embeddings: they need
    # [goal_space] mineclip_checkpoint.
    success_visuals: list[str] = []


#: How the policy's hindsight goal frames are drawn (goalcraft.training.policy.RELABEL_MODES).
RelabelMode = Literal["segments", "unlocks"]


class PolicySettings(Settings):
    """``[policy]``: the goal-conditioned Crafter policy trained by hindsight relabelling on the
    corpus's trajectories (docs/closed-loop.md; goalcraft.training.policy)."""

    config: Literal["crafter", "tiny"] = "crafter"  # goalcraft.models.policy.POLICY_CONFIGS
    epochs: PositiveInt = 8
    batch_size: PositiveInt = 256
    lr: PositiveFloat = 3e-4
    weight_decay: float = Field(0.01, ge=0)
    seed: int = 0
    val_fraction: float = Field(0.1, gt=0, lt=1)
    # Hindsight goal segments are [gap_low, gap_high) steps long (STEVE-1: [15, 200) MineRL frames;
    # docs/closed-loop.md scales them to Crafter).
    gap_low: int = 15
    gap_high: int = 45
    p_uncond: float = Field(0.1, ge=0, lt=1)  # share of training goals zeroed (classifier-free guidance)
    # "unlocks": hindsight segments end at the episode's unlocks, each kept as an end with probability
    # unlock_keep (STEVE-1's segments after the last one); "segments": STEVE-1's segments throughout.
    # On the study, unlocks did better under the oracle goal than segments (docs/results.md, fifth session).
    relabel: RelabelMode = "unlocks"
    unlock_keep: float = Field(0.3, gt=0, le=1)
    # DAgger (goalcraft.training.dagger): after behaviour cloning, this many rounds of the policy
    # playing dagger_episodes episodes (targets the scripted players pursue, a training goal clip of
    # the target as the goal, guidance dagger_guidance, dagger_max_steps steps) with the scripted
    # player labelling each step; each round retrains on the trajectories plus every labelled episode.
    dagger_rounds: int = Field(0, ge=0)
    dagger_episodes: PositiveInt = 340
    dagger_guidance: float = Field(1.0, ge=0)
    dagger_max_steps: PositiveInt = 300
    # 0: every round trains from scratch for `epochs` (DAgger's aggregate, as Ross et al.); k > 0:
    # rounds 1 on start from the last round's policy and train k epochs on the aggregate (its split
    # kept), so a round costs k epochs, not `epochs` (docs/closed-loop.md).
    dagger_warm_epochs: int = Field(0, ge=0)
    # Rounds 2 on: this share of a round's episodes goes to targets in proportion to their failure
    # rate in the last round, the rest evenly (goalcraft.training.dagger.focus_weights); 0: evenly.
    # On the study, 0.5 did worse than 0 (docs/results.md, thirteenth session): not used there.
    dagger_focus: float = Field(0.0, ge=0, le=1)
    device: str = "cpu"
    # Processes preparing the trajectories (each decodes and embeds a video and replays its actions),
    # a few ahead of the stage, which writes the cache; 0: in the stage's own process.
    workers: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _check_gap(self) -> PolicySettings:
        if not CLIP_FRAMES - 1 <= self.gap_low < self.gap_high:
            raise ValueError(f"need 15 <= gap_low < gap_high, got {self.gap_low}, {self.gap_high}")
        return self


#: The goal sources of agent success (goalcraft.evaluation.agent_success).
AGENT_GOAL_SOURCES = ("oracle_visual", "mineclip_prior_sampled", "mineclip_prior_deterministic", "goal_predictor",
                      "unconditional", "scripted", "goal_predictor_rl")


class AgentSettings(Settings):
    """``[agent]``: agent success of the goal sources (docs/closed-loop.md;
    goalcraft.evaluation.agent_success). ``instruction_set``: one entry as in ``[evaluation]``
    (its tasks that are Crafter achievements are played)."""

    # The defaults are the demo's reduced loop (about a minute on 2 cores); the full
    # evaluation is episodes = 20, guidance = [0, 1, 3, 6], every task (tasks = []), max_steps = 300.
    instruction_set: str = "corpus"
    # A subset of the set's tasks (empty: every task that is a Crafter achievement).
    tasks: list[str] = ["collect_wood", "place_table", "collect_drink", "collect_sapling"]
    episodes: PositiveInt = 4  # world seeds per task, the same for every source and guidance
    max_steps: PositiveInt = 150  # T: the target must unlock within this many steps
    guidance: list[float] = [0.0, 3.0]
    sources: list[str] = list(AGENT_GOAL_SOURCES)  # a subset of AGENT_GOAL_SOURCES
    seed: int = 0
    workers: int = Field(2, ge=0)  # env processes (0: in this process)
    slots: PositiveInt = 16  # episodes played side by side (one policy batch per step)
    n_boot: PositiveInt = 2000

    @model_validator(mode="after")
    def _check_sources(self) -> AgentSettings:
        unknown = [s for s in self.sources if s not in AGENT_GOAL_SOURCES]
        if unknown or not self.sources:
            raise ValueError(f"sources must be some of {', '.join(AGENT_GOAL_SOURCES)}, got {self.sources}")
        return self


class PredictorRLSettings(Settings):
    """``[predictor_rl]``: REINFORCE fine-tuning of a residual head on the goal predictor by agent
    success with the frozen policy (docs/closed-loop.md §5; goalcraft.training.predictor_rl). The
    environment processes and slots are ``[agent]``'s."""

    # The defaults are the demo's reduced loop (4 iterations of 4 episodes per task); a real run wants
    # tens of iterations of 8+ episodes per task.
    tasks: list[str] = []  # empty: [agent] tasks
    iterations: PositiveInt = 4
    episodes_per_task: PositiveInt = 4  # goals drawn per task and iteration: mirrored pairs, so even
    worlds: PositiveInt = 8  # its own world seeds: none a training trajectory's or agent success's
    # The head is judged by agent success, so by default it plays as agent success does: [agent]
    # max_steps, and the largest of [agent] guidance.
    max_steps: PositiveInt | None = None
    guidance: float | None = Field(None, ge=0)
    sigma: PositiveFloat = 0.5  # the Gaussian's std, relative to the goals' RMS coordinate
    # Where the noise lives: "full" goal space, or "goals": the span of the training split's mean goal
    # embedding of each task (the directions the policy's goals differ along), at the same expected
    # squared norm.
    explore: Literal["full", "goals"] = "full"
    lr: PositiveFloat = 1.0  # natural-gradient step: a goal moves by lr·σ·(reward-weighted noise)
    baseline_momentum: float = Field(0.9, ge=0, lt=1)
    off_target_penalty: float = Field(0.0, ge=0)  # reward = success - penalty x off-target achievements
    # From this iteration on, play only the tasks whose episodes so far held both a success and a failure
    # (the others give no informative pair), sharing the iteration's episodes among them; 0: never.
    focus_after: int = Field(0, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check_pairs(self) -> PredictorRLSettings:
        if self.episodes_per_task % 2:
            raise ValueError(f"episodes_per_task must be even (mirrored pairs), got {self.episodes_per_task}")
        return self


DEFAULT_RETRAIN_CRON = "0 3 * * 0"  # Sundays 03:00
class DemoSettings(Settings):
    """``[demo]``: the Crafter corpus ``goalcraft demo`` generates when the corpus is absent
    (goalcraft.crafter.corpus.generate_crafter_corpus). ``video_agent = "varied"`` plays a curriculum
    of errands so every video unlocks many different achievements; ``trial_targets = "study"`` adds
    the harder achievements to the trials' targets."""

    seed: int = Field(0, ge=0)
    videos: int = Field(6, ge=0)
    steps_per_video: PositiveInt = 300
    trials: int = Field(4, ge=0)
    steve1_episodes: int = Field(2, ge=0)
    trial_max_steps: PositiveInt = 250
    video_agent: Literal["free", "varied"] = "free"
    trial_targets: Literal["default", "study"] = "default"
    # "mixed": every other video's transcript is YouTube-style WebVTT auto-captions (the reader's and
    # miner's other path); "json": timed JSON speech for all, whose success moments are precise
    # (docs/results.md measures both against the ground truth).
    transcripts: Literal["mixed", "json"] = "mixed"
    # Steps a trial's target unlock waits after any other unlock (0: none), so the trial's goal clip
    # shows one success, not two (goalcraft.crafter.agent.play_episode's pace; docs/results.md).
    trial_pace_steps: int = Field(0, ge=0)
    # The same for every unlock of a different achievement in the videos: costly (the player dies
    # more and unlocks fewer kinds of achievement; measured in docs/results.md).
    video_pace_steps: int = Field(0, ge=0)
    # Processes playing and encoding episodes (the output does not depend on it); 2 halves the demo's
    # corpus time on a 2-core laptop.
    workers: PositiveInt = 2
    # Exploratory episodes (random walk, mixed scripted + random) for the policy's training data:
    # trajectories/<id>/ in STEVE-1's episode layout, not read by the ingest (docs/closed-loop.md).
    explore_episodes: int = Field(0, ge=0)
    explore_steps: PositiveInt = 300


_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?#L]+$")


class AutomationSettings(Settings):
    """``[automation]``: when re-training runs, and how often the corpus is watched.

    Both automations stay stopped until turned on (docs/automation.md); these settings only say what
    they do once running. The cron expression's shape is checked here; Dagster's cron dialect checks
    it fully when the schedule is built (goalcraft.pipelines.schedules).
    """

    # Cron expression of the re-train + evaluate schedule (5 fields).
    retrain_cron: str = DEFAULT_RETRAIN_CRON
    # IANA timezone the cron expression is read in.
    timezone: str = "UTC"
    # Minimum seconds between two evaluations of the new-inputs sensor.
    watch_interval_s: int = Field(300, ge=1)

    @model_validator(mode="after")
    def _check(self) -> AutomationSettings:
        fields = self.retrain_cron.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ValueError(f"retrain_cron: not a valid cron expression: {self.retrain_cron!r}")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: not an IANA timezone name: {self.timezone!r}") from None
        return self


class GoalcraftConfig(Settings):
    """The whole settings tree; ``source`` says which file it came from ("defaults" when none)."""

    paths: PathsSettings = PathsSettings()
    partitions: PartitionsSettings = PartitionsSettings()
    clips: ClipsSettings = ClipsSettings()
    goals: GoalsSettings = GoalsSettings()
    splits: SplitSettings = SplitSettings()
    goal_space: GoalSpaceSettings = GoalSpaceSettings()
    prior: PriorSettings = PriorSettings()
    predictor: PredictorSettings = PredictorSettings()
    gpu: GpuSettings = GpuSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    automation: AutomationSettings = AutomationSettings()
    demo: DemoSettings = DemoSettings()
    policy: PolicySettings = PolicySettings()
    agent: AgentSettings = AgentSettings()
    predictor_rl: PredictorRLSettings = PredictorRLSettings()
    source: str = "defaults"

    @model_validator(mode="after")
    def _real_models(self) -> GoalcraftConfig:
        real = self.goal_space.mineclip_checkpoint
        if self.prior.checkpoint and not real:
            raise ValueError("[prior] checkpoint (STEVE-1's prior) reads the real MineCLIP's text embeddings: "
                             "set [goal_space] mineclip_checkpoint too")
        if self.evaluation.success_visuals and not real:
            raise ValueError("[evaluation] success_visuals are embeddings of the real MineCLIP: set "
                             "[goal_space] mineclip_checkpoint too")
        if self.clips.resize == "auto":  # STEVE-1's resize for the real MineCLIP, else FFmpeg's
            resolved = "steve1-bilinear" if real else "ffmpeg-bicubic"
            object.__setattr__(self, "clips", self.clips.model_copy(update={"resize": resolved}))
        return self


SECTIONS: tuple[str, ...] = tuple(n for n in GoalcraftConfig.model_fields if n != "source")
#: Sections renamed since earlier releases, so an old file gets a pointed error.
_RENAMED = {"success": "goals"}


class ConfigError(ValueError):
    """The settings file is unreadable, or holds a key or value goalcraft does not accept."""


def _absolute(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _describe(errors: list[dict[str, Any]]) -> str:
    """The problems of one section on one line, each naming its key path as written in TOML."""
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err["loc"][1:]) or "(section)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {where}")
        else:
            parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def config_from_dict(raw: dict[str, Any], base: Path, source: str = "defaults") -> GoalcraftConfig:
    """Validate a settings mapping (as read from TOML); relative roots resolve against ``base``."""
    renamed = sorted(set(raw) & set(_RENAMED))
    if renamed:
        raise ConfigError(f"in {source}: section(s) {', '.join(f'[{r}]' for r in renamed)} renamed to "
                          f"{', '.join(f'[{_RENAMED[r]}]' for r in renamed)}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s) in {source}: {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    raw = {name: dict(values) if isinstance(values, dict) else values for name, values in raw.items()}
    for section, key in (("goal_space", "mineclip_checkpoint"), ("prior", "checkpoint")):
        values = raw.get(section)
        if isinstance(values, dict) and isinstance(values.get(key), str) and values[key]:
            values[key] = _absolute(values[key], base)
    paths = raw.setdefault("paths", {})
    if isinstance(paths, dict):
        paths["data_root"] = _absolute(paths.get("data_root", PathsSettings.model_fields["data_root"].default), base)
        if paths.get("corpus_root"):
            paths["corpus_root"] = _absolute(paths["corpus_root"], base)
        if isinstance(paths.get("manifests"), str):
            paths["manifests"] = [paths["manifests"]]
    for name, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"in {source}: [{name}] must be a table of keys, got {values!r}")
    try:
        return GoalcraftConfig(**raw, source=source)
    except ValidationError as exc:
        # Report the first section with problems (sections in file order), all of its problems.
        errors = exc.errors()
        section = next((n for n in raw if any(e["loc"][:1] == (n,) for e in errors)), None)
        if section is None:  # a rule across sections (GoalcraftConfig's own validator)
            raise ConfigError(f"invalid settings in {source}: "
                              f"{'; '.join(e['msg'].removeprefix('Value error, ') for e in errors)}") from None
        raise ConfigError(f"invalid [{section}] in {source}: "
                          f"{_describe([e for e in errors if e['loc'][:1] == (section,)])}") from None


#: Settings presets shipped with goalcraft (``goalcraft/presets/<name>.toml``), layered under a file.
PRESETS: tuple[str, ...] = ("study",)


def preset_settings(name: str) -> dict[str, Any]:
    """A packaged preset's settings, as read from its TOML file."""
    from importlib import resources

    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return tomllib.loads(resources.files("goalcraft.presets").joinpath(f"{name}.toml").read_text(encoding="utf-8"))


def _layered(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top``'s keys over ``base``'s, table by table."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in top.items():
        out[key] = _layered(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: Path | None = None, preset: str | None = None) -> GoalcraftConfig:
    """Load settings from ``path``, else ``$GOALCRAFT_CONFIG``, else ``./goalcraft.toml``, else defaults;
    with ``preset`` the packaged preset's values come first and the file's override them."""
    base = preset_settings(preset) if preset else {}
    if path is None:
        env = os.environ.get(CONFIG_ENV_VAR)
        if env:
            path = Path(env)
        elif Path(DEFAULT_CONFIG_NAME).is_file():
            path = Path(DEFAULT_CONFIG_NAME)
    if path is None:
        return config_from_dict(base, Path.cwd(), source=f"preset {preset}" if preset else "defaults")
    path = Path(path).expanduser().resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return config_from_dict(_layered(base, raw), path.parent,
                            source=f"{path} over preset {preset}" if preset else str(path))
