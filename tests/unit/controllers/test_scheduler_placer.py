"""The incremental placer picks exactly what the pure filters and strategies pick.

Hypothesis drives a zone through random steps (place and bind, place and only
assume, drop an assumption, a container ends, a node loses or regains its Lease, a
node goes or comes) and after each one compares ``Placer.choose`` on the one
long-lived ``Snapshot`` with ``filters.fits`` + ``strategies.choose`` on a fresh
``Snapshot`` of the same cache: same node, same GPUs, same NodeInfo, or the same
Unschedulable message; both draw from equally seeded random sources.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dora.api import conventions
from dora.api.objects import Ref
from dora.api.v1 import object_pb2
from dora.controllers.scheduler import filters, strategies
from dora.controllers.scheduler.filters import Fit, Request
from dora.controllers.scheduler.placer import Placer
from dora.controllers.scheduler.snapshot import Placement, Snapshot
from dora.runtime.cache import Cache, Store, by_node
from tests.unit.controllers.helpers import obj

V100, A100 = "V100", "A100"
SHAPES = [(), (V100, V100), (A100, A100, V100, V100), (A100,) * 4]
REQUESTS = [
    Request(workload="w/a", cpu_millicores=1000),
    Request(workload="w/b", cpu_millicores=3000),
    Request(workload="w/a", gpu_count=1, cpu_millicores=500),
    Request(workload="w/b", gpu_count=2, gpu_products=(A100,)),
    Request(workload="w/c", gpu_count=1, gpu_products=(V100, A100), cpu_millicores=1000),
    Request(workload="w/c", cpu_millicores=2000, cpu_products=("EPYC",)),
]


def node(index: int, shape: int) -> Any:
    made = obj("Node", f"n{index}", rv=1)
    made.node.spec.allow.extend(["CPUWorkload", "GPUWorkload"] if shape else ["CPUWorkload"])
    made.node.status.phase = "Ready"
    made.node.status.cpu.count = 4
    made.node.status.cpu.product_name = "EPYC" if index % 2 else "Xeon"
    for gpu, product in enumerate(SHAPES[shape]):
        made.node.status.gpus.add(index=gpu, uuid=f"n{index}-{gpu}", product_name=product)
    return made


def lease(index: int) -> Any:
    return obj("Lease", conventions.node_lease_name(f"n{index}"))


class Zone:
    def __init__(self, shapes: list[int]) -> None:
        self.cache = Cache()
        self.cache.add(Store("Node"))
        self.cache.add(Store("Lease"))
        self.cache.add(Store("Container", indexers={"node": by_node}))
        self.snapshot = Snapshot(cache=self.cache, zone="z")
        self.placer = Placer(self.snapshot)
        self.assumed: dict[Ref, Placement] = {}
        self.bound: list[str] = []
        self.shapes = shapes
        self.serial = 0
        for index, shape in enumerate(shapes):
            self.cache.store("Node").upsert(node(index, shape))
            self.cache.store("Lease").upsert(lease(index))

    def bind(self, fit: Fit, request: Request) -> None:
        self.serial += 1
        made = obj("Container", f"c{self.serial}", rv=self.serial + 10, node=fit.node.name)
        made.container.spec.workload = request.workload.split("/")[1]
        made.container.spec.cpu_millicores = request.cpu_millicores
        for gpu in fit.gpus:
            made.container.spec.gpus.add(index=gpu.index, uuid=gpu.uuid)
        made.container.status.phase = "Running"
        self.cache.store("Container").upsert(made)
        self.snapshot.invalidate(fit.node.name)
        self.bound.append(made.metadata.name)

    def step(self, op: str, arg: int) -> None:
        nodes, leases = self.cache.store("Node"), self.cache.store("Lease")
        index = arg % len(self.shapes)
        name = f"n{index}"
        if op == "drop" and self.assumed:
            self.assumed.pop(next(iter(self.assumed)))
        elif op == "end" and self.bound:
            container = self.cache.store("Container").get_named(
                self.bound.pop(arg % len(self.bound)), zone="z", workspace="w")
            assert container is not None
            ended = object_pb2.Object()
            ended.CopyFrom(container)
            ended.metadata.resource_version += 1000
            ended.container.status.phase = "Exited"
            self.cache.store("Container").upsert(ended)
            self.snapshot.invalidate(container.container.spec.node_name)
        elif op == "lease":
            current = leases.get_named(conventions.node_lease_name(name), zone="z")
            if current is None:
                leases.upsert(lease(index))
            else:
                leases.remove(current)
            self.snapshot.invalidate(name)
        elif op == "node":
            current = nodes.get_named(name, zone="z")
            if current is None:
                nodes.upsert(node(index, self.shapes[index]))
            else:
                nodes.remove(current)
            self.snapshot.invalidate(name)


def reference(zone: Zone, request: Request, strategy: str,
              rng: random.Random) -> Fit | str:
    fresh = Snapshot(cache=zone.cache, zone="z").nodes(assumed=zone.assumed)
    found, reasons = filters.fits(fresh, request)
    choice = strategies.choose(strategy, found, request, rng=rng)
    return filters.unschedulable_message(request, reasons) if choice is None else choice


steps = st.lists(st.tuples(
    st.sampled_from(["bind", "bind", "bind", "assume", "drop", "end", "lease", "node"]),
    st.integers(0, 1000), st.sampled_from(range(len(REQUESTS))),
    st.sampled_from(strategies.STRATEGIES),
), max_size=40)


@settings(max_examples=80, deadline=None)
@given(shapes=st.lists(st.integers(0, len(SHAPES) - 1), min_size=1, max_size=7),
       plan=steps, seed=st.integers(0, 1000))
def test_the_placer_agrees_with_filters_and_strategies(
        shapes: list[int], plan: list[tuple[str, int, int, str]], seed: int) -> None:
    zone = Zone(shapes)
    mine, theirs = random.Random(seed), random.Random(seed)
    for op, arg, which, strategy in plan:
        request = REQUESTS[which]
        if op not in ("bind", "assume"):
            zone.step(op, arg)
            continue
        expected = reference(zone, request, strategy, theirs)
        got = zone.placer.choose(request, strategy, assumed=zone.assumed, rng=mine)
        assert got == expected, (op, request, strategy)
        if isinstance(got, str):
            continue
        if op == "bind":
            zone.bind(got, request)
        else:
            zone.serial += 1
            zone.assumed[Ref("Container", "z", "w", f"a{zone.serial}")] = Placement(
                node=got.node.name, gpus=got.gpus, cpu_millicores=request.cpu_millicores,
                workload=request.workload)
