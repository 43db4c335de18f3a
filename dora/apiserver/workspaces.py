"""The ``Workspaces`` gRPC service: cloning a workspace (the tutorial's "clone it").

A clone copies definitions, never running things: the source's Volumes as
they are, its Workloads stopped (``spec.stopped``), no Containers, no status.
It needs ``Clone`` on the Workspace, ``Get`` on what is read and ``Apply`` on
what is written, each checked in its own workspace.
"""

from __future__ import annotations

from typing import Any

import grpc

from dora.api import errors, grpcservice, objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, tokens_pb2
from dora.apiserver.auth.authenticator import Authenticator
from dora.apiserver.auth.authorizer import Authorizer
from dora.apiserver.registry import Registry
from dora.apiserver.service import Context, unary

SERVICE = "dora.api.v1.Workspaces"
CLONED_KINDS = ("Volume", "Workload")


class WorkspacesService:
    def __init__(self, *, registry: Registry, authenticator: Authenticator,
                 authorizer: Authorizer) -> None:
        self.registry = registry
        self.authn = authenticator
        self.authz = authorizer

    @unary
    async def Clone(
        self, request: tokens_pb2.CloneWorkspaceRequest, context: Context
    ) -> tokens_pb2.CloneWorkspaceResponse:
        principal = await self.authn.authenticate(context)
        source, destination = request.source, request.destination
        if not source or not destination:
            raise errors.Invalid("source and destination are required", field="destination")
        if source == destination:
            raise errors.Invalid("must differ from the source", field="destination")
        await self.authz.require(principal, "Clone", "Workspace", "", "")
        await self.registry.get(Ref("Workspace", "", "", source))
        try:
            await self.registry.get(Ref("Workspace", "", "", destination))
        except errors.NotFound:
            await self.registry.apply(objects.new("Workspace", destination))
        plan: list[object_pb2.Object] = []
        for kind in CLONED_KINDS:
            items, _, _ = await self.registry.list(kind, zone=request.zone, workspace=source)
            for item in items:
                zone = item.metadata.zone
                await self.authz.require(principal, "Get", kind, zone, source)
                await self.authz.require(principal, "Apply", kind, zone, destination)
                plan.append(_copy(item, destination))
        copied = []
        for obj in plan:
            stored, _ = await self.registry.apply(obj)
            copied.append(str(objects.ref_of(stored)))
        return tokens_pb2.CloneWorkspaceResponse(copied=copied)

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
