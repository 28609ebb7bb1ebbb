"""Schedules: periodic re-training and evaluation, and the ``[automation]`` settings.

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
from pydantic import field_validator

__all__ = [
    "DEFAULT_RETRAIN_CRON",
    "RETRAIN_JOB_NAME",
    "RETRAIN_SCHEDULE_NAME",
    "TRIGGER_TAG",
    "AutomationConfig",
    "build_retraining_schedule",
    "retrain_run_key",
]

RETRAIN_JOB_NAME = "retrain_and_evaluate_job"
RETRAIN_SCHEDULE_NAME = "retrain_and_evaluate_schedule"
#: Sunday 03:00 (in ``AutomationConfig.timezone``).
DEFAULT_RETRAIN_CRON = "0 3 * * 0"
#: Tag on every run an automation asks for: ``schedule`` or ``sensor``.
TRIGGER_TAG = "goalcraft/trigger"
SCHEDULED_TIME_TAG = "goalcraft/scheduled_time"
AUTOMATION_TAG = "goalcraft/automation"


class AutomationConfig(dg.Config):
    """The ``[automation]`` section: when re-training runs, and how often the corpus is watched.

    Both automations stay stopped until turned on (docs/automation.md); these settings only say what
    they do once running.
    """

    # Cron expression of the re-train + evaluate schedule (5 fields; Dagster's cron dialect).
    retrain_cron: str = DEFAULT_RETRAIN_CRON
    # IANA timezone the cron expression is read in.
    timezone: str = "UTC"
    # Minimum seconds between two evaluations of the new-inputs sensor.
    watch_interval_s: int = 300

    @field_validator("retrain_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not is_valid_cron_string(value):
            raise ValueError(f"retrain_cron: not a valid cron expression: {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: not an IANA timezone name: {value!r}") from None
        return value

    @field_validator("watch_interval_s")
    @classmethod
    def _positive_interval(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"watch_interval_s: must be at least 1 second, got {value}")
        return value


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
    automation: AutomationConfig | None = None,
    name: str = RETRAIN_SCHEDULE_NAME,
    run_config: Mapping[str, Any] | None = None,
) -> dg.ScheduleDefinition:
    """A schedule that asks for one run of ``job_name`` per cron tick; STOPPED by default.

    ``cron`` and ``timezone`` default to ``automation.retrain_cron`` / ``automation.timezone``
    (``AutomationConfig()`` when not given); explicit arguments win. The job is targeted by name:
    the ``Definitions`` the schedule is added to must define it. ``run_config`` (optional) is sent
    with every run.
    """
    settings = automation if automation is not None else AutomationConfig()
    # Re-validate explicit overrides through the same model (same error messages as the TOML file).
    settings = AutomationConfig(
        retrain_cron=cron if cron is not None else settings.retrain_cron,
        timezone=timezone if timezone is not None else settings.timezone,
        watch_interval_s=settings.watch_interval_s,
    )
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
