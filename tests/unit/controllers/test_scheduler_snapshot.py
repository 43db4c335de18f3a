"""From Nodes, Leases and Containers to what the scheduler sees."""

from __future__ import annotations

from dora.api import conventions, objects
from dora.api.objects import Ref
from dora.controllers.scheduler.snapshot import Placement, Snapshot, request_of
from dora.runtime.cache import Cache, Store, by_node
from tests.unit.controllers.helpers import obj


def node(name: str, *, phase: str = "Ready", gpus: int = 2) -> objects.object_pb2.Object:
    made = obj("Node", name)
    made.node.spec.allow.extend(["CPUWorkload", "GPUWorkload"])
    made.node.status.phase = phase
    made.node.status.cpu.count = 4
    for index in range(gpus):
        made.node.status.gpus.add(index=index, uuid=f"{name}-{index}", product_name="V100")
    return made


def container(name: str, node_name: str, *, gpus: tuple[int, ...] = (), cpu: int = 0,
              phase: str = "Running", workload: str = "a") -> objects.object_pb2.Object:
    made = obj("Container", name, node=node_name)
    made.container.spec.workload = workload
    made.container.spec.cpu_millicores = cpu
    for index in gpus:
        made.container.spec.gpus.add(index=index, uuid=f"{node_name}-{index}")
    made.container.status.phase = phase
    return made


def cache(*objs: objects.object_pb2.Object) -> Cache:
    result = Cache()
    for kind in ("Node", "Lease"):
        result.add(Store(kind))
    result.add(Store("Container", indexers={"node": by_node}))
    for o in objs:
        result.store(o.kind).upsert(o)
    return result


def lease(node_name: str) -> objects.object_pb2.Object:
    return obj("Lease", conventions.node_lease_name(node_name))


def test_usage_comes_from_the_containers_and_readiness_needs_the_lease() -> None:
    snap = Snapshot(cache=cache(
        node("n1"), node("n2"), node("n3", phase="NotReady"), lease("n1"), lease("n3"),
        container("a.0", "n1", gpus=(1,), cpu=1500),
        container("a.1", "n1", gpus=(0,), phase="Exited"),  # ended: holds nothing
        container("b.0", "n1", cpu=500, phase="Pending", workload="b"),  # reserved
    ), zone="z")
    infos = {i.name: i for i in snap.nodes(assumed={})}
    assert infos["n1"].ready and not infos["n2"].ready and not infos["n3"].ready
    assert infos["n1"].used_gpus == frozenset({1})
    assert infos["n1"].used_cpu == 2000 and infos["n1"].cpu_capacity == 4000
    assert infos["n1"].workloads == {"w/a": 1, "w/b": 1}


def test_assumed_placements_are_laid_over_and_invalidation_refreshes() -> None:
    c = cache(node("n1"), lease("n1"))
    snap = Snapshot(cache=c, zone="z")
    assumed = {Ref("Container", "z", "w", "x.0"): Placement("n1", (), 1000, "w/x")}
    [info] = snap.nodes(assumed=assumed)
    assert info.used_cpu == 1000
    [info] = snap.nodes(assumed={})
    assert info.used_cpu == 0
    c.store("Container").upsert(container("x.0", "n1", cpu=1000))
    [info] = snap.nodes(assumed={})
    assert info.used_cpu == 0, "memoized until invalidated"
    snap.invalidate("n1")
    [info] = snap.nodes(assumed={})
    assert info.used_cpu == 1000


def test_requests_from_the_template() -> None:
    made = obj("Container", "a.0")
    selectors = made.container.spec.template.selectors
    selectors.gpu.count = 2
    selectors.gpu.product_name.extend(["Quadro RTX 6000", "V100"])
    request = request_of(made)
    assert (request.gpu_count, request.gpu_products, request.cpu_millicores) == (
        2, ("Quadro RTX 6000", "V100"), 0)
    assert request.capability == "GPUWorkload"
    selectors.cpu.count = 2
    assert request_of(made).cpu_millicores == 2000
    selectors.cpu.millicores = 500
    assert request_of(made).cpu_millicores == 500


def test_only_what_filters_read_changes_a_nodes_signature() -> None:
    from dora.controllers.scheduler.snapshot import node_signature

    before = node("n1")
    after = node("n1")
    after.node.status.gpus[0].memory_used_bytes = 1 << 30
    after.node.status.last_seen.GetCurrentTime()
    assert node_signature(before) == node_signature(after)
    after.node.spec.scheduling_disabled = True
    assert node_signature(before) != node_signature(after)


def with_ports(made: objects.object_pb2.Object, *ports: tuple[int, str],
               mode: str = "bridge") -> objects.object_pb2.Object:
    network = made.container.spec.template.network
    network.mode = mode
    for node_port, protocol in ports:
        network.ports.add(port=80, node_port=node_port, protocol=protocol)
    return made


def test_node_ports_are_used_by_the_containers_that_publish_them() -> None:
    from dora.controllers.scheduler import filters
    from dora.controllers.scheduler.placer import Placer
    from dora.controllers.scheduler.strategies import RandomSource

    c = cache(node("n1"), lease("n1"),
              with_ports(container("a.0", "n1", cpu=500), (25000, "tcp"), (25000, "udp")),
              with_ports(container("b.0", "n1", phase="Exited"), (25001, "tcp")),  # ended
              with_ports(container("h.0", "n1"), (25002, "tcp"), mode="host"))  # publishes none
    snap = Snapshot(cache=c, zone="z")
    [info] = snap.nodes(assumed={})
    assert info.used_ports == frozenset({(25000, "tcp"), (25000, "udp")})
    wants = with_ports(obj("Container", "x.0"), (25000, "tcp"))
    wants.container.spec.template.selectors.cpu.count = 1
    request = request_of(wants)
    assert request.node_ports == ((25000, "tcp"),)
    assert filters.fit(info, request) == "with nodePort 25000/tcp in use"
    rng: RandomSource = __import__("random").Random(1)
    message = Placer(snap).choose(request, "First", assumed={}, rng=rng)
    assert message == ("no node has 1000 free CPU millicores and nodePort 25000/tcp free "
                       "(1 node: 1 with nodePort 25000/tcp in use)")
    free = request_of(with_ports(obj("Container", "y.0"), (25001, "tcp")))
    fit = Placer(snap).choose(free, "First", assumed={}, rng=rng)
    assert isinstance(fit, filters.Fit) and fit.node.name == "n1"
    # An assumed placement holds its port at once, before the cache shows it.
    assumed = {Ref("Container", "z", "w", "y.0"): Placement("n1", (), 0, "w/y",
                                                           node_ports=((25001, "tcp"),))}
    [info] = snap.nodes(assumed=assumed)
    assert filters.fit(info, free) == "with nodePort 25001/tcp in use"


def test_a_gpu_its_agent_calls_unhealthy_is_withheld_and_changes_the_signature() -> None:
    from dora.controllers.scheduler.snapshot import node_info, node_signature

    made = node("n1", gpus=3)
    before = node_signature(made)
    made.node.status.gpus[1].health.status = "Unhealthy"
    made.node.status.gpus[2].health.status = "Unknown"
    assert node_signature(made) != before
    info = node_info(made, leased=True, containers=[])
    assert [g.index for g in info.free_gpus()] == [0, 2], "Unknown is not Unhealthy"
