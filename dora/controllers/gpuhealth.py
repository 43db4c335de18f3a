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

from dora.api import kinds
from dora.api.objects import Ref
from dora.api.v1 import cluster_pb2, object_pb2
from dora.runtime import reconcile, registry
from dora.runtime.cache import Cache, by_node
from dora.runtime.handlers import Event, Watch
from dora.runtime.reconcile import DONE, Result
from dora.runtime.registry import EventRecorder, Setup

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

    def __init__(self, *, cache: Cache, recorder: EventRecorder, zone: str) -> None:
        self.cache = cache
        self.recorder = recorder
        self.zone = zone
        # (container uid, GPU, reasons) already told.
        self._told: set[tuple[str, str, tuple[str, ...]]] = set()
        self.warned = 0

    @staticmethod
    def build(setup: Setup) -> GPUHealthController:
        return GPUHealthController(cache=setup.cache, recorder=setup.recorder, zone=setup.zone)

    def _key(self, node: str) -> Ref:
        return Ref(kinds.NODE, self.zone, "", node)

    def node_keys(self, event: Event) -> list[Ref]:
        return [self._key(event.object.metadata.name)]

    def container_keys(self, event: Event) -> list[Ref]:
        # A container matters here when it lands on a node; later changes do not move it.
        if event.new is None:
            return []
        node = event.new.container.spec.node_name
        before = event.old.container.spec.node_name if event.old is not None else ""
        return [self._key(node)] if node and node != before else []

    async def reconcile(self, *, key: Ref) -> Result:
        node = self.cache.store(kinds.NODE).get(key)
        if node is None:
            return DONE
        bad = unhealthy_gpus(node)
        if not bad:
            return DONE
        for container in self.cache.store(kinds.CONTAINER).by_index("node", key.name):
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


CONTROLLER = registry.REGISTRY.add(registry.ControllerSpec(
    name="gpuhealth",
    help="a Warning event GPUUnhealthy on a container whose GPU turns unhealthy",
    build=GPUHealthController.build,
    watches=[
        Watch(kinds.NODE, GPUHealthController.node_keys),
        Watch(kinds.CONTAINER, GPUHealthController.container_keys),
    ],
    indexes={kinds.CONTAINER: {"node": by_node}},
    workers=1,
    order=70,
))
