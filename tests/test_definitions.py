"""The Dagster code location, materialized for real on a small Crafter corpus."""

from __future__ import annotations

import json

import dagster as dg
import pyarrow.parquet as pq
import pytest

from goalcraft.data.partition_keys import partition_of
from goalcraft.definitions import build_definitions
from goalcraft.sql import connect
from goalcraft.storage import StoragePaths



def test_definitions_load_with_groups_kinds_and_descriptions(tmp_path, make_config):
    defs = build_definitions(make_config(tmp_path, tmp_path / "corpus", count=256))
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {"corpus_manifest": "ingest", "agent_trials": "ingest", "task_vocabulary": "ingest",
                      "video_clips": "clips",
                      "goal_clips": "goals", "goal_space_model": "training", "steve1_prior": "training",
                      "goal_embeddings": "embeddings", "clip_embeddings": "embeddings",
                      "goal_predictor": "predictor", "goal_aligner": "predictor",
                      "goal_model_comparison": "evaluation", "goal_model_evaluation": "evaluation",
                      "evaluation_report": "evaluation", "goal_policy": "agent", "goal_predictor_rl": "agent",
                      "agent_success": "agent"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 40
        assert node.kinds
    clips = graph.get(dg.AssetKey("video_clips"))
    assert len(clips.partitions_def.get_partition_keys()) == 256
    assert {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys} == {
        ("video_clips", "shards_valid"), ("goal_embeddings", "embeddings_sane"), ("clip_embeddings", "embeddings_sane"),
        ("goal_aligner", "scale_matches_goal_space")}
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"ingest_job", "clips_job", "goals_job", "training_job",
                                                            "predictor_job"}
    # Automation exists and is off by default.
    assert [s.name for s in defs.schedules] == ["retrain_and_evaluate_schedule"]
    assert [s.name for s in defs.sensors] == ["new_inputs_sensor"]
    assert defs.schedules[0].default_status == dg.DefaultScheduleStatus.STOPPED
    assert defs.sensors[0].default_status == dg.DefaultSensorStatus.STOPPED
    # The GPU training assets carry the GPU pool (goalcraft.pipelines.gpu), the CPU stages none.
    assert defs.resolve_assets_def("goal_predictor").op.pool == "gpu"
    assert defs.resolve_assets_def("video_clips").op.pool is None


def test_every_artefact_an_asset_reads_is_an_upstream_asset(tmp_path, make_config):
    from goalcraft.assets import keys
    from goalcraft.definitions import STAGES

    defs = build_definitions(make_config(tmp_path, tmp_path / "corpus"))
    graph = defs.resolve_asset_graph()

    def upstream(name: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    assert upstream("steve1_prior") == {"goal_embeddings", "goal_space_model", "task_vocabulary"}
    assert upstream("goal_embeddings") == {"goal_clips", "goal_space_model"}
    assert upstream("goal_aligner") == {"goal_predictor", "goal_embeddings", "task_vocabulary"}
    assert upstream("goal_clips") == {"task_vocabulary", "corpus_manifest", "agent_trials"}
    # The goal space reads the goal-clip indexes to leave out the test split's sources.
    assert upstream("goal_space_model") == {"video_clips", "goal_clips", "task_vocabulary"}
    models = {"goal_aligner", "steve1_prior", "goal_space_model", "goal_embeddings", "task_vocabulary"}
    assert upstream("goal_model_comparison") == models == upstream("goal_model_evaluation")
    assert upstream("evaluation_report") == {"goal_model_evaluation", "goal_embeddings", "goal_clips"}
    # The policy's DAgger rounds ([policy] dagger_rounds) take their goals from the goal embeddings.
    assert upstream("goal_policy") == {"goal_space_model", "goal_embeddings", "corpus_manifest", "agent_trials"}
    assert upstream("goal_predictor_rl") == {"goal_policy", "goal_aligner", "task_vocabulary", "goal_embeddings"}
    assert upstream("agent_success") == {"goal_policy", "goal_predictor_rl", "goal_embeddings", "steve1_prior",
                                         "goal_aligner", "task_vocabulary"}
    # Each stage module is its own Definitions; the key constants name real assets, each once.
    assert all(isinstance(stage.definitions(make_config(tmp_path, tmp_path / "corpus")), dg.Definitions)
               for stage in STAGES)
    named = [v for v in vars(keys).values() if isinstance(v, dg.AssetKey)]
    assert len(named) == len(set(named)) and set(named) <= set(graph.get_all_asset_keys())


@pytest.fixture(scope="module")
def materialized(crafter_corpus, tmp_path_factory, make_config):
    data = tmp_path_factory.mktemp("dagster-data")
    config = make_config(data, crafter_corpus, count=2)
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    assets = [defs.get_assets_def(k) for k in ("corpus_manifest", "agent_trials", "video_clips")]
    resources = defs.resources
    ingest = dg.materialize(assets[:2], instance=instance, resources=resources)
    runs = {key: _materialize_partition(defs, instance, key) for key in ("p0000", "p0001")}
    return StoragePaths(data), ingest, runs, instance, defs


def _materialize_partition(defs, instance, key):
    return dg.materialize([defs.get_assets_def("video_clips"), *defs.asset_checks], instance=instance,
                          resources=defs.resources, partition_key=key)


def _metadata(result, asset: str) -> dict:
    (mat,) = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in mat.metadata.items()}


def test_ingest_tables_hold_every_source_with_its_partition(materialized, crafter_corpus):
    storage, ingest, *_ = materialized
    manifest_rows = [json.loads(l) for l in (crafter_corpus / "manifest.jsonl").read_text().splitlines()]
    table = pq.read_table(storage.manifest_table).to_pylist()
    assert sorted(r["id"] for r in table) == sorted(r["id"] for r in manifest_rows)
    assert all(r["partition"] == partition_of(r["id"], 2) for r in table)
    meta = _metadata(ingest, "corpus_manifest")
    assert meta["videos"] == len(manifest_rows) and meta["rejected"] == 0
    trials = pq.read_table(storage.trials_table).to_pylist()
    assert _metadata(ingest, "agent_trials")["trials"] == len(trials) == 3
    assert {t["layout"] for t in trials} == {"goalcraft", "steve1"}


def test_each_partition_materializes_its_own_sources_and_passes_its_check(materialized):
    storage, _, runs, instance, _ = materialized
    con = connect(storage.data_root)
    total = 0
    for key, result in runs.items():
        assert result.success
        meta = _metadata(result, "video_clips")
        evaluations = [e.event_specific_data for e in result.all_events
                       if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        assert [(c.check_name, c.passed) for c in evaluations] == [("shards_valid", True)]
        assert evaluations[0].metadata["clips"].value == meta["clips_written"]
        sources = con.execute(f"SELECT DISTINCT source_id FROM clips WHERE shard LIKE '{key}-%'").fetchall()
        assert all(partition_of(s, 2) == key for (s,) in sources)
        n = con.execute(f"SELECT count(*) FROM clips WHERE shard LIKE '{key}-%'").fetchone()[0]
        assert n == meta["clips_written"]
        total += n
    # DuckDB reads the parquet and JSON as written: totals agree across views.
    assert con.execute("SELECT sum(clips_written) FROM clip_shard_stats").fetchone()[0] == total
    assert con.execute("SELECT sum(clips_written) FROM clip_partitions").fetchone()[0] == total
    assert con.execute("SELECT count(*) FROM manifest").fetchone()[0] == 3
    assert instance.get_materialized_partitions(dg.AssetKey("video_clips")) == {"p0000", "p0001"}


def test_rematerializing_a_partition_is_idempotent(materialized):
    storage, _, runs, instance, defs = materialized
    part = storage.clip_partition_dir("p0001")
    before = {p.name: p.read_bytes() for p in sorted(part.iterdir()) if p.suffix in (".tar", ".parquet")}
    other = {p.name: p.read_bytes() for p in storage.clip_partition_dir("p0000").glob("*.tar")}
    again = _materialize_partition(defs, instance, "p0001")
    assert _metadata(again, "video_clips")["clips_written"] == _metadata(runs["p0001"], "video_clips")["clips_written"] > 0
    after = {p.name: p.read_bytes() for p in sorted(part.iterdir()) if p.suffix in (".tar", ".parquet")}
    assert after == before
    # Other partitions are untouched.
    assert {p.name: p.read_bytes() for p in storage.clip_partition_dir("p0000").glob("*.tar")} == other
