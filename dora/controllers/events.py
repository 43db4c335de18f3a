"""Events: what the controllers did and saw, stored for ``doractl describe``.

An Event lives in the zone and workspace of the object it is about, carries
``spec.involvedObject`` and the label ``dora.io/workload`` (when the name fits a
label), and is owned by that Workload, so it is deleted with it. The same
reason and message about the same object is one Event whose ``count`` grows
(Kubernetes' aggregation), which keeps a retrying controller from filling etcd.

Recording never blocks a reconcile and never fails one: ``record`` puts the
event in a bounded buffer that ``run`` writes out; when the buffer is full the
event is dropped and logged. Objects without a workspace (Nodes) get no Event
object, only a log line.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import re
from dataclasses import dataclass

import anyio

from dora.api import conventions, errors, kinds, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.runtime.clock import Clock

log = logging.getLogger(__name__)

NORMAL, WARNING = "Normal", "Warning"
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_REMEMBERED = 512


@dataclass(frozen=True)
class _Pending:
    type: str
    reason: str
    message: str
    involved: object_pb2.Object


def label_value_ok(value: str) -> bool:
    return bool(_LABEL_VALUE.match(value))


def event_name(involved: object_pb2.Object, reason: str, message: str) -> str:
    digest = hashlib.sha256(
        "\0".join((involved.kind, involved.metadata.name, reason, message)).encode()
    ).hexdigest()[:12]
    return f"{involved.metadata.name[:200]}.{digest}"


class Recorder:
    def __init__(self, *, client: Client, clock: Clock, source: str,
                 capacity: int = 1000) -> None:
        self.client = client
        self.clock = clock
        self.source = source
        self.capacity = capacity
        self._pending: collections.deque[_Pending] = collections.deque()
        self._wake = anyio.Event()
        self._known: collections.OrderedDict[str, object_pb2.Object] = collections.OrderedDict()
        self.written = 0
        self.dropped = 0

    def normal(self, involved: object_pb2.Object, reason: str, message: str) -> None:
        self.record(involved, reason, message, type=NORMAL)

    def warning(self, involved: object_pb2.Object, reason: str, message: str) -> None:
        self.record(involved, reason, message, type=WARNING)

    def record(self, involved: object_pb2.Object, reason: str, message: str, *,
               type: str = NORMAL) -> None:
        log.info("%s %s/%s: %s: %s", type, involved.kind, involved.metadata.name, reason,
                 message)
        if not involved.metadata.workspace:
            return
        if len(self._pending) >= self.capacity:
            self.dropped += 1
            log.warning("event buffer full; dropped %s %s", reason, involved.metadata.name)
            return
        self._pending.append(_Pending(type, reason, message, involved))
        self._wake.set()

    async def run(self) -> None:
        """Write the recorded events out, in order, for as long as it runs."""
        while True:
            while self._pending:
                pending = self._pending.popleft()
                try:
                    await self._write(pending)
                    self.written += 1
                except Exception as exc:  # events are best effort: never stop for one
                    log.warning("recording event %s about %s: %s", pending.reason,
                                pending.involved.metadata.name, exc)
            self._wake = anyio.Event()
            await self._wake.wait()

    async def _write(self, pending: _Pending) -> None:
        involved = pending.involved
        name = event_name(involved, pending.reason, pending.message)
        known = self._known.get(name)
        if known is not None:
            try:
                await self._bump(known)
                return
            except (errors.Conflict, errors.NotFound):
                self._known.pop(name, None)
        event = self._new(name, pending)
        try:
            created, _ = await self.client.apply(event, create_only=True)
            self._remember(created)
        except errors.AlreadyExists:
            current = await self.client.get(kinds.EVENT, name, zone=involved.metadata.zone,
                                            workspace=involved.metadata.workspace)
            await self._bump(current)

    async def _bump(self, current: object_pb2.Object) -> None:
        event = object_pb2.Object()
        event.CopyFrom(current)
        event.event.spec.count += 1
        event.event.spec.last_timestamp.FromDatetime(self.clock.wall())
        updated, _ = await self.client.apply(event)
        self._remember(updated)

    def _remember(self, event: object_pb2.Object) -> None:
        self._known[event.metadata.name] = event
        self._known.move_to_end(event.metadata.name)
        while len(self._known) > _REMEMBERED:
            self._known.popitem(last=False)

    def _new(self, name: str, pending: _Pending) -> object_pb2.Object:
        involved = pending.involved
        meta = involved.metadata
        event = objects.new(kinds.EVENT, name, zone=meta.zone, workspace=meta.workspace)
        spec = event.event.spec
        spec.type = pending.type
        spec.reason = pending.reason
        spec.message = pending.message
        spec.involved_object.kind = involved.kind
        spec.involved_object.name = meta.name
        spec.involved_object.uid = meta.uid
        spec.count = 1
        now = self.clock.wall()
        spec.first_timestamp.FromDatetime(now)
        spec.last_timestamp.FromDatetime(now)
        spec.source = self.source
        owner = _workload_of(involved)
        if owner is not None:
            event.metadata.owner_references.add(kind=kinds.WORKLOAD, name=owner[0], uid=owner[1])
            if label_value_ok(owner[0]):
                event.metadata.labels[conventions.WORKLOAD_LABEL] = owner[0]
        else:
            # A task's job: the event goes with the task (10,000 jobs, 10,000 events).
            task = next((o for o in meta.owner_references
                         if o.kind == kinds.TASK and o.controller), None)
            if task is not None:
                event.metadata.owner_references.add(kind=kinds.TASK, name=task.name, uid=task.uid)
        return event


def _workload_of(obj: object_pb2.Object) -> tuple[str, str] | None:
    """The (name, uid) of the Workload an object belongs to, if any."""
    if obj.kind == kinds.WORKLOAD:
        return obj.metadata.name, obj.metadata.uid
    for owner in obj.metadata.owner_references:
        if owner.kind == kinds.WORKLOAD and owner.controller:
            return owner.name, owner.uid
    return None
