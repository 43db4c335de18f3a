"""Gang placement: the replicas of a ``replica.gang`` workload go all at once or none.

A distributed training job whose replicas are placed one by one can hold GPUs and do
nothing (three of four replicas wait for the fourth, which waits for a GPU the
others hold). So the scheduler treats the gang as one request: it waits until
all ``N`` replicas of the version exist (``members``), chooses a node for every one
still pending under its placement lock, each choice assumed before the next (so
they never share a GPU), and binds them only when all fit; otherwise none is
assumed and each waits with reason ``GangWaiting`` (``shortfall``).

With strategy ``Fill`` a gang goes on as few nodes as possible (``pick_fill``): a
node already given a replica of the gang first, else the node with room for the
most replicas. The other strategies choose per replica as for any container.

Rank 0 listens at its node's address (``master``) on the master port: 29500 in
host mode, or the first port of a bridge network (published on the same
number). The scheduler writes ``host:port`` into every replica's binding
(``ContainerSpec.gangMaster``), so it is known before any replica starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from dora.api.v1 import object_pb2
from dora.controllers.scheduler import filters, strategies
from dora.controllers.scheduler.filters import Fit, NodeInfo, Request

GANG_WAITING = "GangWaiting"
GANG_INDEX = "gang"
# torchrun's default master port, used in host mode.
HOST_MASTER_PORT = 29500


def is_gang(container: object_pb2.Object) -> bool:
    return container.container.spec.template.replica.gang


def gang_key(container: object_pb2.Object) -> str:
    """Which gang a container belongs to: its workload and version."""
    spec, meta = container.container.spec, container.metadata
    return f"{meta.workspace}/{spec.workload}/{spec.version}"


def by_gang(obj: object_pb2.Object) -> list[str]:
    """The cache index of the scheduler: a gang's live containers under its key."""
    if not is_gang(obj) or obj.metadata.HasField("deletion_timestamp"):
        return []
    return [gang_key(obj)]


def rank(container: object_pb2.Object) -> int:
    spec = container.container.spec
    return spec.replica_index if spec.HasField("replica_index") else 1 << 30


def members(siblings: Iterable[object_pb2.Object]) -> list[object_pb2.Object]:
    """The gang's live containers by rank (one per replica slot, the oldest first)."""
    by_slot: dict[int, object_pb2.Object] = {}
    for obj in sorted(siblings, key=lambda o: o.metadata.resource_version):
        if not obj.metadata.HasField("deletion_timestamp"):
            by_slot.setdefault(rank(obj), obj)
    return [by_slot[slot] for slot in sorted(by_slot)]


def world_size(container: object_pb2.Object) -> int:
    return max(container.container.spec.replicas, 1)


def master_port(container: object_pb2.Object) -> int:
    network = container.container.spec.template.network
    if network.mode == "bridge" and network.ports:
        return network.ports[0].node_port
    return HOST_MASTER_PORT


def node_address(node: object_pb2.Object | None, name: str) -> str:
    """Where other nodes reach ``node``: its agent endpoint's host, else its name."""
    if node is not None and node.node.spec.endpoint:
        endpoint = node.node.spec.endpoint
        host = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}").hostname
        if host:
            return host
    return name


def room(node: NodeInfo, request: Request) -> int:
    """How many replicas of ``request`` the node has room for (by GPUs, else CPU)."""
    if request.gpu_count > 0:
        return len(node.free_gpus()) // request.gpu_count
    if request.cpu_millicores > 0 and node.cpu_capacity:
        return (node.cpu_capacity - node.used_cpu) // request.cpu_millicores
    return 1 << 30


def pick_fill(nodes: Iterable[NodeInfo], request: Request, used: Sequence[str]) -> Fit | None:
    """``Fill`` for a gang's next replica: a node already holding one of the gang (the
    latest used first), else the one with room for the most replicas (then the most
    loaded, then by name); None when none fits."""
    fits: dict[str, Fit] = {}
    for node in nodes:
        result = filters.fit(node, request)
        if isinstance(result, Fit):
            fits[node.name] = result
    for name in reversed(used):
        if name in fits:
            return fits[name]
    if not fits:
        return None
    return min(fits.values(), key=lambda f: (
        -room(f.node, request), -strategies.load(f.node, request), f.node.name))


def shortfall(request: Request, count: int, nodes: Iterable[NodeInfo], why: str) -> str:
    """The GangWaiting message: what the gang needs, what is free, and why the replica
    that did not fit does not."""
    usable = [n for n in nodes if n.ready and not n.scheduling_disabled]
    if request.gpu_count > 0:
        free = sum(len(n.free_gpus()) for n in usable)
        need = f"{count * request.gpu_count} GPUs; {free} free"
    else:
        free = sum(max(0, n.cpu_capacity - n.used_cpu) for n in usable)
        need = f"{count * request.cpu_millicores} CPU millicores; {free} free"
    return f"{count} replicas need {need} (placed all at once or none: {why})"
