"""``--log-format``: the same records as text for a person or JSON lines for a collector.

JSON lines carry ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``, the id
of the request being served when there is one (``request``: a server sets
``request_id`` per call, as the apiserver's gate does), any ``extra`` fields a caller
attached, and the exception's text when there is one. Nothing else changes: the
levels and loggers are the ones ``--log-level`` already governs.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")

# The id of the call being served in this task ("" outside calls).
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# The attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = request_id.get()
        if request:
            entry["request"] = request
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(*, level: str, format: str = "text") -> None:
    """Set up the root logger for a daemon (replacing what was there)."""
    if format not in FORMATS:
        raise ValueError(f"--log-format {format!r}: must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
