"""``rosey run --log-format json``: one JSON object per log record, per line, for log aggregators.

Each line: ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``component`` (the logger's name,
e.g. ``bot.rosey.supervision.supervisor``), ``plugin`` and ``correlation_id`` (when the record
is about one plugin or one command, else null), ``message``, and ``exception`` (the traceback,
only when there is one). A message's line breaks and control characters are escaped by JSON,
so no plugin output can pass for a record of its own. Library code attaches ``plugin`` and
``correlation_id`` with ``extra={...}``; this module is the only one that reads them.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["LOG_FORMATS", "JsonFormatter"]

LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        data: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "component": record.name,
            "plugin": _text(getattr(record, "plugin", None)),
            "correlation_id": _text(getattr(record, "correlation_id", None)),
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
