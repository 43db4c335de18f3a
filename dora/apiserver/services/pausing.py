"""The ``Pausing`` gRPC service: freeze and thaw a Workload's or a Container's
Docker containers (``doractl pause|resume workload|container NAME``).

Pausing is the desired ``spec.paused`` of the Workload and of each Container; the
node's agent makes Docker match (``docker pause`` / ``unpause``) and reports the
phase Paused. It is a call of its own, not an Apply, so that the verbs ``Pause``
and ``Resume`` (seed 001's user role) grant exactly this and nothing more: a user
who may pause may not change the image. Apply, for its part, keeps the stored
``spec.paused`` (``registry``), so applying a file again never thaws anything.

Pausing a workload writes ``spec.paused`` on the workload (its controller gives
the containers it makes later the same) and on each of its containers now. The
field makes no workload version (``dora.controllers.workload.versions``), so
pausing replaces nothing. A paused container keeps its GPUs and CPUs, so its
credits keep counting. A stopped workload runs nothing to pause: refused, and
nothing is written.
"""

from __future__ import annotations

from typing import Any

import grpc

from dora.api import errors, grpcservice, objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, pausing_pb2
from dora.apiserver.auth.authorizer import Authorizer
from dora.apiserver.registry import Registry, Scope
from dora.apiserver.rpc import Context, caller, unary

SERVICE = "dora.api.v1.Pausing"
KINDS = ("Workload", "Container")
_RETRIES = 8


class PausingService:
    def __init__(self, *, registry: Registry, authorizer: Authorizer) -> None:
        self.registry = registry
        self.authz = authorizer

    @unary
    async def SetPaused(
        self, request: pausing_pb2.SetPausedRequest, context: Context
    ) -> pausing_pb2.SetPausedResponse:
        principal = caller()
        asked = Ref.from_proto(request.ref)
        if asked.kind not in KINDS:
            raise errors.Invalid(f"only a Workload or a Container can be paused, not a "
                                 f"{asked.kind or 'kind left empty'}", field="ref.kind")
        scope = self.registry.scope_for(zone=principal.zone, workspace=principal.workspace)
        ref = self.registry.resolve(asked, scope=scope)
        verb = "Pause" if request.paused else "Resume"
        await self.authz.require(principal, verb, ref.kind, ref.zone, ref.workspace)
        current = await self.registry.get(ref)
        if ref.kind == "Workload":
            stopped = current.workload.spec.stopped
            owner = ""
        else:
            stopped = False
            owner = current.container.spec.workload
        if owner and request.paused:
            workload = await self._get(Ref("Workload", ref.zone, ref.workspace, owner))
            stopped = workload is not None and workload.workload.spec.stopped
        if request.paused and stopped:
            raise errors.Invalid(
                f"{ref.kind.lower()} {ref.name} belongs to a stopped workload: nothing runs "
                "to pause (start it first)" if owner else
                f"workload {ref.name} is stopped: nothing runs to pause (start it first)",
                field="spec.paused")
        if request.paused and ref.kind == "Container" and current.container.status.phase in (
                "Exited", "Failed", "Lost"):
            raise errors.Invalid(f"container {ref.name} is {current.container.status.phase}: "
                                 "nothing runs to pause", field="spec.paused")
        stored = await self._set(ref, request.paused, scope=scope)
        changed: list[str] = []
        if ref.kind == "Workload":
            items, _, _ = await self.registry.list("Container", zone=ref.zone,
                                                   workspace=ref.workspace)
            for item in items:
                if not _owned_by(item, stored) or item.metadata.HasField("deletion_timestamp"):
                    continue
                if item.container.spec.paused != request.paused:
                    await self._set(objects.ref_of(item), request.paused, scope=scope)
                    changed.append(f"{item.metadata.workspace}/{item.metadata.name}")
        elif current.container.spec.paused != request.paused:
            changed.append(f"{ref.workspace}/{ref.name}")
        return pausing_pb2.SetPausedResponse(object=stored, containers=changed)

    async def _get(self, ref: Ref) -> object_pb2.Object | None:
        try:
            return await self.registry.get(ref)
        except errors.NotFound:
            return None

    async def _set(self, ref: Ref, paused: bool, *, scope: Scope) -> object_pb2.Object:
        """Write ``spec.paused`` with the stored object as the precondition."""
        for _ in range(_RETRIES):
            current = await self.registry.get(ref)
            spec = objects.body(current).spec  # type: ignore[attr-defined]
            if spec.paused == paused:
                return current
            spec.paused = paused
            try:
                stored, _ = await self.registry.apply(current, scope=scope, set_paused=True)
            except errors.Conflict:
                continue
            return stored
        raise errors.Unavailable(f"{ref}: it kept changing; try again")

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpcservice.handler(pausing_pb2.DESCRIPTOR.services_by_name["Pausing"], self)


def _owned_by(obj: object_pb2.Object, owner: object_pb2.Object) -> bool:
    return any(o.uid == owner.metadata.uid for o in obj.metadata.owner_references)
