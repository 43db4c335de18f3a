"""Waiting until an object reaches a state: ``doractl wait`` and the SDK's ``wait``.

A state is written as kubectl writes it: ``phase=Running`` (``status.phase``, for
the kinds that have one: Container, Volume, Node), ``state=Completed``
(``status.state``: a Task's; ``state=Completed,Failed`` is either), ``condition=Available`` (a
``status.conditions`` entry of that type whose status is ``True``, or the status
given after a second ``=``: ``condition=Ready=False``; not while the status is of
an older generation than the spec) or ``delete`` (the object,
this incarnation of it, is gone). Names match in any case.

The wait reads the object, then watches its kind from the version read, so a
change wakes it at once; it reads again every few seconds in case the watch
missed something (a compacted version). An object that does not exist yet is
waited for: a Container the controllers have still to create is the usual case.
Past the timeout it raises ``WaitTimeout`` (a ``TimeoutError`` too) saying what
the object's state was.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from dora.api import errors, kinds, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2, resources_pb2

WatchEvent = resources_pb2.WatchEvent
What = Literal["phase", "state", "condition", "delete"]

# A watch is what wakes a wait up; a read this often is what makes sure.
RECHECK_EVERY = 5.0


class WaitTimeout(errors.DoraError, TimeoutError):
    """The object did not reach the state in time."""


@dataclass(frozen=True)
class Condition:
    what: What
    value: str = ""
    status: str = "True"

    def __str__(self) -> str:
        if self.what == "delete":
            return "delete"
        if self.what == "condition" and self.status.lower() != "true":
            return f"condition={self.value}={self.status}"
        return f"{self.what}={self.value}"


def parse(text: str) -> Condition:
    """``phase=Running``, ``state=Completed``, ``condition=Available[=STATUS]`` or
    ``delete``."""
    word, _, rest = text.strip().partition("=")
    word = word.lower()
    if word == "delete" and not rest:
        return Condition("delete")
    if word == "phase" and rest:
        return Condition("phase", rest)
    if word == "state" and rest:
        return Condition("state", rest)
    if word == "condition" and rest:
        value, _, status = rest.partition("=")
        if value:
            return Condition("condition", value, status or "True")
    raise errors.Invalid(
        f"cannot wait for {text!r}: use phase=PHASE, state=STATE, condition=TYPE[=STATUS] "
        "or delete",
        field="for",
    )


def check(kind: kinds.Kind, condition: Condition) -> None:
    """Refuse a state the kind cannot have, before waiting for it forever."""
    if condition.what == "delete":
        return
    if not kind.has_status:
        raise errors.Invalid(f"a {kind.name} has no status to wait for", field="for")
    status = getattr(objects.new(kind.name, "x"), kind.field).status
    if condition.what not in status.DESCRIPTOR.fields_by_name and not (
            condition.what == "condition" and "conditions" in status.DESCRIPTOR.fields_by_name):
        hint = " (wait for a condition: condition=Available)" if kind.name == "Workload" else ""
        raise errors.Invalid(f"a {kind.name} has no status.{condition.what}{hint}", field="for")


def met(obj: object_pb2.Object, condition: Condition) -> bool:
    """Whether ``obj`` (which exists) is in the state ``condition`` names."""
    if condition.what == "delete":
        return False
    status = objects.body(obj).status  # type: ignore[attr-defined]
    if condition.what == "phase":
        return str(status.phase).lower() == condition.value.lower()
    if condition.what == "state":
        return str(status.state).lower() in condition.value.lower().split(",")
    if stale(obj):
        return False
    return any(c.type.lower() == condition.value.lower()
               and c.status.lower() == condition.status.lower() for c in status.conditions)


def stale(obj: object_pb2.Object) -> bool:
    """Whether the status was written for an older spec: its controller has seen the
    object (``observedGeneration`` set) but not its latest change. Its conditions
    speak of the old spec, so a wait does not take them."""
    status = objects.body(obj).status  # type: ignore[attr-defined]
    if "observed_generation" not in status.DESCRIPTOR.fields_by_name:
        return False
    observed = int(status.observed_generation)
    return 0 < observed < obj.metadata.generation


def describe(obj: object_pb2.Object | None, condition: Condition) -> str:
    """The object's state as far as ``condition`` looks at it, for a timeout message."""
    if obj is None:
        return "it does not exist"
    if condition.what == "delete":
        return "it still exists"
    status = objects.body(obj).status  # type: ignore[attr-defined]
    if condition.what in ("phase", "state"):
        return f"its {condition.what} is {getattr(status, condition.what) or '<none>'}"
    if stale(obj):
        return (f"its status is of generation {status.observed_generation}, not yet of "
                f"{obj.metadata.generation}")
    for c in status.conditions:
        if c.type.lower() == condition.value.lower():
            why = f" ({c.reason}: {c.message})" if c.reason or c.message else ""
            return f"{c.type} is {c.status}{why}"
    return f"it has no {condition.value} condition"


async def wait(client: Client, kind: str, name: str, condition: Condition, *,
               zone: str = "", workspace: str = "", uid: str = "",
               timeout: float | None = None) -> object_pb2.Object | None:  # noqa: ASYNC109
    """The object once it is in the state ``condition`` names (None for ``delete``).

    With ``uid``, ``delete`` means that incarnation is gone: an object of the same
    name with another uid (a replacement) does not count. Raises ``WaitTimeout``
    after ``timeout`` seconds (None: no limit)."""
    found = kinds.get(kind)
    check(found, condition)
    last: list[object_pb2.Object | None] = [None]
    try:
        async with asyncio.timeout(timeout):
            return await _wait(client, found, name, condition, zone, workspace, uid, last)
    except TimeoutError:
        ref = objects.Ref(found.name, zone, workspace, name)
        raise WaitTimeout(
            f"timed out after {timeout:g}s waiting for {ref} to reach {condition}: "
            f"{describe(last[0], condition)}"
        ) from None


async def _wait(client: Client, kind: kinds.Kind, name: str, condition: Condition,
                zone: str, workspace: str, wanted_uid: str,
                last: list[object_pb2.Object | None]) -> object_pb2.Object | None:
    while True:
        try:
            current: object_pb2.Object | None = await client.get(
                kind.name, name, zone=zone, workspace=workspace)
        except errors.NotFound:
            current = None
        last[0] = current
        if condition.what == "delete" and (
                current is None or (wanted_uid and current.metadata.uid != wanted_uid)):
            return None
        if current is None:
            page = await client.list_page(kind.name, zone=zone, workspace=workspace, limit=1)
            version = page.resource_version
        else:
            if met(current, condition):
                return current
            version = current.metadata.resource_version
        uid = wanted_uid or (current.metadata.uid if current is not None else "")
        try:
            async with asyncio.timeout(RECHECK_EVERY):
                async for event in client.watch(kind.name, zone=zone, workspace=workspace,
                                                resource_version=version):
                    seen = event.object
                    if seen.metadata.name != name or (
                            current is not None and not _same_scope(seen, current)):
                        continue
                    if event.type == WatchEvent.DELETED:
                        last[0] = None
                        if condition.what == "delete" and (not uid or seen.metadata.uid == uid):
                            return None
                        continue
                    last[0] = seen
                    if condition.what == "delete":
                        if uid and seen.metadata.uid != uid:
                            return None  # the one we waited for is gone; this is another
                        continue
                    if met(seen, condition):
                        return seen
        except (errors.Gone, TimeoutError):
            continue


def _same_scope(a: object_pb2.Object, b: object_pb2.Object) -> bool:
    return (a.metadata.zone, a.metadata.workspace) == (b.metadata.zone, b.metadata.workspace)


async def dependents_gone(client: Client, owner: object_pb2.Object, *,
                          timeout: float | None = None) -> None:  # noqa: ASYNC109
    """Return once nothing in ``owner``'s zone and workspace names it (its uid) as an
    owner any more. Dependents are deleted by dora-controllers' garbage collector right
    after their owner (background cascade): ``delete --wait`` and the SDK's
    ``delete(wait=True)`` wait for this too, so what a Workload or a Task owned is gone
    when they return. Kinds the caller may not list are not waited for."""
    meta = owner.metadata
    if not (meta.zone and meta.workspace):
        return
    owned = [k.name for k in kinds.KINDS if k.zoned and k.workspaced]
    delay = 0.05
    try:
        async with asyncio.timeout(timeout):
            while True:
                left = None
                for kind in owned:
                    try:
                        items, _ = await client.list(kind, zone=meta.zone,
                                                     workspace=meta.workspace)
                    except errors.Forbidden:
                        continue
                    left = next((i for i in items if any(
                        o.uid == meta.uid for o in i.metadata.owner_references)), None)
                    if left is not None:
                        break
                if left is None:
                    return
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)
    except TimeoutError:
        raise WaitTimeout(
            f"timed out after {timeout:g}s waiting for what {owner.kind} {meta.name} owned "
            f"to be deleted (is dora-controllers' garbage collector running?)") from None
