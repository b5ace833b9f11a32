"""How the service logs: plain lines, or JSON lines with `MAILER_LOG_FORMAT=json` (one object a
line: time, level, logger, message), quiet when nothing happens (the scheduler's own tick and
job lines are below the level). No address, token or key goes into a message in the first
place (DESIGN invariant 7); a test runs a whole campaign and reads every line."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

# Libraries that talk at INFO about every step: APScheduler about each run of the worker's
# 5-second tick; aiosmtpd about every SMTP command (its RCPT lines carry tokens).
QUIET = ("apscheduler", "mail.log")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    if os.environ.get("MAILER_LOG_FORMAT", "text").lower() == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()


def quiet_libraries() -> None:
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
