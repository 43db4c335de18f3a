"""The ``Devices`` gRPC service: the CPUs and GPUs a zone offers (``doractl get gpus``).

Seed 001's user role grants ``CPU: [Get]`` and ``GPU: [Get]`` and nothing on Node:
a user picks ``product_name`` values from what the nodes report, without reading
the Nodes themselves. The answer comes from the watch cache (Nodes' status,
Containers' bindings), so it costs no etcd round trip. A GPU in use says so;
which container holds it is told only to a caller who may get that container.
Each GPU carries its health as its agent read it (Unknown from an agent that
does not report it), so a user sees why a GPU takes no work.
"""

from __future__ import annotations

from typing import Any

import grpc

from dora.api import errors, grpcservice, labels
from dora.api.conventions import NODE_LABEL
from dora.api.v1 import devices_pb2, object_pb2
from dora.apiserver.auth.authorizer import DEVICE_KINDS, Authorizer
from dora.apiserver.registry import Registry
from dora.apiserver.rpc import Context, caller, unary
from dora.apiserver.watchcache import WatchCache

SERVICE = "dora.api.v1.Devices"


class DevicesService:
    def __init__(self, *, registry: Registry, cache: WatchCache, authorizer: Authorizer) -> None:
        self.registry = registry
        self.cache = cache
        self.authz = authorizer

    @unary
    async def List(
        self, request: devices_pb2.ListDevicesRequest, context: Context
    ) -> devices_pb2.ListDevicesResponse:
        principal = caller()
        kind = request.kind.upper()
        if kind not in DEVICE_KINDS:
            raise errors.Invalid(f"{request.kind!r}: must be GPU or CPU", field="kind")
        zone = request.zone or self.registry.scope_for(
            zone=principal.zone, workspace=principal.workspace).zone
        await self.authz.require(principal, "Get", kind, zone, "")
        may_get = self.authz.permits(principal, "Get", "Container")
        response = devices_pb2.ListDevicesResponse(zone=zone)
        for entry in self.cache["Node"].select(labels.parse("")):
            if entry.zone != zone:
                continue
            node = entry.object
            bound = self._containers_on(node.metadata.name, zone)
            base = devices_pb2.Device(
                node=node.metadata.name, kind=kind, node_phase=node.node.status.phase,
                scheduling_disabled=node.node.spec.scheduling_disabled)
            if kind == "CPU":
                cpu = node.node.status.cpu
                device = response.items.add()
                device.CopyFrom(base)
                device.product_name, device.count = cpu.product_name, cpu.count
                device.memory_total_bytes = node.node.status.memory_bytes
                device.used_millicores = sum(c.container.spec.cpu_millicores for c in bound)
                continue
            holders = {(g.index, g.uuid): c for c in bound for g in c.container.spec.gpus}
            for gpu in node.node.status.gpus:
                device = response.items.add()
                device.CopyFrom(base)
                device.index, device.uuid = gpu.index, gpu.uuid
                device.product_name = gpu.product_name
                device.memory_total_bytes = gpu.memory_total_bytes
                device.health = gpu.health.status or "Unknown"
                device.health_reasons.extend(gpu.health.reasons)
                holder = holders.get((gpu.index, gpu.uuid))
                device.in_use = holder is not None or bool(gpu.container)
                meta = holder.metadata if holder is not None else None
                if meta is not None and may_get(meta.zone, meta.workspace, meta.name):
                    device.container, device.workspace = meta.name, meta.workspace
        return response

    def _containers_on(self, node: str, zone: str) -> list[object_pb2.Object]:
        selector = labels.parse(f"{NODE_LABEL}={node}")
        return [e.object for e in self.cache["Container"].select(selector)
                if e.zone == zone and e.object.container.spec.node_name == node]

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpcservice.handler(devices_pb2.DESCRIPTOR.services_by_name["Devices"], self)
