"""Where the processes log: standard error, as text (default) or one JSON object a line.

`--log-format json` gives each record as ``{"time", "level", "logger", "message"}`` plus
any fields the call passed with ``extra=`` (the startup line's version, database, ports
and mode), and ``exception`` with the traceback when there is one: what log shippers
(Loki, Elasticsearch, Cloud Logging) parse without a pattern.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s{worker}: %(message)s"
# The attributes every LogRecord has; anything else came through `extra=`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self._static,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str, worker: int | None = None) -> None:
    """Log records at ``level`` and above to standard error in ``log_format``."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter({"worker": worker} if worker is not None else None))
    else:
        suffix = f"[worker {worker}]" if worker is not None else ""
        handler.setFormatter(logging.Formatter(TEXT_FORMAT.format(worker=suffix)))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # Alembic narrates every migration context at INFO, and httpx every request (an
    # agent's heartbeat each interval): only their warnings matter, unless debugging.
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for name in ("alembic", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)
