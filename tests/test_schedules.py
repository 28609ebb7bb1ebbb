"""The re-train + evaluate schedule, evaluated as the daemon would, inside a real Definitions."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import dagster as dg
import pytest
from pydantic import ValidationError

from goalcraft.config import AutomationSettings
from goalcraft.pipelines.schedules import (
    RETRAIN_JOB_NAME,
    RETRAIN_SCHEDULE_NAME,
    build_retraining_schedule,
    retrain_run_key,
)


@dg.asset
def dummy_model() -> int:
    return 1


RETRAIN_JOB = dg.define_asset_job(RETRAIN_JOB_NAME, selection=[dummy_model])


def _defs(schedule: dg.ScheduleDefinition) -> dg.Definitions:
    return dg.Definitions(assets=[dummy_model], jobs=[RETRAIN_JOB], schedules=[schedule])


def test_schedule_is_stopped_by_default_and_uses_the_configured_cron():
    schedule = build_retraining_schedule()
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.name == RETRAIN_SCHEDULE_NAME
    assert schedule.job_name == RETRAIN_JOB_NAME
    # By default it ticks on Sundays at 03:00 UTC.
    assert [t.isoformat() for t in _ticks(schedule, 2)] == ["2026-01-04T03:00:00+00:00", "2026-01-11T03:00:00+00:00"]

    configured = build_retraining_schedule(
        automation=AutomationSettings(retrain_cron="30 1 * * 1-5", timezone="Europe/Paris"))
    assert (configured.cron_schedule, configured.execution_timezone) == ("30 1 * * 1-5", "Europe/Paris")
    # Explicit arguments win over the [automation] section.
    overridden = build_retraining_schedule(cron="0 0 1 * *", automation=AutomationSettings(timezone="Asia/Tokyo"))
    assert (overridden.cron_schedule, overridden.execution_timezone) == ("0 0 1 * *", "Asia/Tokyo")
    assert overridden.default_status == dg.DefaultScheduleStatus.STOPPED


def test_automation_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="retrain_cron"):
        AutomationSettings(retrain_cron="every sunday")
    with pytest.raises(ValidationError, match="timezone"):
        AutomationSettings(timezone="Mars/Olympus_Mons")
    with pytest.raises(ValidationError, match="watch_interval_s"):
        AutomationSettings(watch_interval_s=0)
    with pytest.raises(ValueError, match="retrain_cron"):  # the shape passes; Dagster's cron parser refuses
        build_retraining_schedule(cron="61 * * * *")


def test_a_tick_requests_one_idempotent_tagged_run_of_the_job():
    schedule = build_retraining_schedule(automation=AutomationSettings(timezone="Europe/Paris"))
    defs = _defs(schedule)
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    tick = dt.datetime(2026, 1, 4, 3, 0, tzinfo=paris)  # a Sunday, 03:00 Paris = 02:00 UTC
    with dg.DagsterInstance.ephemeral() as instance:
        data = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=tick))
        (request,) = data.run_requests
        assert request.run_key == "retrain_and_evaluate_schedule:2026-01-04T02:00Z" == retrain_run_key(tick)
        assert request.tags["goalcraft/trigger"] == "schedule"
        assert request.tags["goalcraft/automation"] == RETRAIN_SCHEDULE_NAME
        assert request.tags["goalcraft/scheduled_time"] == "2026-01-04T02:00:00+00:00"
        assert request.tags["dagster/schedule_name"] == RETRAIN_SCHEDULE_NAME
        # The same tick evaluated again asks for the same run (the daemon launches it once);
        # the next week's tick for another.
        again = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=tick))
        assert again.run_requests[0].run_key == request.run_key
        later = schedule.evaluate_tick(dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick + dt.timedelta(days=7)))
        assert later.run_requests[0].run_key == "retrain_and_evaluate_schedule:2026-01-11T02:00Z"

    # The run request, launched as the daemon would, materializes the job's assets.
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def(RETRAIN_JOB_NAME).execute_in_process(
            run_config=request.run_config, tags=request.tags, instance=instance)
        assert result.success
        assert instance.get_latest_materialization_event(dg.AssetKey("dummy_model")) is not None
        assert instance.get_run_by_id(result.run_id).tags["goalcraft/trigger"] == "schedule"


def test_in_goalcraft_the_schedule_retrains_and_evaluates_but_does_not_recut(make_config, tmp_path):
    from goalcraft.definitions import build_definitions

    defs = build_definitions(make_config(tmp_path / "data", tmp_path / "corpus"))
    schedule = defs.resolve_schedule_def(RETRAIN_SCHEDULE_NAME)
    job = defs.resolve_job_def(schedule.job_name)
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "goal_space_model", "goal_embeddings", "steve1_prior", "goal_predictor", "goal_aligner",
        "goal_model_comparison", "goal_model_evaluation", "evaluation_report"}


def _ticks(schedule: dg.ScheduleDefinition, n: int) -> list[dt.datetime]:
    """The schedule's next ``n`` ticks after 2026-01-01 00:00 UTC, as Dagster's scheduler computes them."""
    from dagster._utils.schedules import cron_string_iterator

    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    ticks = cron_string_iterator(start, schedule.cron_schedule, schedule.execution_timezone)
    return [next(ticks) for _ in range(n)]


def test_cron_ticks_fall_when_configured():
    schedule = build_retraining_schedule(automation=AutomationSettings(retrain_cron="0 3 * * 0", timezone="Europe/Paris"))
    first, second = _ticks(schedule, 2)
    assert first.isoformat() == "2026-01-04T03:00:00+01:00"
    assert second.isoformat() == "2026-01-11T03:00:00+01:00"


def test_schedule_loads_in_definitions_and_needs_its_job():
    schedule = build_retraining_schedule()
    defs = _defs(schedule)
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_schedule_def(RETRAIN_SCHEDULE_NAME).job_name == RETRAIN_JOB_NAME
    assert defs.resolve_job_def(RETRAIN_JOB_NAME).name == RETRAIN_JOB_NAME
    # Targeting a job the Definitions do not have fails at load time, not at 3 a.m.
    with pytest.raises(Exception, match="retrain_and_evaluate_job"):
        dg.Definitions.validate_loadable(dg.Definitions(assets=[dummy_model], schedules=[build_retraining_schedule()]))
