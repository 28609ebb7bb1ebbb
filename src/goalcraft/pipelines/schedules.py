"""Schedules: periodic re-training and evaluation (``[automation]``: goalcraft.config.AutomationSettings).

:func:`build_retraining_schedule` builds a cron schedule for the job that re-trains the goal space,
re-embeds, re-trains the predictor and evaluates it (``retrain_and_evaluate_job``). Like every
goalcraft automation it is **stopped by default**: nothing runs until it is turned on in the UI
(Automation tab) or with ``dagster schedule start retrain_and_evaluate_schedule``.
docs/automation.md is the user's guide.

Each tick asks for one run, with a ``run_key`` derived from the scheduled time, so evaluating the
same tick twice (a daemon restart, a manual "Test schedule" in the UI) never launches a second run.
"""

from __future__ import annotations

import datetime as _dt
import zoneinfo
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._utils.schedules import is_valid_cron_string

from goalcraft.config import DEFAULT_RETRAIN_CRON, AutomationSettings

__all__ = [
    "DEFAULT_RETRAIN_CRON",
    "RETRAIN_JOB_NAME",
    "RETRAIN_SCHEDULE_NAME",
    "TRIGGER_TAG",
    "build_retraining_schedule",
    "retrain_run_key",
]

RETRAIN_JOB_NAME = "retrain_and_evaluate_job"
RETRAIN_SCHEDULE_NAME = "retrain_and_evaluate_schedule"
#: Tag on every run an automation asks for: ``schedule`` or ``sensor``.
TRIGGER_TAG = "goalcraft/trigger"
SCHEDULED_TIME_TAG = "goalcraft/scheduled_time"
AUTOMATION_TAG = "goalcraft/automation"


def retrain_run_key(scheduled_time: _dt.datetime, schedule_name: str = RETRAIN_SCHEDULE_NAME) -> str:
    """The run key of the tick scheduled at ``scheduled_time`` (timezone-aware; compared in UTC)."""
    if scheduled_time.tzinfo is None:
        raise ValueError("scheduled_time must be timezone-aware")
    utc = scheduled_time.astimezone(_dt.timezone.utc)
    return f"{schedule_name}:{utc.strftime('%Y-%m-%dT%H:%MZ')}"


def build_retraining_schedule(
    job_name: str = RETRAIN_JOB_NAME,
    cron: str | None = None,
    timezone: str | None = None,
    *,
    automation: AutomationSettings | None = None,
    name: str = RETRAIN_SCHEDULE_NAME,
    run_config: Mapping[str, Any] | None = None,
) -> dg.ScheduleDefinition:
    """A schedule that asks for one run of ``job_name`` per cron tick; STOPPED by default.

    ``cron`` and ``timezone`` default to ``automation.retrain_cron`` / ``automation.timezone``
    (``AutomationSettings()`` when not given); explicit arguments win. The job is targeted by name:
    the ``Definitions`` the schedule is added to must define it. ``run_config`` (optional) is sent
    with every run.
    """
    settings = automation if automation is not None else AutomationSettings()
    # Re-validate explicit overrides through the same model (same error messages as the TOML file).
    settings = AutomationSettings(
        retrain_cron=cron if cron is not None else settings.retrain_cron,
        timezone=timezone if timezone is not None else settings.timezone,
        watch_interval_s=settings.watch_interval_s,
    )
    # The settings check the expression's shape; Dagster's own parser has the last word.
    if not is_valid_cron_string(settings.retrain_cron):
        raise ValueError(f"retrain_cron: not a valid cron expression: {settings.retrain_cron!r}")
    fixed_config = dict(run_config) if run_config else None

    @dg.schedule(
        cron_schedule=settings.retrain_cron,
        execution_timezone=settings.timezone,
        job_name=job_name,
        name=name,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        tags={AUTOMATION_TAG: name},
        description=(
            f"Re-train and evaluate ({job_name}) on '{settings.retrain_cron}' ({settings.timezone}). "
            "Stopped by default: turn it on in the UI or with `dagster schedule start`."
        ),
    )
    def _retraining(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        scheduled = context.scheduled_execution_time
        if scheduled is None:  # only when evaluated outside the daemon without a time
            scheduled = _dt.datetime.now(_dt.timezone.utc).replace(second=0, microsecond=0)
        if scheduled.tzinfo is None:
            scheduled = scheduled.replace(tzinfo=zoneinfo.ZoneInfo(settings.timezone))
        return dg.RunRequest(
            run_key=retrain_run_key(scheduled, name),
            run_config=fixed_config,
            tags={
                TRIGGER_TAG: "schedule",
                AUTOMATION_TAG: name,
                SCHEDULED_TIME_TAG: scheduled.astimezone(_dt.timezone.utc).isoformat(),
            },
        )

    return _retraining
