"""The ``Workspaces`` gRPC service: cloning a workspace (the tutorial's "clone it").

A clone copies definitions, never running things: the source's Volumes as
they are, its Workloads stopped (``spec.stopped``), no Containers, no status.
The caller's role bindings on the source are copied onto the new workspace, so
they may use the clone as they use the source.

Everything is decided before anything is written, and written in one etcd
transaction (the new Workspace, every copy, the caller's User): a refused or
failed clone leaves nothing behind. It needs ``Clone`` on the source Workspace
(the seeds' ``Workspace: [Clone]``, through a binding to that workspace), and
``Get`` and ``Apply`` on each kind it copies there: the caller's rights in the
clone are copies of those. Authorization comes first and does not look at what
exists, so "not yours" and "absent" answer alike for a workspace one may not see.
The destination must be new.
"""

from __future__ import annotations

from typing import Any

import grpc

from dora.api import errors, grpcservice, objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, tokens_pb2
from dora.apiserver.auth.authorizer import ALL, Authorizer, Principal
from dora.apiserver.registry import Registry
from dora.apiserver.rpc import Context, caller, unary

SERVICE = "dora.api.v1.Workspaces"
CLONED_KINDS = ("Volume", "Workload")
# etcd refuses a transaction of more than 128 operations (--max-txn-ops): the new
# Workspace, the caller's User and the copies must fit in one.
MAX_COPIES = 120
_ATTEMPTS = 5


class WorkspacesService:
    def __init__(self, *, registry: Registry, authorizer: Authorizer) -> None:
        self.registry = registry
        self.authz = authorizer

    @unary
    async def Clone(
        self, request: tokens_pb2.CloneWorkspaceRequest, context: Context
    ) -> tokens_pb2.CloneWorkspaceResponse:
        principal = caller()
        source, destination = request.source, request.destination
        if not source:
            raise errors.Invalid("required", field="source")
        if not destination:
            raise errors.Invalid("required", field="destination")
        if source == destination:
            raise errors.Invalid("must differ from the source", field="destination")
        await self.authz.require_place(principal, "Clone", "Workspace", source)
        for _ in range(_ATTEMPTS):
            await self.registry.get(Ref("Workspace", "", "", source))
            plan = await self._plan(principal, source, destination, request.zone)
            user = await self._user_with_bindings(principal, source, destination)
            created = await self.registry.write_all(
                create=[objects.new("Workspace", destination), *plan],
                update=[user] if user is not None else [],
            )
            if created:
                return tokens_pb2.CloneWorkspaceResponse(
                    copied=[str(objects.ref_of(obj)) for obj in plan])
            try:
                await self.registry.get(Ref("Workspace", "", "", destination))
            except errors.NotFound:
                continue  # the source or the caller's User moved on: plan again
            raise errors.AlreadyExists(
                f"workspace {destination!r} already exists; a clone makes a new one",
                violations=(errors.FieldViolation("destination", "already exists"),))
        raise errors.Unavailable(f"workspace {source!r} kept changing; try again")

    async def _plan(self, principal: Principal, source: str, destination: str,
                    zone: str) -> list[object_pb2.Object]:
        """The copies to create, each authorized where its original is."""
        plan: list[object_pb2.Object] = []
        for kind in CLONED_KINDS:
            items, _, _ = await self.registry.list(kind, zone=zone, workspace=source)
            for item in items:
                at = item.metadata.zone
                await self.authz.require(principal, "Get", kind, at, source)
                await self.authz.require(principal, "Apply", kind, at, source)
                plan.append(_copy(item, destination))
        if len(plan) > MAX_COPIES:
            raise errors.Invalid(
                f"workspace {source!r} holds {len(plan)} volumes and workloads; a clone copies "
                f"at most {MAX_COPIES} in one transaction", field="source")
        return plan

    async def _user_with_bindings(
        self, principal: Principal, source: str, destination: str
    ) -> tuple[object_pb2.Object, object_pb2.Object] | None:
        """The caller's User (as read, and with its bindings on ``source`` copied onto
        ``destination``), or None when nothing is to copy (e.g. bound to All)."""
        try:
            current = await self.registry.get(Ref("User", "", "", principal.user))
        except errors.NotFound:
            return None
        wanted = object_pb2.Object()
        wanted.CopyFrom(current)
        resources = wanted.user.spec.resources
        for binding in list(resources):
            if binding.workspace != source or binding.workspace == ALL:
                continue
            copy = type(binding)()
            copy.CopyFrom(binding)
            copy.workspace = destination
            if copy not in resources:
                resources.append(copy)
        if wanted == current:
            return None
        return current, wanted

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpcservice.handler(tokens_pb2.DESCRIPTOR.services_by_name["Workspaces"], self)


def _copy(item: object_pb2.Object, workspace: str) -> object_pb2.Object:
    copy = objects.new(item.kind, item.metadata.name, zone=item.metadata.zone,
                       workspace=workspace)
    copy.metadata.labels.update(item.metadata.labels)
    copy.metadata.annotations.update(item.metadata.annotations)
    spec = objects.body(item).spec  # type: ignore[attr-defined]
    objects.body(copy).spec.CopyFrom(spec)  # type: ignore[attr-defined]
    if copy.kind == "Workload":
        copy.workload.spec.stopped = True
    return copy
