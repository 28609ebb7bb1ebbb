"""Jobs: the ingest stage, and the partitioned clip stage (backfill it from the UI's partitions view)."""

from __future__ import annotations

import dagster as dg


def build_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    # The clip job's partitions are inferred from its assets (the corpus partitions).
    ingest_job = dg.define_asset_job(
        "ingest_job", selection=dg.AssetSelection.groups("ingest"),
        description="Validate the corpus manifest and agent-trial folders into the ingest tables.",
    )
    clips_job = dg.define_asset_job(
        "clips_job", selection=dg.AssetSelection.groups("clips"),
        description="Cut one partition of videos and trials into 16-frame clip shards.",
    )
    return [ingest_job, clips_job]
