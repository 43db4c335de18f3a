"""The ``Resources`` gRPC service: authenticate, authorize, then registry or cache.

Nothing here decides what a write means (that is ``registry``) or how watchers
share an etcd watch (``watchcache``). This module names the verb each call
needs, checks it on the resolved object (its zone and workspace after
defaults, never what the client claims elsewhere), and turns
``errors.DoraError`` into gRPC status codes with field details.

Get and List served from the watch cache send the objects as the cache
serialized them (a handler may return bytes: ``grpcservice``), so a read
copies and serializes nothing per object.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from dora.api import errors, grpcservice, kinds, labels, objects, tasks
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, resources_pb2, workloads_pb2
from dora.apiserver import registry
from dora.apiserver.auth.authenticator import Authenticator
from dora.apiserver.auth.authorizer import Authorizer, Principal
from dora.apiserver.registry import Registry, Scope
from dora.apiserver.watchcache import Filter, WatchCache, message_field

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")
Context = grpc.aio.ServicerContext[Any, Any]
_DESCRIPTOR = resources_pb2.DESCRIPTOR.services_by_name["Resources"]
SERVICE = _DESCRIPTOR.full_name
_LIST_ITEMS = resources_pb2.ListResponse.DESCRIPTOR.fields_by_name["items"].number


def unary(
    method: Callable[[Any, Request, Context], Awaitable[Response]],
) -> Callable[[Any, Request, Context], Awaitable[Response]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Request, context: Context) -> Response:
        try:
            return await method(self, request, context)
        except errors.DoraError as exc:
            await abort(context, exc)
            raise AssertionError("unreachable") from exc

    return wrapper


async def abort(context: Context, exc: errors.DoraError) -> None:
    code, message, trailers = errors.to_status(exc)
    await context.abort(code, message, trailing_metadata=trailers)


class ResourcesService:
    def __init__(
        self,
        *,
        registry: Registry,
        cache: WatchCache,
        authenticator: Authenticator,
        authorizer: Authorizer,
        bookmark_every: float = 5.0,
    ) -> None:
        self.registry = registry
        self.cache = cache
        self.authn = authenticator
        self.authz = authorizer
        self.bookmark_every = bookmark_every

    def _scope(self, principal: Principal) -> Scope:
        return self.registry.scope_for(zone=principal.zone, workspace=principal.workspace)

    def _resolve(self, ref: Ref, principal: Principal) -> Ref:
        return self.registry.resolve(ref, scope=self._scope(principal))

    @unary
    async def Apply(
        self, request: resources_pb2.ApplyRequest, context: Context
    ) -> resources_pb2.ApplyResponse:
        principal = await self.authn.authenticate(context)
        obj = request.object
        kinds.get(obj.kind)
        ref = self._resolve(objects.ref_of(obj), principal)
        finalizers_only = False
        if not self.authz.allows(principal, "Apply", ref.kind, ref.zone, ref.workspace):
            if self.authz.allows(principal, "Finalize", ref.kind, ref.zone, ref.workspace):
                finalizers_only = True
            else:
                await self.authz.require(principal, "Apply", ref.kind, ref.zone, ref.workspace)
        template = _workload_spec(obj)
        if template is not None:
            await self._authorize_workload(principal, ref, template)
        if obj.kind == "Task":
            await self._authorize_task_verbs(principal, ref, obj)
        stored, result = await self.registry.apply(
            obj, dry_run=request.dry_run, create_only=request.create_only,
            finalizers_only=finalizers_only, scope=self._scope(principal),
        )
        return resources_pb2.ApplyResponse(object=stored, result=result)

    async def _authorize_workload(
        self, principal: Principal, ref: Ref, spec: workloads_pb2.WorkloadSpec
    ) -> None:
        """What a workload reaches beyond its own workspace needs its own permission."""
        for volume in spec.volumes:
            if volume.workspace and volume.workspace != ref.workspace:
                await self.authz.require(principal, "Use", "Volume", ref.zone, volume.workspace)
        if spec.network.mode.lower() == "host" and not self.authz.allows(
            principal, "HostNetwork", "Workload", ref.zone, ref.workspace
        ):
            raise errors.Forbidden(
                f"network mode host needs special permission (verb HostNetwork on Workload in "
                f"zone {ref.zone!r}, workspace {ref.workspace!r}); ask an administrator",
                violations=(errors.FieldViolation("spec.network.mode", "host is not allowed"),),
            )

    async def _authorize_task_verbs(self, principal: Principal, ref: Ref,
                                    obj: object_pb2.Object) -> None:
        """Killing a task (``spec.killed`` set) and retrying it (``spec.retry`` raised)
        need the verbs ``Kill`` and ``Retry`` on Task, besides ``Apply``."""
        try:
            current = (await self.registry.get(ref)).task.spec
        except errors.NotFound:
            current = None
        spec = obj.task.spec
        if spec.killed and not (current is not None and current.killed):
            await self.authz.require(principal, "Kill", "Task", ref.zone, ref.workspace)
        if spec.retry > (current.retry if current is not None else 0):
            await self.authz.require(principal, "Retry", "Task", ref.zone, ref.workspace)

    @unary
    async def Get(
        self, request: resources_pb2.GetRequest, context: Context
    ) -> object_pb2.Object | bytes:
        principal = await self.authn.authenticate(context)
        ref = self._resolve(Ref.from_proto(request.ref), principal)
        if not self.authz.allows_own(principal, ref.kind, ref.zone, ref.name):
            await self.authz.require(principal, "Get", ref.kind, ref.zone, ref.workspace)
        if request.resource_version:
            cache = self.cache[ref.kind]
            if await cache.caught_up(request.resource_version):
                entry = cache.entry(registry.key(ref))
                if entry is None:
                    raise errors.NotFound(f"{ref} not found")
                return entry.object_bytes
        return await self.registry.get(ref)

    async def _authorize_read(
        self, principal: Principal, kind_name: str, zone: str, workspace: str
    ) -> Callable[[str, str, str], bool]:
        """Check a list or watch of a kind, and return the per-object filter."""
        kind = kinds.get(kind_name)
        narrowed = (not kind.zoned or zone) and (not kind.workspaced or workspace)
        own = kind.name == "Usercredit" and self.authz.grants_own_credits(
            principal, zone=zone or None)
        if own:
            pass  # the filter shows them their own Usercredit, nothing else
        elif narrowed:
            await self.authz.require(principal, "Get", kind.name, zone, workspace)
        else:
            await self.authz.require_somewhere(principal, "Get", kind.name)
        return self.authz.permits(principal, "Get", kind.name)

    @unary
    async def List(
        self, request: resources_pb2.ListRequest, context: Context
    ) -> resources_pb2.ListResponse | bytes:
        principal = await self.authn.authenticate(context)
        zone, workspace = _scope_of(request.kind, request.zone, request.workspace)
        permits = await self._authorize_read(principal, request.kind, zone, workspace)
        selector = labels.parse(request.label_selector)
        cache = self.cache[request.kind]
        if request.resource_version and await cache.caught_up(request.resource_version):
            # A ListResponse assembled from the cached serializations: its items
            # (field 1), then its resourceVersion; no continue token.
            parts = [
                message_field(_LIST_ITEMS, e.object_bytes) for e in cache.select(selector)
                if (not zone or e.zone == zone)
                and (not workspace or e.workspace == workspace)
                and permits(e.zone, e.workspace, e.object.metadata.name)
            ]
            parts.append(resources_pb2.ListResponse(
                resource_version=cache.revision).SerializeToString())
            return b"".join(parts)
        items, revision, token = await self.registry.list(
            request.kind, zone=zone, workspace=workspace,
            selector=selector, limit=request.limit, continue_token=request.continue_token,
        )
        visible = [o for o in items
                   if permits(o.metadata.zone, o.metadata.workspace, o.metadata.name)]
        return resources_pb2.ListResponse(
            items=visible, resource_version=revision, continue_token=token
        )

    @unary
    async def UpdateStatus(
        self, request: resources_pb2.UpdateStatusRequest, context: Context
    ) -> object_pb2.Object:
        principal = await self.authn.authenticate(context)
        ref = self._resolve(objects.ref_of(request.object), principal)
        await self.authz.require(principal, "UpdateStatus", ref.kind, ref.zone, ref.workspace)
        request.object.metadata.zone, request.object.metadata.workspace = ref.zone, ref.workspace
        return await self.registry.update_status(request.object)

    @unary
    async def Delete(
        self, request: resources_pb2.DeleteRequest, context: Context
    ) -> resources_pb2.DeleteResponse:
        principal = await self.authn.authenticate(context)
        ref = self._resolve(Ref.from_proto(request.ref), principal)
        await self.authz.require(principal, "Delete", ref.kind, ref.zone, ref.workspace)
        obj = await self.registry.delete(ref, resource_version=request.resource_version)
        return resources_pb2.DeleteResponse(object=obj)

    async def Watch(
        self, request: resources_pb2.WatchRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """Yields serialized ``WatchEvent`` bytes: the server sends them as they are."""
        try:
            principal = await self.authn.authenticate(context)
            zone, workspace = _scope_of(request.kind, request.zone, request.workspace)
            permits = await self._authorize_read(principal, request.kind, zone, workspace)
            cache = self.cache[request.kind]
            watch_filter = Filter(
                zone=zone, workspace=workspace,
                selector=labels.parse(request.label_selector), permits=permits,
            )
            async for payload in cache.watch(
                resource_version=request.resource_version, filter=watch_filter,
                bookmark_every=self.bookmark_every,
            ):
                yield payload
        except errors.DoraError as exc:
            await abort(context, exc)

    def methods(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        """The handler of each method, for ``add_registered_method_handlers`` (the
        server then matches calls to them without asking each generic handler)."""
        return grpcservice.method_handlers(_DESCRIPTOR, self)


def _workload_spec(obj: object_pb2.Object) -> workloads_pb2.WorkloadSpec | None:
    if obj.kind == "Workload":
        return obj.workload.spec
    if obj.kind == "Container":
        return obj.container.spec.template
    if obj.kind == "Task":
        return tasks.template(obj)
    return None


def _scope_of(kind_name: str, zone: str, workspace: str) -> tuple[str, str]:
    """The zone and workspace a list or watch narrows to: a kind without a zone (or a
    workspace) ignores that part, so one scope serves a client watching several kinds."""
    kind = kinds.get(kind_name)
    return (zone if kind.zoned else ""), (workspace if kind.workspaced else "")
