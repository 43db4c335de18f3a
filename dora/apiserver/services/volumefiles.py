"""The ``VolumeFiles`` gRPC service: a Volume's files, relayed to an agent that reaches
the storage.

The caller names a Volume (zone, workspace, name) and a path inside it; the
storage's address is never sent to nor learnt by the caller. Each call:

1. authenticates, resolves the Volume's zone and workspace (defaults applied)
   and authorizes the seed's verb on the Volume: ``Ls`` (List), ``Upload``
   (Upload, Delete), ``Download``; ``Sync`` instead when the request says it is
   ``doractl sync``;
2. refuses a path with ``..`` (``dora.api.volumes.clean``) before any node is
   involved, and a Volume that is not Ready (missing storage, being deleted);
3. picks the node: the Ready nodes of the zone (Node ``Ready`` and its Lease
   ``node.<name>`` present), those running a Container that mounts the Volume
   first, then by name. For a ``Local`` storage that is any agent of the
   machine that holds the directory: Local storages are for single-machine
   clusters, where every agent sees the same host directory. An NFS storage is
   reached by the agents whose node mounts its export (``dora-agent
   --storage-mount``); the others answer ``UNIMPLEMENTED`` and the next node is
   asked (also past one that does not answer). An upload first asks with a List
   of its path (which it needs anyway, to resume), then streams to that node;
4. relays the call to that agent's ``AgentVolumeFiles`` with the resolved
   Volume; the agent resolves the Volume again and confines every path.

Chunks pass through as they come (at most 1 MiB each): nothing is buffered
whole, so a file of any size crosses with bounded memory.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from dora.api import conventions, errors, grpcservice, volumes
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, volumes_pb2, volumes_pb2_grpc
from dora.apiserver import registry as registry_module
from dora.apiserver.agentlink import AgentLink, FailedPrecondition, relaying, rpc_error
from dora.apiserver.auth.authorizer import Authorizer
from dora.apiserver.registry import Registry
from dora.apiserver.rpc import Context, caller
from dora.apiserver.watchcache import WatchCache

log = logging.getLogger(__name__)

SERVICE = "dora.api.v1.VolumeFiles"
# An agent that does not reach the storage says UNIMPLEMENTED; one that does not
# answer, UNAVAILABLE: the next node is asked.
NEXT_NODE = (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE)
T = TypeVar("T")


class VolumeFilesService:
    def __init__(self, *, registry: Registry, cache: WatchCache, link: AgentLink,
                 authorizer: Authorizer) -> None:
        self.registry = registry
        self.cache = cache
        self.link = link
        self.authz = authorizer

    async def _target(self, context: Context, target: volumes_pb2.VolumeTarget, *,
                      verb: str) -> tuple[volumes_pb2.VolumeTarget, list[str]]:
        """Authorize ``verb`` on the Volume; the resolved Volume and the nodes to ask."""
        principal = caller()
        if not target.name:
            raise errors.Invalid("the volume's name is required", field="volume.name")
        scope = self.registry.scope_for(zone=principal.zone, workspace=principal.workspace)
        ref = self.registry.resolve(
            Ref("Volume", target.zone, target.workspace, target.name), scope=scope)
        await self.authz.require(principal, verb, "Volume", ref.zone, ref.workspace)
        volume = await self.registry.get(ref)
        label = f"volume {ref.workspace}/{ref.name}"
        if volume.metadata.HasField("deletion_timestamp"):
            raise FailedPrecondition(f"{label} is being deleted")
        if volume.volume.status.phase != volumes.READY:
            why = next((c.message for c in volume.volume.status.conditions
                        if c.type == "Ready" and c.message), "")
            raise FailedPrecondition(f"{label} is {volume.volume.status.phase or 'Pending'}"
                                     + (f": {why}" if why else ""))
        resolved = volumes_pb2.VolumeTarget(zone=ref.zone, workspace=ref.workspace,
                                            name=ref.name)
        return resolved, self._nodes_for(ref)

    def _nodes_for(self, ref: Ref) -> list[str]:
        ready = sorted(
            n.metadata.name for n in self.cache["Node"].items()
            if n.metadata.zone == ref.zone and n.node.status.phase == "Ready"
            and self._lease_held(ref.zone, n.metadata.name)
        )
        if not ready:
            raise errors.Unavailable(f"no node of zone {ref.zone!r} is Ready to reach the "
                                     f"storage of volume {ref.workspace}/{ref.name}")
        users = {
            c.container.spec.node_name for c in self.cache["Container"].items()
            if c.metadata.zone == ref.zone and c.container.status.phase == "Running"
            and (ref.workspace, ref.name) in volumes.mounts_of(c)
        }
        return [n for n in ready if n in users] + [n for n in ready if n not in users]

    def _lease_held(self, zone: str, node: str) -> bool:
        lease = Ref("Lease", zone, "", conventions.node_lease_name(node))
        found: object_pb2.Object | None = self.cache["Lease"].get(registry_module.key(lease))
        return found is not None

    async def _stub(self, target: volumes_pb2.VolumeTarget, node: str) -> Any:
        """The agent's stub (typed ``Any``: the generated stubs describe sync calls)."""
        channel = await self.link.channel_for_node(zone=target.zone, node=node)
        return volumes_pb2_grpc.AgentVolumeFilesStub(channel)

    async def _ask(self, target: volumes_pb2.VolumeTarget, nodes: list[str],
                   call: Callable[[Any], Awaitable[T]]) -> tuple[T, str]:
        """``call`` on the first node whose agent reaches the storage; its answer and
        the node."""
        passed = []
        for node in nodes:
            try:
                return await call(await self._stub(target, node)), node
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in NEXT_NODE:
                    raise rpc_error(exc, node=node) from None
                passed.append(f"{node}: {exc.details() or exc.code().name}")
        raise FailedPrecondition(
            f"no Ready node of zone {target.zone!r} reaches the storage of volume "
            f"{target.workspace}/{target.name} ({'; '.join(passed)})")

    async def List(self, request: volumes_pb2.ListFilesRequest,
                   context: Context) -> volumes_pb2.ListFilesResponse:
        async with relaying(context) as relay:
            volumes.clean(request.path, field="path")
            target, nodes = await self._target(context, request.volume,
                                               verb="Sync" if request.sync else "Ls")
            request.volume.CopyFrom(target)
            response, relay.node = await self._ask(target, nodes, lambda stub: stub.List(
                request, metadata=self.link.metadata(), timeout=600))
            assert isinstance(response, volumes_pb2.ListFilesResponse)
            return response
        raise AssertionError("unreachable")

    async def Delete(self, request: volumes_pb2.DeleteFilesRequest,
                     context: Context) -> volumes_pb2.DeleteFilesResponse:
        async with relaying(context) as relay:
            for index, path in enumerate(request.paths):
                if not volumes.clean(path, field=f"paths[{index}]"):
                    raise errors.Invalid("the volume's root cannot be deleted",
                                         field=f"paths[{index}]")
            target, nodes = await self._target(context, request.volume,
                                               verb="Sync" if request.sync else "Upload")
            request.volume.CopyFrom(target)
            response, relay.node = await self._ask(target, nodes, lambda stub: stub.Delete(
                request, metadata=self.link.metadata(), timeout=600))
            assert isinstance(response, volumes_pb2.DeleteFilesResponse)
            return response
        raise AssertionError("unreachable")

    async def Upload(self, requests: AsyncIterator[volumes_pb2.UploadRequest],
                     context: Context) -> volumes_pb2.UploadResponse:
        async with relaying(context) as relay:
            first = await anext(aiter(requests), None)
            if first is None or first.WhichOneof("part") != "header":
                raise errors.Invalid("the first message must be the header", field="header")
            header = first.header
            if not volumes.clean(header.path, field="header.path"):
                raise errors.Invalid("name a file, not the volume's root", field="header.path")
            if header.size < 0 or not 0 <= header.offset <= header.size:
                raise errors.Invalid(f"offset {header.offset} is not within the file's "
                                     f"{header.size} bytes", field="header.offset")
            target, nodes = await self._target(context, header.volume,
                                               verb="Sync" if header.sync else "Upload")
            header.volume.CopyFrom(target)
            probe = volumes_pb2.ListFilesRequest(volume=target, path=header.path)
            _, relay.node = await self._ask(target, nodes, lambda stub: stub.List(
                probe, metadata=self.link.metadata(), timeout=60))
            stub = await self._stub(target, relay.node)

            async def relayed() -> AsyncIterator[volumes_pb2.UploadRequest]:
                yield first
                async for message in requests:
                    if message.WhichOneof("part") == "chunk":
                        yield message

            response: volumes_pb2.UploadResponse = await stub.Upload(
                relayed(), metadata=self.link.metadata())
            return response
        raise AssertionError("unreachable")

    async def Download(self, request: volumes_pb2.DownloadRequest,
                       context: Context) -> AsyncIterator[volumes_pb2.DownloadChunk]:
        call: Any = None
        async with relaying(context) as relay:
            try:
                if not volumes.clean(request.path, field="path"):
                    raise errors.Invalid("name a file, not the volume's root", field="path")
                if request.offset < 0:
                    raise errors.Invalid("must not be negative", field="offset")
                target, nodes = await self._target(context, request.volume, verb="Download")
                request.volume.CopyFrom(target)

                async def opened(stub: Any) -> tuple[Any, volumes_pb2.DownloadChunk]:
                    started = stub.Download(request, metadata=self.link.metadata())
                    try:
                        first = await started.read()
                    except BaseException:
                        started.cancel()
                        raise
                    return started, first

                (call, chunk), relay.node = await self._ask(target, nodes, opened)
                # read() all along: grpc.aio does not mix read() with async iteration.
                while chunk is not grpc.aio.EOF:  # type: ignore[attr-defined]
                    yield chunk
                    chunk = await call.read()
            finally:
                if call is not None:
                    call.cancel()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpcservice.handler(volumes_pb2.DESCRIPTOR.services_by_name["VolumeFiles"], self)
