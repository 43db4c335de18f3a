"""How the daemons write their logs: ``--log-format text`` (the default, for a
terminal) or ``json`` (one object per line, for a log pipeline): time (UTC, ISO
8601), level, logger, message, the id of the request being served when there is
one (``request_id``, which a server sets per call: the apiserver's gate does),
and the exception's traceback when there is one. Any daemon's ``main`` calls
``configure``.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The id of the call being served in this task ("" outside calls).
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = request_id.get()
        if request:
            entry["request"] = request
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def configure(*, level: str, format: str = "text") -> None:
    """Log to stderr at ``level`` in ``format`` (``text`` or ``json``)."""
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}; want one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter() if format == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
