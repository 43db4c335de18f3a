"""Conditions on statuses: set one by type, keeping its transition time when
its status did not change (what ``doractl describe`` shows as "since")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from dora.api.v1 import meta_pb2

Condition = meta_pb2.Condition
Conditions = RepeatedCompositeFieldContainer[Condition]


def get(conditions: Sequence[Condition], type: str) -> Condition | None:
    return next((c for c in conditions if c.type == type), None)


def set_condition(
    conditions: Conditions,
    *,
    type: str,
    status: str,
    reason: str = "",
    message: str = "",
    now: dt.datetime,
) -> bool:
    """Set the condition ``type`` in place; whether anything changed."""
    current = get(conditions, type)
    if current is None:
        current = conditions.add(type=type)
    elif (current.status, current.reason, current.message) == (status, reason, message):
        return False
    if current.status != status or not current.HasField("last_transition_time"):
        current.last_transition_time.FromDatetime(now)
    current.status, current.reason, current.message = status, reason, message
    return True


def remove(conditions: Conditions, type: str) -> bool:
    for index, condition in enumerate(conditions):
        if condition.type == type:
            del conditions[index]
            return True
    return False
