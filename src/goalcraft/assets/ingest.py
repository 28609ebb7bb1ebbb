"""Ingest stage: the corpus manifest, the agent-trial folders and the task vocabulary, validated into
tables (bodies: goalcraft.stages.ingest).

Every row the clip stage will see is here, with its partition; every row that could not be used is
in the ingest quarantine table with the reason.
"""

import dagster as dg

from goalcraft.assets.materialize import materialize
from goalcraft.config import GoalcraftConfig
from goalcraft.pipelines.gpu import cpu_step_tags
from goalcraft.resources import CorpusResource, GoalsResource, StorageResource
from goalcraft.stages.ingest import ingest_manifests, ingest_task_vocabulary, ingest_trials


def definitions(config: GoalcraftConfig) -> dg.Definitions:
    return dg.Definitions(assets=build_ingest_assets(config.partitions.count,
                                                     cpu_step_tags(config.gpu, "corpus_manifest")))


def build_ingest_assets(partition_count: int, manifest_tags: dict[str, str] | None = None,
                        ) -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name="ingest",
        kinds={"json", "parquet"},
        description=(
            "The video corpus manifest (MineDojo YouTube-database records: id, title, link, view_count, "
            "like_count, duration, fps, plus local video/transcript paths), validated, with each video's "
            "partition. Rejected rows go to ingest/manifest_quarantine.parquet."
        ),
        op_tags=manifest_tags,
    )
    def corpus_manifest(context: dg.AssetExecutionContext, corpus: CorpusResource,
                        storage: StorageResource) -> dg.MaterializeResult:
        return materialize(context, lambda: ingest_manifests(storage.paths, corpus.root, corpus.manifest_paths,
                                                             partition_count))

    @dg.asset(
        group_name="ingest",
        kinds={"json", "parquet"},
        description=(
            "Agent trial recordings (goalcraft layout: video + metadata.json; STEVE-1 EpisodeStorage "
            "layout: frames.mp4 + metadata.json + len.txt), plus the trials of STEVE-1 evaluation result "
            "folders and recorded samples ([paths] steve1_results_dirs, recorded_samples_dirs), validated, "
            "with success moments and partitions. Rejected folders go to ingest/trials_quarantine.parquet."
        ),
    )
    def agent_trials(context: dg.AssetExecutionContext, corpus: CorpusResource,
                     storage: StorageResource) -> dg.MaterializeResult:
        return materialize(context, lambda: ingest_trials(
            storage.paths, corpus.root, corpus.trials_path, partition_count,
            steve1_results_dirs=corpus.paths.steve1_results_dirs,
            recorded_samples_dirs=corpus.paths.recorded_samples_dirs))

    @dg.asset(
        group_name="ingest",
        kinds={"json"},
        description=(
            "The task vocabulary every stage reads, loaded once from [goals] task_files (tasks.json, MineDojo "
            "task YAML, MineStudio task folders) plus STEVE-1's 11 prompts: each task's instruction, "
            "paraphrases, narration lines and source. Without task files the stages that need none still "
            "run; the notes say what is skipped."
        ),
    )
    def task_vocabulary(context: dg.AssetExecutionContext, corpus: CorpusResource, goals: GoalsResource,
                        storage: StorageResource) -> dg.MaterializeResult:
        return materialize(context, lambda: ingest_task_vocabulary(storage.paths, corpus.root, goals.goals))

    return [corpus_manifest, agent_trials, task_vocabulary]
