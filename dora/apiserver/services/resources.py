"""The ``Resources`` gRPC service: authorize the caller the gate authenticated, then
registry or cache.

Nothing here decides what a write means (that is ``registry``) or how watchers
share an etcd watch (``watchcache``). This module names the verb each call
needs, checks it on the resolved object (its zone and workspace after
defaults, never what the client claims elsewhere), and turns
``errors.DoraError`` into gRPC status codes with field details.

Get and List served from the watch cache send the objects as the cache
serialized them (a handler may return bytes: ``grpcservice``), so a read
copies and serializes nothing per object.

A List without a resourceVersion (``doractl get``, an informer's first list) is
a consistent read, and it too is served from the watch cache (Kubernetes'
consistent reads from cache): it reads etcd's current revision (one key,
counted), waits until the cache has seen it (``CONSISTENT_WAIT`` at most, else
it reads etcd as before), and answers from the cache, so it never misses a write
acknowledged before it began. Its pages are cut from a snapshot of the kind at
that revision (``watchcache.Snapshot``) whose continue tokens are etcd's own
(revision, next key): a next page finds the snapshot by its revision, or reads
etcd at that revision when the cache no longer keeps it, and is ``Gone`` once
etcd compacted the revision, either way. Paging through n objects costs n;
read from etcd it cost about n^2/limit, since etcd counts the whole range for
every page.

A node's calls are held to ``noderestriction`` here, on the stored object: its
own Node and Lease, the Containers bound to it. Binding fields of a Container
(``BINDING``: the node, GPUs, CPU share and the labels that say where it is
bound) are written only by a caller with the ``Bind`` verb (the scheduler's
identity); anyone else's Apply that would set or change one is refused naming
the field, so every Container goes through the scheduler and its credit checks.
A Lease object is bound only to an etcd lease the caller was granted.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from dora.api import conventions, errors, grpcservice, kinds, labels, objects, tasks
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, resources_pb2, workloads_pb2
from dora.apiserver import registry
from dora.apiserver.admission import DEFAULT_LIMITS, Limits
from dora.apiserver.auth import noderestriction
from dora.apiserver.auth.authorizer import PLACE_KINDS, Authorizer, Principal
from dora.apiserver.leaseowners import owns
from dora.apiserver.quotas import ContainerQuotas
from dora.apiserver.registry import Registry, Scope
from dora.apiserver.rpc import Context, abort, caller, unary
from dora.apiserver.storage import prefix_end
from dora.apiserver.watchcache import (
    CachedEvent,
    Filter,
    KindCache,
    WatchCache,
    message_field,
    too_large,
)

log = logging.getLogger(__name__)

_DESCRIPTOR = resources_pb2.DESCRIPTOR.services_by_name["Resources"]
SERVICE = _DESCRIPTOR.full_name
# The kinds a workspace holds at most ``Limits.max_objects_per_workspace`` of.
QUOTA_KINDS = ("Container", "Workload", "Task")
_LIST_ITEMS = resources_pb2.ListResponse.DESCRIPTOR.fields_by_name["items"].number
# How long a List without a resourceVersion waits for the watch cache to reach
# etcd's current revision before it reads etcd instead.
CONSISTENT_WAIT = 1.0


class ResourcesService:
    def __init__(
        self,
        *,
        registry: Registry,
        cache: WatchCache,
        authorizer: Authorizer,
        bookmark_every: float = 5.0,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.registry = registry
        self.limits = limits
        self.cache = cache
        self.authz = authorizer
        self.bookmark_every = bookmark_every
        self.container_quotas = ContainerQuotas(cache=cache, authz=authorizer)

    def _scope(self, principal: Principal) -> Scope:
        return self.registry.scope_for(zone=principal.zone, workspace=principal.workspace)

    def _resolve(self, ref: Ref, principal: Principal) -> Ref:
        return self.registry.resolve(ref, scope=self._scope(principal))

    @unary
    async def Apply(
        self, request: resources_pb2.ApplyRequest, context: Context
    ) -> resources_pb2.ApplyResponse:
        principal = caller()
        obj = request.object
        kinds.get(obj.kind)
        ref = self._resolve(objects.ref_of(obj), principal)
        finalizers_only = False
        if ref.kind in PLACE_KINDS:
            await self.authz.require_place(principal, "Apply", ref.kind, ref.name)
        elif not self.authz.allows(principal, "Apply", ref.kind, ref.zone, ref.workspace):
            if self.authz.allows(principal, "Finalize", ref.kind, ref.zone, ref.workspace):
                finalizers_only = True
            else:
                await self.authz.require(principal, "Apply", ref.kind, ref.zone, ref.workspace)
        node = self.authz.node_of(principal)
        if node is not None:
            await self._node_check(node, principal, "Finalize" if finalizers_only else "Apply",
                                   ref)
        template = _workload_spec(obj)
        if template is not None:
            await self._authorize_workload(principal, ref, template)
        check = None
        if ref.kind == "Container" and not finalizers_only and not self.authz.allows(
                principal, "Bind", ref.kind, ref.zone, ref.workspace):
            check = _refuse_binding
        if ref.kind == "Lease" and obj.lease.spec.lease_id and not await owns(
                self.registry.etcd, principal, obj.lease.spec.lease_id):
            raise errors.NotFound(
                f"no lease {obj.lease.spec.lease_id:x} of yours: a Lease is bound only to an "
                "etcd lease its writer was granted (Leases.Grant)",
                violations=(errors.FieldViolation("spec.leaseId", "not a lease of yours"),))
        if obj.kind == "Task":
            await self._authorize_task_verbs(principal, ref, obj)
        if not finalizers_only:
            self._check_quota(ref, principal)
        creating = not finalizers_only and self.cache[ref.kind].get(registry.key(ref)) is None
        async with self.container_quotas.admitting(ref, creating=creating) as ticket:
            stored, result = await self.registry.apply(
                obj, dry_run=request.dry_run, create_only=request.create_only,
                finalizers_only=finalizers_only, scope=self._scope(principal), check=check,
            )
            if not request.dry_run:
                ticket.revision = stored.metadata.resource_version
        return resources_pb2.ApplyResponse(object=stored, result=result)

    def _check_quota(self, ref: Ref, principal: Principal) -> None:
        """Refuse to create a Container, Workload or Task in a workspace that holds
        ``max_objects_per_workspace`` of them, or a Workload of a user who has
        ``max_workloads_per_user`` (the watch cache's counts). Changes and deletes are
        never refused, so a full workspace can always scale down; the controllers'
        creations count too (their reconcile retries later)."""
        if ref.kind not in QUOTA_KINDS or self.cache[ref.kind].get(
                registry.key(ref)) is not None:
            return
        used = sum(self.cache[kind].count(ref.zone, ref.workspace) for kind in QUOTA_KINDS)
        limit = self.limits.max_objects_per_workspace
        if used >= limit:
            raise errors.Exhausted(
                f"workspace {ref.workspace!r} in zone {ref.zone!r} holds {used} Containers, "
                f"Workloads and Tasks; the limit is {limit} (dora-apiserver "
                f"--max-objects-per-workspace): delete some, or scale down, first")
        if ref.kind != "Workload":
            return
        user = self._user_of(ref.workspace, principal)
        if user is None:
            return
        name = user.metadata.name
        workspaces = sorted({name, user.user.spec.defaults.workspace} - {""})
        used = sum(self.cache["Workload"].count("", ws) for ws in workspaces)
        limit = self.limits.max_workloads_per_user
        if used >= limit:
            raise errors.Exhausted(
                f"user {name!r} has {used} Workloads (in workspace "
                f"{', '.join(repr(ws) for ws in workspaces)}, all zones); the limit is "
                f"{limit} (dora-apiserver --max-workloads-per-user): delete some first")

    def _user_of(self, workspace: str, principal: Principal) -> object_pb2.Object | None:
        """Whose Workloads one in ``workspace`` counts as: the User named like the
        workspace (each user's own, in the seeds), else the caller's when it is their
        default workspace; None for a shared workspace."""
        user = self.authz.user(workspace)
        if user is not None:
            return user
        caller = self.authz.user(principal.user)
        if caller is not None and caller.user.spec.defaults.workspace == workspace:
            return caller
        return None

    async def _stored(self, ref: Ref) -> object_pb2.Object | None:
        """The object as stored (the watch cache's, else etcd's); None if absent."""
        cached = self.cache[ref.kind].get(registry.key(ref))
        if cached is not None:
            return cached
        try:
            return await self.registry.get(ref)
        except errors.NotFound:
            return None

    async def _node_check(self, node: str, principal: Principal, verb: str, ref: Ref,
                          stored: object_pb2.Object | None = None) -> None:
        """``noderestriction.check`` on the object as stored."""
        if ref.kind == "Container" and node and stored is None:
            stored = await self._stored(ref)
        found = None if stored is None else stored.metadata.labels
        noderestriction.check(node, principal.user, verb, ref.kind, ref.name, found)

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
        if spec.priority > 0 and not self.authz.allows(principal, "Priority", "Workload",
                                                       ref.zone, ref.workspace):
            where = "spec.template" if ref.kind == "Container" else "spec"
            raise errors.Forbidden(
                f"priority {spec.priority} needs special permission (verb Priority on Workload "
                f"in zone {ref.zone!r}, workspace {ref.workspace!r}); 0 or less needs none",
                violations=(errors.FieldViolation(f"{where}.priority", "above 0 is not allowed"),),
            )
        floor = self.limits.privileged_port_floor
        low = [(i, p.node_port) for i, p in enumerate(spec.network.ports)
               if 0 < p.node_port < floor]
        if low and not self.authz.allows(principal, "PrivilegedPort", "Workload", ref.zone,
                                         ref.workspace):
            raise errors.Forbidden(
                f"nodePort {low[0][1]} is below {floor}: such ports need special permission "
                f"(verb PrivilegedPort on Workload in zone {ref.zone!r}, workspace "
                f"{ref.workspace!r}); use a port from {floor} to 65535, or ask an "
                "administrator",
                violations=tuple(errors.FieldViolation(
                    f"{'spec.template' if ref.kind == 'Container' else 'spec'}"
                    f".network.ports[{i}].nodePort", f"{port} is below {floor}")
                    for i, port in low),
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
        principal = caller()
        ref = self._resolve(_named(request.ref), principal)
        if ref.kind in PLACE_KINDS:
            await self.authz.require_place(principal, "Get", ref.kind, ref.name)
        elif not self.authz.allows_own(principal, ref.kind, ref.zone, ref.name):
            await self.authz.require(principal, "Get", ref.kind, ref.zone, ref.workspace)
        node = self.authz.node_of(principal)
        if node is not None:
            stored = await self.registry.get(ref)
            await self._node_check(node, principal, "Get", ref, stored)
            return stored
        if request.resource_version:
            cache = self.cache[ref.kind]
            if await self._cached_at(cache, request.resource_version):
                entry = cache.entry(registry.key(ref))
                if entry is None:
                    raise errors.NotFound(f"{ref} not found")
                return entry.object_bytes
        return await self.registry.get(ref)

    async def _cached_at(self, cache: KindCache, resource_version: int) -> bool:
        """Whether the cache can answer a read at ``resource_version``; False when it
        lags (read etcd instead). A version the cluster has not reached is refused."""
        if resource_version < 0:
            raise errors.Invalid("must not be negative", field="resource_version")
        if await cache.caught_up(resource_version):
            return True
        current = await self.registry.etcd.revision()
        if resource_version > current:
            raise too_large(resource_version, current)
        return False

    async def _authorize_read(
        self, principal: Principal, kind_name: str, zone: str, workspace: str
    ) -> Callable[[str, str, str], bool]:
        """Check a list or watch of a kind, and return the per-object filter (a node's
        filter by name and labels is ``_node_filter``)."""
        kind = kinds.get(kind_name)
        narrowed = (not kind.zoned or zone) and (not kind.workspaced or workspace)
        own = kind.name == "Usercredit" and self.authz.grants_own_credits(
            principal, zone=zone or None)
        if own or kind.name in PLACE_KINDS:
            pass  # the filter shows their own Usercredit, or the places they are bound in
        elif narrowed:
            await self.authz.require(principal, "Get", kind.name, zone, workspace)
        else:
            await self.authz.require_somewhere(principal, "Get", kind.name)
        return self.authz.permits(principal, "Get", kind.name)

    @unary
    async def List(
        self, request: resources_pb2.ListRequest, context: Context
    ) -> resources_pb2.ListResponse | bytes:
        principal = caller()
        zone, workspace = _scope_of(request.kind, request.zone, request.workspace)
        permits = await self._authorize_read(principal, request.kind, zone, workspace)
        selector = labels.parse(request.label_selector)
        cache = self.cache[request.kind]
        visible = self._node_filter(principal, request.kind)

        def shown(e: CachedEvent) -> bool:
            """In the List's scope, and the caller may see it."""
            return ((not zone or e.zone == zone)
                    and (not workspace or e.workspace == workspace)
                    and permits(e.zone, e.workspace, e.object.metadata.name)
                    and (visible is None or visible(e.object.metadata.name, e.labels, None)))

        if request.resource_version and await self._cached_at(cache, request.resource_version):
            # A ListResponse assembled from the cached serializations: its items
            # (field 1), then its resourceVersion; no continue token.
            return _list_bytes([e for e in cache.select(selector) if shown(e)],
                               revision=cache.revision)
        if request.limit < 0:
            raise errors.Invalid("must be >= 0", field="limit")
        if not request.resource_version:
            served = await self._list_consistent(
                cache, request, prefix=registry.prefix(kinds.get(request.kind), zone, workspace),
                selector=selector, shown=shown)
            if served is not None:
                return served
        # The registry pages over what the caller may see: a page is full unless
        # the list ended, and its continue token says only that more visible
        # objects follow, never that invisible ones exist.
        items, revision, token = await self.registry.list(
            request.kind, zone=zone, workspace=workspace,
            selector=selector, limit=request.limit, continue_token=request.continue_token,
            visible=lambda o: permits(o.metadata.zone, o.metadata.workspace, o.metadata.name)
            and (visible is None or visible(o.metadata.name, o.metadata.labels, None)),
        )
        return resources_pb2.ListResponse(
            items=items, resource_version=revision, continue_token=token
        )

    async def _list_consistent(
        self, cache: KindCache, request: resources_pb2.ListRequest, *, prefix: bytes,
        selector: labels.Selector, shown: Callable[[CachedEvent], bool],
    ) -> bytes | None:
        """A page of a List without a resourceVersion from the watch cache, once it has
        seen etcd's current revision (or, for a next page, from the snapshot its
        token names); None when the cache cannot answer it (read etcd)."""
        end = prefix_end(prefix)
        if request.continue_token:
            revision, start = registry.parse_continue(request.continue_token, prefix)
            snapshot = cache.snapshot_at(revision)
            if snapshot is None:
                return None
            await self.registry.etcd.check_revision(revision)  # Gone, as etcd's page would be
            items, following = _page(
                snapshot.keys, snapshot.entries.__getitem__, start=start, end=end,
                limit=request.limit, keep=lambda e: selector.matches(e.labels) and shown(e))
            return _list_bytes(items, revision=revision, following=following)
        current = await self.registry.etcd.revision()
        if not await cache.consistent(current, within=CONSISTENT_WAIT):
            return None
        # No await from here on: the selection, the snapshot and the revision agree.
        revision = cache.revision
        keys: Sequence[bytes]
        entry: Callable[[int], CachedEvent]
        if selector:
            selected = cache.select(selector)
            keys, entry = [e.key for e in selected], selected.__getitem__
        else:
            keys, entry = cache.current()
        items, following = _page(keys, entry, start=prefix, end=end, limit=request.limit,
                                 keep=shown)
        if following:
            snapshot = cache.snapshot()
            cache.keep(snapshot)
            revision = snapshot.revision
        return _list_bytes(items, revision=revision, following=following)

    @unary
    async def UpdateStatus(
        self, request: resources_pb2.UpdateStatusRequest, context: Context
    ) -> object_pb2.Object:
        principal = caller()
        ref = self._resolve(objects.ref_of(request.object), principal)
        await self.authz.require(principal, "UpdateStatus", ref.kind, ref.zone, ref.workspace)
        node = self.authz.node_of(principal)
        if node is not None:
            await self._node_check(node, principal, "UpdateStatus", ref)
        request.object.metadata.zone, request.object.metadata.workspace = ref.zone, ref.workspace
        return await self.registry.update_status(request.object)

    @unary
    async def Delete(
        self, request: resources_pb2.DeleteRequest, context: Context
    ) -> resources_pb2.DeleteResponse:
        principal = caller()
        ref = self._resolve(_named(request.ref), principal)
        if ref.kind in PLACE_KINDS:
            await self.authz.require_place(principal, "Delete", ref.kind, ref.name)
        else:
            await self.authz.require(principal, "Delete", ref.kind, ref.zone, ref.workspace)
        node = self.authz.node_of(principal)
        if node is not None:
            await self._node_check(node, principal, "Delete", ref)
        obj = await self.registry.delete(ref, resource_version=request.resource_version)
        return resources_pb2.DeleteResponse(object=obj)

    async def Watch(
        self, request: resources_pb2.WatchRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """Yields serialized ``WatchEvent`` bytes: the server sends them as they are."""
        try:
            grpcservice.check(request)  # it checks itself: the hottest stream, unwrapped
            principal = caller()
            zone, workspace = _scope_of(request.kind, request.zone, request.workspace)
            permits = await self._authorize_read(principal, request.kind, zone, workspace)
            cache = self.cache[request.kind]
            watch_filter = Filter(
                zone=zone, workspace=workspace,
                selector=labels.parse(request.label_selector), permits=permits,
                visible=self._node_filter(principal, request.kind),
            )
            async for payload in cache.watch(
                resource_version=request.resource_version, filter=watch_filter,
                bookmark_every=self.bookmark_every, resume_index=request.resume_index,
            ):
                yield payload
        except errors.DoraError as exc:
            await abort(context, exc)

    def _node_filter(self, principal: Principal, kind: str) -> noderestriction.Visible | None:
        node = self.authz.node_of(principal)
        return None if node is None else noderestriction.visible(node, kinds.get(kind).name)

    def methods(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        """The handler of each method, for ``add_registered_method_handlers`` (the
        server then matches calls to them without asking each generic handler)."""
        return grpcservice.method_handlers(_DESCRIPTOR, self,
                                           checks_itself=frozenset({"Watch"}))


def _page(keys: Sequence[bytes], entry_at: Callable[[int], CachedEvent], *, start: bytes,
          end: bytes, limit: int,
          keep: Callable[[CachedEvent], bool]) -> tuple[list[CachedEvent], bytes]:
    """Up to ``limit`` (0: all) of the objects at ``keys`` (in order; ``entry_at``
    gives the object at a position) that ``keep`` accepts, from key ``start`` up to
    key ``end``; and the key of the next one ("" if none), so a page is full unless
    the list ended and its token says only that more visible objects follow (as
    the registry's pages over etcd)."""
    found: list[CachedEvent] = []
    for index in range(bisect.bisect_left(keys, start), len(keys)):
        if keys[index] >= end:
            break
        entry = entry_at(index)
        if not keep(entry):
            continue
        if limit and len(found) == limit:
            return found, entry.key
        found.append(entry)
    return found, b""


def _list_bytes(items: Sequence[CachedEvent], *, revision: int, following: bytes = b"") -> bytes:
    """A serialized ``ListResponse`` assembled from the cached serializations: its
    items (field 1), then its resourceVersion and continue token."""
    parts = [message_field(_LIST_ITEMS, e.object_bytes) for e in items]
    token = registry.continue_token_at(revision, following) if following else ""
    parts.append(resources_pb2.ListResponse(
        resource_version=revision, continue_token=token).SerializeToString())
    return b"".join(parts)


def _workload_spec(obj: object_pb2.Object) -> workloads_pb2.WorkloadSpec | None:
    if obj.kind == "Workload":
        return obj.workload.spec
    if obj.kind == "Container":
        return obj.container.spec.template
    if obj.kind == "Task":
        return tasks.template(obj)
    return None


def _binding(obj: object_pb2.Object) -> dict[str, object]:
    """A Container's binding fields (by their path), which only the scheduler writes."""
    spec, meta = obj.container.spec, obj.metadata.labels
    return {
        "spec.nodeName": spec.node_name,
        "spec.gpus": [(g.index, g.uuid, g.product_name) for g in spec.gpus],
        "spec.cpuMillicores": spec.cpu_millicores,
        f"metadata.labels[{conventions.NODE_LABEL}]": meta.get(conventions.NODE_LABEL, ""),
        f"metadata.labels[{conventions.PLACEMENT_LABEL}]":
            meta.get(conventions.PLACEMENT_LABEL, ""),
    }


_UNBOUND = _binding(object_pb2.Object(kind="Container"))


def _refuse_binding(current: object_pb2.Object | None, new: object_pb2.Object) -> None:
    """Refuse a write that sets or changes a binding field of a Container (by a
    caller without ``Bind``), naming each field."""
    before = _binding(current) if current is not None else _UNBOUND
    changed = [name for name, value in _binding(new).items() if value != before[name]]
    if changed:
        meta = new.metadata
        raise errors.Forbidden(
            f"only the scheduler binds Containers (verb Bind on Container in zone "
            f"{meta.zone!r}, workspace {meta.workspace!r}): leave {', '.join(changed)} "
            "as the scheduler set them (empty for a new Container), or apply a Workload",
            violations=tuple(errors.FieldViolation(
                name, "set only by the scheduler (verb Bind)") for name in changed))


def _named(ref: resources_pb2.ObjectRef) -> Ref:
    """The object a Get or Delete names; the kind and the name are required."""
    if not ref.kind:
        raise errors.Invalid("required: which kind", field="ref.kind")
    kinds.get(ref.kind)
    if not ref.name:
        raise errors.Invalid("required: the name of the object", field="ref.name")
    return Ref.from_proto(ref)


def _scope_of(kind_name: str, zone: str, workspace: str) -> tuple[str, str]:
    """The zone and workspace a list or watch narrows to: a kind without a zone (or a
    workspace) ignores that part, so one scope serves a client watching several kinds."""
    kind = kinds.get(kind_name)
    return (zone if kind.zoned else ""), (workspace if kind.workspaced else "")
