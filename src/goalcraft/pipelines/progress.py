"""The stages' own progress lines on the terminal of ``goalcraft run`` / ``goalcraft demo``.

Stages report progress through ``context.log`` (epochs, DAgger rounds, REINFORCE iterations), which
the UI shows from the instance's event log. The CLI turns Dagster's console logger off (it prints
every engine event); this logger prints only what a stage itself logged at ``log_level`` or above,
one line each, so a half-hour step is not silent. Runs that name no logger (the UI, the daemon) keep
Dagster's default console logger: the Definitions list both.
"""

from __future__ import annotations

import logging
import sys

import dagster as dg

#: The logger's name in the Definitions and in a run config's ``loggers``.
PROGRESS_LOGGER = "progress"


class _StageMessages(logging.Filter):
    """A stage's own messages only: Dagster's engine events (step start, materialization, IO) carry a
    ``dagster_event`` and are left to the event log; errors too (a failed step is the CLI's one line,
    and Dagster's own "dependencies failed" notes are errors without an event)."""

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", None)
        return record.levelno < logging.ERROR and (meta is None or meta.get("dagster_event") is None)


class _StageFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        message = meta.get("orig_message", record.getMessage())
        where = meta.get("step_key") or "run"
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"  {where}: {level}{message}"


@dg.logger(config_schema={"log_level": dg.Field(str, default_value="INFO", is_required=False)},
           description="A stage's own log lines (not Dagster's engine events), one per line on stdout.")
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    level = logging.getLevelName(str(init_context.logger_config["log_level"]).upper())
    if not isinstance(level, int):
        raise ValueError(f"progress logger: unknown log_level {init_context.logger_config['log_level']!r}")
    logger = logging.Logger(f"goalcraft.{PROGRESS_LOGGER}", level=level)
    handler = logging.StreamHandler(sys.stdout)  # the stream of the moment (a test's capture included)
    handler.addFilter(_StageMessages())
    handler.setFormatter(_StageFormatter())
    logger.addHandler(handler)
    return logger


#: Every job's loggers: Dagster's default console logger (runs that name none, as the UI's, use it)
#: and the progress logger the CLI names.
LOGGERS: dict[str, dg.LoggerDefinition] = {"console": dg.colored_console_logger, PROGRESS_LOGGER: progress_logger}
