"""Stage specs, and the goal_predictor asset trained by two torchrun (DDP, gloo) workers through
Dagster Pipes on a synthetic goal table."""

import json

import dagster as dg
import pytest
from safetensors.torch import load_file

from goalcraft.assets.predictor import build_predictor_assets
from goalcraft.config import PathsSettings, PredictorSettings, Stage1Settings
from goalcraft.data.splits import with_split_column
from goalcraft.data.task_vocabulary import load_task_vocabulary, write_task_vocabulary
from goalcraft.models.predictor import load_goal_predictor
from goalcraft.pipelines.gpu import GpuSettings
from goalcraft.resources import CorpusResource, StorageResource, TrainingResource, as_config
from goalcraft.storage import StoragePaths, write_parquet_atomic
from goalcraft.training.launch import StageSpec, load_variants



def test_spec_round_trips_and_variants_come_from_the_task_vocabulary(tmp_path, synthetic_tasks, synthetic_tasks_file):
    spec = StageSpec(stage=1, goal_table="g.parquet", out_dir="out", config={"name": "tiny"},
                     settings={"epochs": 2}, tasks_file="tasks.json")
    assert StageSpec.from_json(spec.to_json()) == spec
    synthetic_tasks_file(tmp_path / "tasks.json")
    vocabulary = load_task_vocabulary(tmp_path, ["tasks.json"], steve1_prompts=True)
    write_task_vocabulary(vocabulary, tmp_path / "vocabulary.json")
    # The configured task files' paraphrases; STEVE-1's packaged prompts are not training phrasings here.
    assert load_variants(tmp_path / "vocabulary.json") == {t: p for t, (_, p) in synthetic_tasks.items()}
    assert load_variants(tmp_path / "absent.json") == {} and load_variants(None) == {}


@pytest.mark.slow  # torchrun with two processes: a minute or more
def test_goal_predictor_trains_under_torchrun_through_pipes(tmp_path, synthetic_goal_table, synthetic_tasks_file):
    paths = StoragePaths(tmp_path / "data")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    synthetic_tasks_file(corpus / "tasks.json")
    write_task_vocabulary(load_task_vocabulary(corpus, ["tasks.json"], steve1_prompts=False), paths.task_vocabulary_file)
    write_parquet_atomic(with_split_column(synthetic_goal_table(10, dim=32), val_fraction=0.2, test_fraction=0.2),
                         paths.goal_embeddings_table)
    settings = PredictorSettings(preset="tiny-minilm", launcher="torchrun",
                                 stage1=Stage1Settings(epochs=2, batch_size=8))
    (goal_predictor, _), _ = build_predictor_assets(GpuSettings(nproc_per_node=2, gpus_per_step=0))  # CPU gloo workers
    result = dg.materialize([goal_predictor], resources={
        "storage": StorageResource(data_root=str(paths.data_root)),
        "corpus": CorpusResource(paths=as_config(PathsSettings(corpus_root=str(corpus)))),
        "training": TrainingResource(predictor=as_config(settings))}, selection=[goal_predictor])
    assert result.success
    (mat,) = result.asset_materializations_for_node("goal_predictor")
    meta = {k: v.value for k, v in mat.metadata.items()}
    # The metadata came from rank 0 through Pipes: the history the workers wrote, two epochs.
    history = json.loads((paths.predictor_stage1_dir / "history.json").read_text())
    assert meta["epochs"] == 2 == len(history["history"]) and meta["best_epoch"] == history["best_epoch"]
    assert sum(meta["splits"].values()) == 40 and min(meta["splits"].values()) > 0
    assert "| epoch |" in meta["loss_curve"]
    model = load_goal_predictor(paths.predictor_stage1_dir / "best")
    assert model.predict_goal(["chop a tree"]).shape == (1, 32)
    adapter = load_file(str(paths.predictor_stage1_dir / "best" / "adapter" / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())
