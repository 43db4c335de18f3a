"""Durations and times the way kubectl prints them: ``12s``, ``5m``, ``3h``, ``20d``.

One unit, rounded down, so a column of ages stays narrow and comparable at a
glance. A node's ``lastSeen`` reads ``now`` while its agent reports.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.protobuf import message, timestamp_pb2

RECENT = dt.timedelta(seconds=2)


def duration(delta: dt.timedelta) -> str:
    """kubectl's short human duration of ``delta``."""
    seconds = int(delta.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    return f"{hours // (24 * 365)}y"


def when(msg: message.Message, field: str) -> dt.datetime | None:
    """The time in ``msg.<field>`` (a Timestamp), or None when it is not set."""
    if not msg.HasField(field):
        return None
    ts: timestamp_pb2.Timestamp = getattr(msg, field)
    return ts.ToDatetime(tzinfo=dt.UTC)


def age(at: dt.datetime | None, *, now: dt.datetime) -> str:
    """How long ago ``at`` was; ``<unknown>`` when it is not known."""
    if at is None:
        return "<unknown>"
    return duration(now - at)


def last_seen(at: dt.datetime | None, *, now: dt.datetime) -> str:
    """``now`` within the last two seconds, then an age; ``never`` when never seen."""
    if at is None:
        return "never"
    delta = now - at
    if delta < RECENT:
        return "now"
    return duration(delta)


def size(count: int) -> str:
    """Bytes in binary units: ``512Mi``, ``15.8Gi``."""
    if count < 1024:
        return f"{count}B"
    value, prefix = float(count), ""
    for prefix in ("Ki", "Mi", "Gi", "Ti", "Pi"):  # noqa: B007  (the last one is used)
        value /= 1024
        if value < 1024:
            break
    return f"{value:.0f}{prefix}" if value >= 100 or value == int(value) else f"{value:.1f}{prefix}"


_DURATION = re.compile(r"^\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds in ``30``, ``30s``, ``500ms``, ``2m`` or ``1h``; ValueError otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 2m or 1h")
    return float(match["value"]) * _UNITS[match["unit"]]
