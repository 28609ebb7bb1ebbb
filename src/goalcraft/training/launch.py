"""Run one goal-predictor training stage from a JSON spec: in-process, or as torchrun workers under
Dagster Pipes.

The Dagster assets build a :class:`StageSpec` and either call :func:`run_stage` directly (CPU, one GPU)
or start ``torchrun --nproc_per_node N -m goalcraft.training.launch`` through
``dagster.PipesSubprocessClient``. Every worker joins the process group (NCCL on GPUs, gloo on CPU) and
trains its slice of each batch under DistributedDataParallel; rank 0 alone opens the Pipes channel and
reports the materialization (the same metadata the in-process path returns).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from goalcraft.data.splits import require_splits, split_indices

SPEC_ENV_VAR = "GOALCRAFT_STAGE_SPEC"


@dataclass(frozen=True)
class StageSpec:
    """Everything a stage needs, as plain JSON values (it crosses a process boundary)."""

    stage: int  # 1 or 2
    goal_table: str
    out_dir: str
    config: dict[str, Any]  # PredictorConfig fields
    settings: dict[str, Any]  # Stage1Settings / Stage2Settings fields
    tasks_file: str | None = None  # the task vocabulary file: task → paraphrases, used as training phrasings
    stage1_dir: str | None = None  # stage 2 only
    resume: bool | str = "auto"  # see goalcraft.training.run_folder.RunFolder

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StageSpec:
        return cls(**json.loads(text))


def load_variants(vocabulary_file: str | os.PathLike[str] | None) -> dict[str, list[str]]:
    """task → its instruction's paraphrases, for the tasks of the configured task files, from the
    task_vocabulary asset's file (absent: none)."""
    from goalcraft.data.task_vocabulary import TaskVocabulary, read_task_vocabulary

    if not vocabulary_file or not Path(vocabulary_file).is_file():
        return {}
    return TaskVocabulary(read_task_vocabulary(Path(vocabulary_file)).corpus_tasks()).variants()


def run_stage(spec: StageSpec, log=None) -> dict[str, Any]:
    """Train ``spec.stage``; returns JSON-able metadata (history, best epoch, paths, splits)."""
    from goalcraft.models.predictor import PredictorConfig
    from goalcraft.training.predictor import (
        PredictorExamples,
        Stage1Settings,
        Stage2Settings,
        train_stage1,
        train_stage2,
    )

    table = pq.read_table(spec.goal_table)
    examples = PredictorExamples.from_table(table)
    splits = split_indices(table)  # assigned once, by source, by the goal_embeddings asset
    require_splits(splits, ("train", "val"))
    variants = load_variants(spec.tasks_file)
    if spec.stage == 1:
        result = train_stage1(examples, splits, PredictorConfig(**spec.config), Path(spec.out_dir),
                              Stage1Settings(**spec.settings), resume=spec.resume, variants=variants, log=log)
    elif spec.stage == 2:
        if not spec.stage1_dir:
            raise ValueError("a stage-2 spec needs stage1_dir")
        result = train_stage2(examples, splits, Path(spec.stage1_dir), Path(spec.out_dir),
                              Stage2Settings(**spec.settings), aligner=spec.config.get("aligner"),
                              resume=spec.resume, variants=variants, log=log)
    else:
        raise ValueError(f"stage must be 1 or 2, got {spec.stage}")
    return {
        "stage": spec.stage,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "best_dir": str(result.best_dir),
        "resumed_from_epoch": result.resumed_from_epoch,
        "splits": {k: int(len(v)) for k, v in splits.items()},
        **result.extra,
    }


def _init_distributed() -> bool:
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend)
    return True


def main(argv: list[str] | None = None) -> int:
    """Worker entry point; every rank reads the spec from ``$GOALCRAFT_STAGE_SPEC``."""
    import torch

    distributed = _init_distributed()
    rank = int(os.environ.get("RANK", "0"))
    spec = _with_device(StageSpec.from_json(os.environ[SPEC_ENV_VAR]))
    try:
        if rank == 0 and os.environ.get("DAGSTER_PIPES_CONTEXT"):
            from dagster_pipes import open_dagster_pipes

            from goalcraft.training.run_folder import record_logger

            with open_dagster_pipes() as pipes:
                pipes.log.info(f"stage {spec.stage}: {int(os.environ.get('WORLD_SIZE', '1'))} worker(s)")
                summary = run_stage(spec, log=record_logger(pipes.log.info, pipes.log.debug))
                pipes.report_asset_materialization(metadata=pipes_metadata(summary))
        else:
            run_stage(spec)
    finally:
        if distributed:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
    return 0


def _with_device(spec: StageSpec) -> StageSpec:
    """Each torchrun worker trains on its own GPU (``cuda:LOCAL_RANK``)."""
    import torch

    settings = dict(spec.settings)
    if str(settings.get("device", "cpu")).startswith("cuda") and torch.cuda.is_available():
        settings["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return StageSpec(**{**asdict(spec), "settings": settings})


def pipes_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    """The stage summary as Pipes metadata (history as JSON; scalars as they are)."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, (int, float, str, bool)):
            out[key] = value
        else:
            out[key] = {"raw_value": value, "type": "json"}
    return out


if __name__ == "__main__":
    sys.exit(main())
