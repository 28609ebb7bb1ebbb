"""Stage specs, and the goal_predictor asset trained by two torchrun (DDP, gloo) workers through
Dagster Pipes on a synthetic goal table."""

import json

import dagster as dg
import pytest
from safetensors.torch import load_file

from goalcraft.assets.predictor import build_predictor_assets
from goalcraft.config import PredictorSettings
from goalcraft.models.predictor import load_goal_predictor
from goalcraft.pipelines.gpu import GpuExecution
from goalcraft.resources import CorpusResource, StorageResource, TrainingResource
from goalcraft.storage import StoragePaths, write_parquet_atomic
from goalcraft.training.launch import StageSpec, load_variants



def test_spec_round_trips_and_variants_come_from_tasks_json(tmp_path, synthetic_tasks, synthetic_tasks_file):
    spec = StageSpec(stage=1, goal_table="g.parquet", out_dir="out", config={"name": "tiny"},
                     settings={"epochs": 2}, tasks_file="tasks.json", extra={"note": [1, 2]})
    assert StageSpec.from_json(spec.to_json()) == spec
    tasks = synthetic_tasks_file(tmp_path / "tasks.json")
    assert load_variants(tasks) == {t: p for t, (_, p) in synthetic_tasks.items()}
    assert load_variants(tmp_path / "absent.json") == {} and load_variants(None) == {}


@pytest.mark.slow  # torchrun with two processes: a minute or more
def test_goal_predictor_trains_under_torchrun_through_pipes(tmp_path, synthetic_goal_table, synthetic_tasks_file):
    paths = StoragePaths(tmp_path / "data")
    write_parquet_atomic(synthetic_goal_table(10, dim=32), paths.goal_embeddings_table)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    synthetic_tasks_file(corpus / "tasks.json")
    settings = PredictorSettings(preset="tiny-minilm", stage1_epochs=2, stage1_batch_size=8, launcher="torchrun",
                                 nproc_per_node=2, val_fraction=0.2, test_fraction=0.2)
    (goal_predictor, _), _ = build_predictor_assets(dg.AssetKey("goal_embeddings"), GpuExecution())
    result = dg.materialize([goal_predictor], resources={
        "storage": StorageResource(data_root=str(paths.data_root)),
        "corpus": CorpusResource(corpus_root=str(corpus)),
        "training": TrainingResource(predictor=settings)}, selection=[goal_predictor])
    assert result.success
    (mat,) = result.asset_materializations_for_node("goal_predictor")
    meta = {k: v.value for k, v in mat.metadata.items()}
    # The metadata came from rank 0 through Pipes: the history the workers wrote, two epochs.
    history = json.loads((paths.predictor_dir / "history.json").read_text())
    assert meta["epochs"] == 2 == len(history["history"]) and meta["best_epoch"] == history["best_epoch"]
    assert sum(meta["splits"].values()) == 40 and min(meta["splits"].values()) > 0
    assert "| epoch |" in meta["loss_curve"]
    model = load_goal_predictor(paths.predictor_dir / "best")
    assert model.predict_goal(["chop a tree"]).shape == (1, 32)
    adapter = load_file(str(paths.predictor_dir / "best" / "adapter" / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())
