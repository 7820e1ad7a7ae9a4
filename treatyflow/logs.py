"""structlog set-up: JSON off a terminal, readable on one. Call once per process.

Every line about a request carries ``request_id``, ``workflow_id`` and, where a message
is concerned, ``message_id``, whichever process wrote it (gateway, worker, simulated
authorities), so one grep follows a request across them.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import structlog
from structlog.types import EventDict, WrappedLogger
from temporalio import activity, workflow

from treatyflow.constants import WORKFLOW_ID_SEPARATOR


def correlate(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Lift Temporal's workflow/activity details into flat fields and derive the ids a
    reader greps for: the workflow id, the request id in it, the update id (= the id of
    the message an update applies)."""
    for key in ("temporal_workflow", "temporal_activity"):
        details = event.pop(key, None)
        if not isinstance(details, dict):
            continue
        event.setdefault("workflow_id", details.get("workflow_id"))
        if details.get("update_name") == "submit" and details.get("update_id"):
            event.setdefault("message_id", details["update_id"])
        for name in ("activity_type", "attempt", "update_name"):
            if details.get(name) is not None:
                event.setdefault(name, details[name])
    wf_id = event.get("workflow_id")
    if "request_id" not in event and isinstance(wf_id, str) and WORKFLOW_ID_SEPARATOR in wf_id:
        event["request_id"] = wf_id.split(WORKFLOW_ID_SEPARATOR, 1)[1]
    return event


def configure(level: str = "info", *, stream: object = None, file: Path | None = None,
              file_level: str = "info") -> None:
    """Route stdlib and structlog output through one renderer: to ``stream`` (stderr) at
    ``level``, and, with ``file``, also as JSON lines to that file at ``file_level``."""
    out = stream or sys.stderr
    tty = hasattr(out, "isatty") and out.isatty()  # type: ignore[union-attr]
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Temporal's loggers put their details in ``extra``, not in the message text.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
    structlog.configure(
        processors=[*shared, correlate, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    def formatter(renderer: structlog.types.Processor) -> logging.Formatter:
        return structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), correlate],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )

    handler = logging.StreamHandler(out)  # type: ignore[arg-type]
    handler.setFormatter(formatter(
        structlog.dev.ConsoleRenderer() if tty else structlog.processors.JSONRenderer()))
    handler.setLevel(level.upper())
    handlers: list[logging.Handler] = [handler]
    if file is not None:
        file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Logs name requests and parties: owner-only, whatever the caller's umask (a CLI
        # run from a shell has its own, not the stack's 077).
        os.close(os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        os.chmod(file, 0o600)
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(formatter(structlog.processors.JSONRenderer()))
        to_file.setLevel(file_level.upper())
        handlers.append(to_file)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(min(h.level for h in handlers))
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)  # type: ignore[no-any-return]
