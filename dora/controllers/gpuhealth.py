"""The GPU health controller: a container whose GPU turns unhealthy is told so.

The agent reads each GPU's health through NVML into its Node's status
(``dora.agent.gpuhealth``) and the scheduler gives an Unhealthy GPU nothing new.
What already runs on it is the user's to judge (a training job may checkpoint and
stop, or finish an epoch that does not touch the bad memory), so this controller
does not stop it: it records a ``Warning`` Event ``GPUUnhealthy`` on the
Container, naming the GPU and NVML's reasons, which ``doractl describe`` shows.

It writes only Events (one owner per field: the Node is the agent's, the
Container the scheduler's and the agent's). It remembers what it has said, so a
node status rewritten for other reasons does not repeat it; after a restart it
may say it once more, which the Event's aggregation turns into a count.
"""

from __future__ import annotations

from collections.abc import Iterable

from dora.api.objects import Ref
from dora.api.v1 import cluster_pb2, object_pb2
from dora.controllers.events import Recorder
from dora.runtime import reconcile
from dora.runtime.cache import Cache, Delta, by_node
from dora.runtime.manager import Manager, Watch
from dora.runtime.reconcile import DONE, Result

log = reconcile.logger(__name__)

UNHEALTHY = "Unhealthy"
REASON = "GPUUnhealthy"
TERMINAL_PHASES = frozenset({"Exited", "Failed", "Lost"})


def unhealthy_gpus(node: object_pb2.Object) -> dict[str, cluster_pb2.GPUInfo]:
    """The node's Unhealthy GPUs by UUID (by ``#index`` when the agent gave no UUID)."""
    return {g.uuid or f"#{g.index}": g for g in node.node.status.gpus
            if g.health.status == UNHEALTHY}


def message(node: str, gpu: cluster_pb2.GPUInfo) -> str:
    why = "; ".join(gpu.health.reasons) or "NVML reports it unhealthy"
    return (f"GPU {gpu.index} ({gpu.uuid or 'no UUID'}) of node {node} is unhealthy: {why}. "
            "The container keeps running; nothing new is placed on that GPU.")


class GPUHealthController:
    name = "gpuhealth"

    def __init__(self, *, cache: Cache, recorder: Recorder, zone: str) -> None:
        self.cache = cache
        self.recorder = recorder
        self.zone = zone
        # (container uid, GPU, reasons) already told.
        self._told: set[tuple[str, str, tuple[str, ...]]] = set()
        self.warned = 0

    def register(self, manager: Manager, *, workers: int = 1) -> None:
        manager.store("Node")
        manager.store("Container", indexers={"node": by_node})
        manager.add_controller(self, workers=workers, watches=[
            Watch("Node", self._node_keys),
            Watch("Container", self._container_keys),
        ])

    def _key(self, node: str) -> Ref:
        return Ref("Node", self.zone, "", node)

    def _node_keys(self, delta: Delta) -> Iterable[Ref]:
        return [self._key(delta.object.metadata.name)]

    def _container_keys(self, delta: Delta) -> Iterable[Ref]:
        # A container matters here when it lands on a node; later changes do not move it.
        if delta.new is None:
            return []
        node = delta.new.container.spec.node_name
        before = delta.old.container.spec.node_name if delta.old is not None else ""
        return [self._key(node)] if node and node != before else []

    async def reconcile(self, *, key: Ref) -> Result:
        node = self.cache.store("Node").get(key)
        if node is None:
            return DONE
        bad = unhealthy_gpus(node)
        if not bad:
            return DONE
        for container in self.cache.store("Container").by_index("node", key.name):
            if container.container.status.phase in TERMINAL_PHASES:
                continue
            for held in container.container.spec.gpus:
                gpu = bad.get(held.uuid or f"#{held.index}")
                if gpu is None:
                    continue
                told = (container.metadata.uid, gpu.uuid or f"#{gpu.index}",
                        tuple(gpu.health.reasons))
                if told in self._told:
                    continue
                self._told.add(told)
                self.warned += 1
                self.recorder.warning(container, REASON, message(key.name, gpu))
        return DONE
