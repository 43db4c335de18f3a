"""Scheduler filters and strategies: examples, then properties (hypothesis) over random
nodes and requests: nothing is ever overcommitted, and every strategy picks what its
definition says."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dora.controllers.scheduler import filters, strategies
from dora.controllers.scheduler.filters import GPU, Fit, NodeInfo, Request
from dora.controllers.scheduler.snapshot import Placement, with_placement

QUADRO, V100, A100 = "Quadro RTX 6000", "Tesla V100-SXM2-16GB", "A100-SXM4-40GB"
PRODUCTS = [QUADRO, V100, A100]


def gpus(*products: str) -> tuple[GPU, ...]:
    return tuple(GPU(i, f"GPU-{i}", p) for i, p in enumerate(products))


def test_gpus_come_from_one_product_in_the_selectors_order() -> None:
    node = NodeInfo("n", gpus=gpus(A100, V100, QUADRO, V100, QUADRO), cpu_capacity=8000)
    wanted = Request(gpu_count=2, gpu_products=(QUADRO, V100))
    assert [g.index for g in filters.choose_gpus(node, wanted) or ()] == [2, 4]
    assert filters.choose_gpus(node, Request(gpu_count=3, gpu_products=(V100,))) is None
    mixed = filters.choose_gpus(node, Request(gpu_count=2, gpu_products=("All",)))
    assert [g.index for g in mixed or ()] == [1, 3], "All: one product, lowest free index"
    busy = NodeInfo("n", gpus=node.gpus, used_gpus=frozenset({2}))
    assert filters.choose_gpus(busy, wanted) == (busy.gpus[1], busy.gpus[3])


def test_rejections_say_why() -> None:
    gpu_request = Request(gpu_count=1)
    cases = {
        filters.NOT_READY: NodeInfo("n", ready=False, gpus=gpus(V100)),
        filters.DISABLED: NodeInfo("n", scheduling_disabled=True, gpus=gpus(V100)),
        "does not allow GPUWorkload": NodeInfo("n", allow=frozenset({"CPUWorkload"}),
                                               gpus=gpus(V100)),
        filters.TOO_FEW_GPUS: NodeInfo("n", gpus=gpus(V100), used_gpus=frozenset({0})),
        filters.BAD_NAME: NodeInfo("n", labelable=False, gpus=gpus(V100)),
    }
    for reason, node in cases.items():
        assert filters.fit(node, gpu_request) == reason
    cpu = Request(cpu_millicores=2000, cpu_products=("EPYC",))
    assert filters.fit(NodeInfo("n", cpu_product="Xeon", cpu_capacity=8000), cpu) == (
        filters.WRONG_CPU)
    assert filters.fit(NodeInfo("n", cpu_product="EPYC", cpu_capacity=8000, used_cpu=7000),
                       cpu) == filters.TOO_LITTLE_CPU
    assert isinstance(filters.fit(NodeInfo("n", cpu_product="EPYC", cpu_capacity=8000), cpu),
                      Fit)


def test_the_unschedulable_message() -> None:
    request = Request(gpu_count=2, gpu_products=(QUADRO, V100))
    nodes = [NodeInfo("a", gpus=gpus(V100)), NodeInfo("b", gpus=gpus(V100, V100), ready=False),
             NodeInfo("c", gpus=gpus(A100, A100))]
    found, reasons = filters.fits(nodes, request)
    assert found == []
    assert filters.unschedulable_message(request, reasons) == (
        f"no node has 2 free GPUs of [{QUADRO}, {V100}] "
        "(3 nodes: 2 too few free GPUs, 1 not ready)"
    )
    assert filters.unschedulable_message(Request(cpu_millicores=500), filters.fits(
        [], Request())[1]) == "no node has 500 free CPU millicores (there are no nodes)"


def test_strategies_on_an_example() -> None:
    request = Request(workload="w/a", cpu_millicores=1000)
    nodes = [
        NodeInfo("a", cpu_capacity=8000, used_cpu=6000, workloads={"w/a": 0, "w/b": 3}),
        NodeInfo("b", cpu_capacity=8000, used_cpu=1000, workloads={"w/a": 1}),
        NodeInfo("c", cpu_capacity=8000, used_cpu=3000, workloads={"w/b": 1}),
    ]
    found, _ = filters.fits(nodes, request)
    rng = random.Random(1)

    def pick(strategy: str) -> str:
        choice = strategies.choose(strategy, found, request, rng=rng)
        assert choice is not None
        return choice.node.name

    assert pick("First") == "a"
    assert pick("Fill") == "a"
    assert pick("Distribute") == "c"
    picks = {pick("Random") for _ in range(50)}
    assert picks == {"a", "b", "c"}
    assert strategies.choose("Fill", [], request, rng=rng) is None


@st.composite
def node_infos(draw: st.DrawFn) -> list[NodeInfo]:
    count = draw(st.integers(min_value=0, max_value=6))
    nodes = []
    for index in range(count):
        products = draw(st.lists(st.sampled_from(PRODUCTS), max_size=8))
        devices = gpus(*products)
        used = draw(st.sets(st.sampled_from(range(len(devices))))) if devices else set()
        capacity = draw(st.integers(min_value=0, max_value=16)) * 1000
        used_cpu = draw(st.integers(min_value=0, max_value=capacity))
        workloads = draw(st.dictionaries(st.sampled_from(["w/a", "w/b"]),
                                         st.integers(min_value=1, max_value=4)))
        nodes.append(NodeInfo(
            name=f"node-{index}",
            ready=draw(st.booleans()) or draw(st.booleans()),
            scheduling_disabled=draw(st.integers(0, 5)) == 0,
            allow=frozenset(draw(st.sets(st.sampled_from(["CPUWorkload", "GPUWorkload"]),
                                         min_size=1))),
            cpu_product=draw(st.sampled_from(["Xeon", "EPYC"])),
            cpu_capacity=capacity, gpus=devices, used_gpus=frozenset(used), used_cpu=used_cpu,
            workloads=workloads,
        ))
    return nodes


requests = st.builds(
    Request,
    workload=st.sampled_from(["w/a", "w/b"]),
    gpu_count=st.integers(min_value=0, max_value=4),
    gpu_products=st.one_of(st.just(("All",)),
                           st.lists(st.sampled_from(PRODUCTS), min_size=1, max_size=2,
                                    unique=True).map(tuple)),
    cpu_millicores=st.integers(min_value=0, max_value=8000),
    cpu_products=st.one_of(st.just(("All",)), st.just(("Xeon",))),
)


def check_fit(fit: Fit, request: Request) -> None:
    node = fit.node
    assert node.ready and not node.scheduling_disabled
    assert request.capability in node.allow
    assert len(fit.gpus) == max(0, request.gpu_count)
    indices = [g.index for g in fit.gpus]
    assert len(set(indices)) == len(indices), "a GPU given twice to one container"
    assert not set(indices) & node.used_gpus, "a GPU given to two containers"
    assert set(fit.gpus) <= set(node.gpus)
    assert len({g.product for g in fit.gpus}) <= 1
    if "All" not in request.gpu_products:
        assert {g.product for g in fit.gpus} <= set(request.gpu_products)
    assert node.used_cpu + request.cpu_millicores <= node.cpu_capacity, "CPU overcommitted"


@settings(max_examples=100, deadline=None)
@given(nodes=node_infos(), request=requests, seed=st.integers(0, 1000))
def test_every_strategy_picks_a_fitting_node_by_its_definition(
        nodes: list[NodeInfo], request: Request, seed: int) -> None:
    found, reasons = filters.fits(nodes, request)
    assert len(found) + sum(reasons.values()) == len(nodes)
    fitting = {f.node.name for f in found}
    for node in nodes:
        assert isinstance(filters.fit(node, request), Fit) == (node.name in fitting)
    for fit in found:
        check_fit(fit, request)
    rng = random.Random(seed)
    for name in strategies.STRATEGIES:
        choice = strategies.choose(name, found, request, rng=rng)
        if not found:
            assert choice is None
            continue
        assert choice is not None and choice.node.name in fitting
        load = {f.node.name: strategies.load(f.node, request) for f in found}
        if name == "First":
            assert choice.node.name == min(fitting)
        elif name == "Fill":
            assert load[choice.node.name] == max(load.values())
            assert choice.node.name == min(n for n in fitting
                                           if load[n] == max(load.values()))
        elif name == "Distribute":
            mine = {f.node.name: f.node.workloads.get(request.workload, 0) for f in found}
            fewest = min(mine.values())
            assert mine[choice.node.name] == fewest
            assert load[choice.node.name] == min(load[n] for n in fitting if mine[n] == fewest)


@settings(max_examples=60, deadline=None)
@given(nodes=node_infos(), wanted=st.lists(requests, max_size=25),
       strategy=st.sampled_from(strategies.STRATEGIES), seed=st.integers(0, 1000))
def test_placing_one_after_another_never_overcommits(
        nodes: list[NodeInfo], wanted: list[Request], strategy: str, seed: int) -> None:
    """Place requests in turn, each on the snapshot the previous ones left."""
    state = {n.name: n for n in nodes}
    rng = random.Random(seed)
    for request in wanted:
        found, _ = filters.fits(state.values(), request)
        choice = strategies.choose(strategy, found, request, rng=rng)
        if choice is None:
            continue
        check_fit(choice, request)
        state[choice.node.name] = with_placement(choice.node, Placement(
            node=choice.node.name, gpus=choice.gpus, cpu_millicores=request.cpu_millicores,
            workload=request.workload))
    for node in state.values():
        assert node.used_cpu <= node.cpu_capacity
        assert node.used_gpus <= {g.index for g in node.gpus}


def test_an_unhealthy_gpu_is_never_free_and_keeps_its_identity() -> None:
    broken = GPU(0, "GPU-0", V100, healthy=False)
    node = NodeInfo("n", gpus=(broken, GPU(1, "GPU-1", V100)), cpu_capacity=8000)
    assert filters.choose_gpus(node, Request(gpu_count=1)) == (node.gpus[1],)
    assert filters.fit(node, Request(gpu_count=2)) == filters.TOO_FEW_GPUS
    assert broken == GPU(0, "GPU-0", V100), "health is no part of which device it is"
