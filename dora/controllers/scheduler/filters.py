"""Which nodes can take a container, and with which GPUs: pure functions.

A ``NodeInfo`` is a node as the scheduler sees it at one moment: readiness,
what it allows, its capacity and what its containers already use. A
``Request`` is what one container needs. ``fit`` answers for one node with a
``Fit`` (the node and the GPUs it would give) or the reason it cannot;
``fits`` does it for all nodes and counts the reasons, which become the
Unschedulable message users read (``no node has 2 free GPUs of [...]``).

GPUs are whole devices. The GPUs of one container are all of one product (a
mixed set would make training as slow as its slowest card): the first product
in the selector's order that has enough free devices on the node, its lowest
indices first; with ``All``, the product with the lowest free index that has
enough. CPU is counted in millicores: a node has ``cpu.count * 1000``. A GPU
its agent reports Unhealthy (ECC errors, a critical Xid: ``dora.agent.gpuhealth``)
is never free: what runs on it keeps running, nothing new goes there.

A NodePort (``network.ports[].nodePort`` with its protocol, of a bridge-network
container) is a resource too: a node gives each port/protocol to one container, so
two containers asking for 25000/tcp never land on one node (Docker would refuse
the second's start), and one with no node where its port is free stays Pending
with a message naming the port.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ALL = "All"
CPU_WORKLOAD, GPU_WORKLOAD = "CPUWorkload", "GPUWorkload"

# Why a node was passed over, in the words of the Unschedulable message.
NOT_READY = "not ready"
DISABLED = "scheduling disabled"
NOT_ALLOWED = "does not allow {capability}"
WRONG_CPU = "another CPU model"
TOO_FEW_GPUS = "too few free GPUs"
TOO_LITTLE_CPU = "too little free CPU"
BAD_NAME = "name too long for a label"
PORT_TAKEN = "with nodePort {port} in use"

# A node port and its protocol: (25000, "tcp").
Port = tuple[int, str]


def port_text(port: Port) -> str:
    return f"{port[0]}/{port[1]}"


@dataclass(frozen=True, order=True)
class GPU:
    index: int
    uuid: str = ""
    product: str = ""
    # Health is the node's word on the device, not part of which device it is.
    healthy: bool = field(default=True, compare=False)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ready: bool = True
    scheduling_disabled: bool = False
    allow: frozenset[str] = frozenset({CPU_WORKLOAD, GPU_WORKLOAD})
    cpu_product: str = ""
    cpu_capacity: int = 0
    gpus: tuple[GPU, ...] = ()
    used_gpus: frozenset[int] = frozenset()
    used_cpu: int = 0
    # How many containers of each workload (``workspace/name``) the node runs.
    workloads: Mapping[str, int] = field(default_factory=dict)
    labelable: bool = True
    used_ports: frozenset[Port] = frozenset()

    @property
    def containers(self) -> int:
        return sum(self.workloads.values())

    def free_gpus(self) -> list[GPU]:
        return [g for g in self.gpus if g.healthy and g.index not in self.used_gpus]

    @functools.cached_property
    def free_by_product(self) -> dict[str, list[GPU]]:
        """The free GPUs of each product, lowest index first; the products in the order
        of their lowest free index. Computed once per NodeInfo (they never change)."""
        by_product: dict[str, list[GPU]] = {}
        for gpu in sorted(self.free_gpus()):
            by_product.setdefault(gpu.product, []).append(gpu)
        return by_product

    @property
    def free_cpu(self) -> int:
        return self.cpu_capacity - self.used_cpu


@dataclass(frozen=True)
class Request:
    workload: str = ""
    gpu_count: int = 0
    gpu_products: tuple[str, ...] = (ALL,)
    cpu_millicores: int = 0
    cpu_products: tuple[str, ...] = (ALL,)
    node_ports: tuple[Port, ...] = ()

    @property
    def capability(self) -> str:
        return GPU_WORKLOAD if self.gpu_count > 0 else CPU_WORKLOAD


@dataclass(frozen=True)
class Fit:
    node: NodeInfo
    gpus: tuple[GPU, ...] = ()


def _any(products: tuple[str, ...]) -> bool:
    return not products or ALL in products


def choose_gpus(node: NodeInfo, request: Request) -> tuple[GPU, ...] | None:
    """The GPUs ``node`` would give ``request`` (empty when it needs none), or None."""
    if request.gpu_count <= 0:
        return ()
    by_product = node.free_by_product
    if _any(request.gpu_products):
        order = list(by_product)  # by lowest free index
    else:
        order = [p for p in request.gpu_products if p in by_product]
    for product in order:
        if len(by_product[product]) >= request.gpu_count:
            return tuple(by_product[product][: request.gpu_count])
    return None


def fit(node: NodeInfo, request: Request) -> Fit | str:
    """A ``Fit`` of ``request`` on ``node``, or why it does not fit."""
    if not node.ready:
        return NOT_READY
    if node.scheduling_disabled:
        return DISABLED
    if not node.labelable:
        return BAD_NAME
    if request.capability not in node.allow:
        return NOT_ALLOWED.format(capability=request.capability)
    if request.cpu_millicores > 0 and not _any(request.cpu_products) and (
        node.cpu_product not in request.cpu_products
    ):
        return WRONG_CPU
    taken = [p for p in request.node_ports if p in node.used_ports]
    if taken:
        return PORT_TAKEN.format(port=", ".join(port_text(p) for p in taken))
    gpus = choose_gpus(node, request)
    if gpus is None:
        return TOO_FEW_GPUS
    if request.cpu_millicores > node.free_cpu:
        return TOO_LITTLE_CPU
    return Fit(node, gpus)


def fits(nodes: Iterable[NodeInfo], request: Request) -> tuple[list[Fit], collections.Counter[str]]:
    """Every node that fits, by name; and how many nodes were passed over for each reason."""
    found: list[Fit] = []
    reasons: collections.Counter[str] = collections.Counter()
    for node in sorted(nodes, key=lambda n: n.name):
        result = fit(node, request)
        if isinstance(result, Fit):
            found.append(result)
        else:
            reasons[result] += 1
    return found, reasons


def unschedulable_message(request: Request, reasons: collections.Counter[str]) -> str:
    """``no node has 2 free GPUs of [Quadro RTX 6000, Tesla V100-SXM2-16GB] (...)``."""
    if request.gpu_count > 0:
        plural = "s" if request.gpu_count != 1 else ""
        what = f"{request.gpu_count} free GPU{plural}"
        products = request.gpu_products
    else:
        what = f"{request.cpu_millicores} free CPU millicores"
        products = request.cpu_products
    if not _any(products):
        what += f" of [{', '.join(products)}]"
    if request.node_ports:
        plural = "s" if len(request.node_ports) != 1 else ""
        what += (f" and nodePort{plural} {', '.join(port_text(p) for p in request.node_ports)}"
                 " free")
    total = sum(reasons.values())
    if total == 0:
        return f"no node has {what} (there are no nodes)"
    detail = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
    return f"no node has {what} ({total} node{'s' if total != 1 else ''}: {detail})"
