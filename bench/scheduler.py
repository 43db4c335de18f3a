"""Scheduler throughput: placements per second over a zone of simulated nodes.

What is measured is the scheduler's own placement work, in-process, as its
reconcile does it under its lock (``Scheduler.choose``: drop the assumptions the
cache shows, the ``Snapshot`` of every node, ``filters.fits``, the strategy),
then the bound Container landing in the informer's cache and the scheduler's
watch handler invalidating that node, as the informer would. The apiserver round
trip of a bind (one conditional Apply) is not part of it: it is the apiserver's
figure, and the scheduler's workers overlap it with the next choice.

``end_to_end`` is the same work through the apiserver, by a real
``dora-controllers`` process running only the scheduler: there every bind is one
conditional Apply (events aggregated per workload), so the apiserver sets the
pace. Once all are bound, it checks that no GPU of a node went to two containers.

The zone is realistic: a thousand nodes of mixed GPU products (A100, V100, Quadro,
mixed A100 + T4, CPU-only), each with a Ready status and its Lease; ten thousand
pending Containers of five hundred workloads, a third wanting GPUs (one or two, of
All or of named products), the rest CPU cores only.

``queue_cost`` is the queue's price on that work: the same zone and containers, but
of three accounts (two users and a shared workspace, each under a Quota that does
not bind) and mixed priorities, placed twice in one run: once as above, once with
the checks ``Scheduler._schedule`` makes under its lock after choosing a node (the
quota gate's ``refusal``, then ``Turns.ahead``). A container that yields is tried
again after the one ahead of it (which the scheduler enqueues at once), so the
decisions that yield are part of the price.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

from bench import daemons
from bench.agent_idle import cpu_seconds
from bench.cluster import Cluster
from bench.figures import Figure
from dora.api import conventions, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.controllers.events import Recorder
from dora.controllers.scheduler import strategies
from dora.controllers.scheduler.filters import Fit
from dora.controllers.scheduler.reconciler import CONTROLLER as SCHEDULER
from dora.controllers.scheduler.reconciler import Scheduler
from dora.controllers.scheduler.snapshot import request_of
from dora.runtime.cache import Cache, Delta, clone
from dora.runtime.clock import RealClock

ZONE, WORKSPACE = "bench", "bench"
A100, V100, QUADRO, T4 = ("NVIDIA A100-SXM4-80GB", "Tesla V100-SXM2-16GB",
                          "Quadro RTX 6000", "Tesla T4")
# (share of the nodes, their GPUs, what they allow)
NODE_KINDS: list[tuple[float, tuple[str, ...], tuple[str, ...]]] = [
    (0.30, (A100,) * 8, ("CPUWorkload", "GPUWorkload")),
    (0.25, (V100,) * 8, ("CPUWorkload", "GPUWorkload")),
    (0.20, (QUADRO,) * 4, ("CPUWorkload", "GPUWorkload")),
    (0.10, (A100, A100, T4, T4), ("CPUWorkload", "GPUWorkload")),
    (0.15, (), ("CPUWorkload",)),
]
# (share of the GPU containers, their product selector)
GPU_SELECTORS: list[tuple[float, tuple[str, ...]]] = [
    (0.50, ("All",)), (0.20, (A100,)), (0.15, (V100,)), (0.15, (QUADRO, V100)),
]
TARGET = 2_000.0
# End to end through the apiserver: docs/architecture.md's target, and Nomad's published rate.
E2E_TARGET, NOMAD = 1_000.0, 1_500.0
# The queue's figure: the accounts (two users, whose default workspaces they are, and a
# shared workspace) and the priorities of its workloads.
ACCOUNTS = ("alice", "bob", "shared")
PRIORITIES = (0, 0, 10, 50)
# Placements per second with the queue's checks over those without, at least; CPU-time
# rates of two runs in one process differ by a few percent on a shared machine.
QUEUE_TARGET = 0.9


def _pick(rng: random.Random, shares: list[tuple[float, object]]) -> object:
    point, total = rng.random(), 0.0
    for share, value in shares:
        total += share
        if point < total:
            return value
    return shares[-1][1]


def zone_nodes(count: int, *, seed: int = 1, zone: str = ZONE,
               prefix: str = "node") -> tuple[list[object_pb2.Object], list[object_pb2.Object]]:
    """``count`` Ready Nodes of mixed GPU products, and the Lease of each."""
    rng = random.Random(seed)
    nodes, leases = [], []
    for index in range(count):
        gpus, allow = cast(tuple[tuple[str, ...], tuple[str, ...]],
                           _pick(rng, [(s, (g, a)) for s, g, a in NODE_KINDS]))
        node = objects.new("Node", f"{prefix}-{index:04d}", zone=zone)
        node.metadata.resource_version = index + 1
        node.node.spec.allow.extend(allow)
        status = node.node.status
        status.phase = "Ready"
        status.cpu.count = 64
        status.cpu.product_name = rng.choice(["AMD EPYC 7742", "Intel Xeon Gold 6132"])
        for gpu_index, product in enumerate(gpus):
            status.gpus.add(index=gpu_index, uuid=f"GPU-{index:04d}-{gpu_index}",
                            product_name=product)
        nodes.append(node)
        lease = objects.new("Lease", conventions.node_lease_name(node.metadata.name), zone=zone)
        lease.lease.spec.holder = node.metadata.name
        leases.append(lease)
    return nodes, leases


def pending_containers(count: int, *, strategy: str, seed: int = 2, zone: str = ZONE,
                       workspace: str = WORKSPACE,
                       queued: bool = False) -> list[object_pb2.Object]:
    """``count`` pending Containers, as the workload controller makes them, of
    workloads of 20 replicas each (``queued``: each workload of one of ``ACCOUNTS``,
    with one of ``PRIORITIES``; the shapes are the same)."""
    made = []
    for index in range(count):
        workload = f"wk{index // 20:04d}"
        wrng = random.Random(f"{seed}-{workload}")  # one workload, one shape
        if queued:
            qrng = random.Random(f"{seed}-{workload}-queue")
            workspace = qrng.choice(ACCOUNTS)
        container = objects.new("Container", f"{workload}-{index % 20:02d}", zone=zone,
                                workspace=workspace)
        container.metadata.resource_version = 10_000 + index
        container.metadata.uid = f"uid-{index}"
        container.metadata.labels[conventions.WORKLOAD_LABEL] = workload
        container.metadata.owner_references.add(kind="Workload", name=workload,
                                                uid=f"uid-{workload}", controller=True)
        spec = container.container.spec
        spec.workload, spec.version = workload, 1
        template = spec.template
        template.image.image = "busybox"
        template.config.affinity = strategy
        if queued:
            template.priority = qrng.choice(PRIORITIES)
        selectors = template.selectors
        if wrng.random() < 1 / 3:
            selectors.gpu.count = 1 if wrng.random() < 0.75 else 2
            products = cast(tuple[str, ...], _pick(wrng, [(s, p) for s, p in GPU_SELECTORS]))
            selectors.gpu.product_name.extend(products)
            selectors.cpu.count = 4
        else:
            selectors.cpu.count = wrng.choice([1, 2, 2, 4])
        selectors.cpu.product_name.append("All")
        container.container.status.phase = "Pending"
        made.append(container)
    return made


@dataclass
class Run:
    strategy: str
    placed: int
    unschedulable: int
    # The process's CPU time (the figure: other work on a shared machine does not
    # count against it) and the wall-clock time.
    seconds: float
    wall: float
    # Decisions that yielded to a container ranked ahead, and the CPU time of the
    # queue's checks themselves (with them).
    yielded: int = 0
    checks: float = 0.0

    @property
    def rate(self) -> float:
        return self.placed / self.seconds if self.seconds else 0.0

    @property
    def wall_rate(self) -> float:
        return self.placed / self.wall if self.wall else 0.0


def _bound(container: object_pb2.Object, fit: Fit, revision: int) -> object_pb2.Object:
    """The Container as the cache shows it once bound (``binder.binding``)."""
    obj = clone(container)
    spec = obj.container.spec
    spec.node_name = fit.node.name
    for gpu in fit.gpus:
        spec.gpus.add(index=gpu.index, uuid=gpu.uuid, product_name=gpu.product)
    spec.cpu_millicores = request_of(container).cpu_millicores
    obj.metadata.labels[conventions.PLACEMENT_LABEL] = fit.node.name
    obj.metadata.labels[conventions.NODE_LABEL] = fit.node.name
    obj.metadata.resource_version = revision
    return obj


def place_all(*, strategy: str, nodes: list[object_pb2.Object],
              leases: list[object_pb2.Object], containers: list[object_pb2.Object],
              queue: bool = False) -> Run:
    """Place every Container, one after the other, with a fresh scheduler and cache;
    ``queue``: with the quota gate's and the turns' checks, as ``_schedule`` makes them."""
    cache = SCHEDULER.new_cache()  # its stores and indexes, as a manager makes them
    for obj in (*nodes, *leases, *containers, *queue_objects()):
        cache.store(obj.kind).upsert(obj)
    # Nothing of the scheduler's apiserver side is used: only ``choose`` and the
    # watch handler, which read and write its cache.
    scheduler = Scheduler(client=cast(Client, None), cache=cache, zone=ZONE, clock=RealClock(),
                          recorder=cast(Recorder, None), rng=random.Random(7))
    for container in containers:  # the informer's hooks, as it lists them at start
        scheduler.on_container(Delta(old=None, new=container))
    scheduler.turns.observe()
    store = cache.store("Container")
    placed = unschedulable = yielded = 0
    checks = 0.0
    revision = 100_000
    work = deque(objects.ref_of(c) for c in containers)
    started, cpu_started = time.perf_counter(), time.process_time()
    while work:
        key = work.popleft()
        current = store.get(key)
        assert current is not None
        if current.container.spec.node_name:
            continue  # placed already: it went first, ahead of one that yielded to it
        request = request_of(current)
        choice = scheduler.choose(key, request, current.container.spec.template.config.affinity,
                                  base=current.metadata.resource_version)
        if isinstance(choice, str):
            unschedulable += 1
            continue
        if queue:
            checking = time.process_time()
            over = scheduler.quotas.refusal(key=key, container=current, gpus=choice.gpus,
                                            millicores=request.cpu_millicores,
                                            assumed=scheduler.assumed)
            assert over is None, over  # the bench's quotas do not bind
            ahead = scheduler.turns.ahead(key=key, container=current, gpus=choice.gpus,
                                          millicores=request.cpu_millicores,
                                          assumed=scheduler.assumed)
            checks += time.process_time() - checking
            if ahead is not None:
                scheduler.forget(key)
                yielded += 1
                work.appendleft(ahead.first)  # the scheduler enqueues it at once
                work.append(key)  # and this one looks again later
                continue
        revision += 1
        delta = store.upsert(_bound(current, choice, revision))
        assert delta is not None
        scheduler.on_container_change(delta)  # the informer's call
        placed += 1
    cpu, wall = time.process_time() - cpu_started, time.perf_counter() - started
    _check_no_overcommit(cache)
    return Run(strategy=strategy, placed=placed, unschedulable=unschedulable, seconds=cpu,
               wall=wall, yielded=yielded, checks=checks)


def queue_objects() -> list[object_pb2.Object]:
    """The Users of ``ACCOUNTS`` (each the default of its own workspace) and a Quota on
    each account that does not bind (the gate does its whole work and says yes)."""
    made = []
    for account in ACCOUNTS:
        if account != "shared":
            user = objects.new("User", account)
            user.user.spec.defaults.workspace = account
            made.append(user)
        quota = objects.new("Quota", f"cap-{account}", zone=ZONE)
        spec = quota.quota.spec
        spec.workspace = account
        spec.gpu.add(product_name=["All"], count=1_000_000)
        spec.cpu.millicores = 1_000_000_000
        spec.containers = 1_000_000
        made.append(quota)
    return made


def _check_no_overcommit(cache: Cache) -> None:
    """A fast scheduler that gives a GPU twice is no scheduler: check every node."""
    containers = cache.store("Container")
    check_no_overcommit(cache.store("Node"), lambda node: containers.by_index("node", node))


def check_no_overcommit(nodes: Iterable[object_pb2.Object],
                        on: Callable[[str], Iterable[object_pb2.Object]]) -> int:
    """Raise unless every GPU of ``nodes`` went to one container at most and no node's
    CPU is overcommitted (``on``: the containers bound to a node); the GPUs given."""
    given = 0
    for node in nodes:
        used: set[int] = set()
        cpu = 0
        for container in on(node.metadata.name):
            indices = {g.index for g in container.container.spec.gpus}
            if used & indices:
                raise AssertionError(f"GPU {sorted(used & indices)} of "
                                     f"{node.metadata.name} given twice")
            used |= indices
            cpu += container.container.spec.cpu_millicores
        if cpu > node.node.status.cpu.count * 1000:
            raise AssertionError(f"CPU of {node.metadata.name} overcommitted")
        given += len(used)
    return given


def throughput(*, nodes: int, containers: int) -> list[Figure]:
    """One figure per strategy: ``containers`` placed onto ``nodes``."""
    node_objs, leases = zone_nodes(nodes)
    figures = []
    for strategy in strategies.STRATEGIES:
        pending = pending_containers(containers, strategy=strategy)
        run = place_all(strategy=strategy, nodes=node_objs, leases=leases, containers=pending)
        figures.append(Figure(
            name=f"scheduler placements ({strategy})",
            value=round(run.rate, 1), unit="placements/s",
            baseline={"what": "the target (docs/architecture.md)", "value": TARGET,
                      "unit": "placements/s"},
            ratio=round(run.rate / TARGET, 3),
            target=f">= {TARGET:,.0f} placements/s", met=run.rate >= TARGET,
            notes=f"in-process placement logic (Scheduler.choose: snapshot, filters, "
                  f"strategy, then the bound Container into the cache), no apiserver: "
                  f"{run.placed} of {containers} containers placed one by one onto {nodes} "
                  f"simulated nodes (mixed A100/V100/Quadro/T4/CPU-only), from a cold "
                  f"snapshot, in {run.seconds:.2f}s of CPU time ({run.wall:.2f}s wall "
                  f"clock: {run.wall_rate:,.0f}/s on the shared machine)"
                  + (f", {run.unschedulable} unschedulable" if run.unschedulable else ""),
        ))
    return figures


async def end_to_end(cluster: Cluster, client: Client, *, nodes: int, containers: int,
                     strategy: str = "Distribute") -> Figure:
    """Containers bound per second by a real ``dora-controllers`` process (scheduler
    only) through the apiserver, one conditional Apply per bind; then no GPU may have
    gone to two containers."""
    tag = uuid.uuid4().hex[:6]
    zone = f"sched-{tag}"
    await client.apply(objects.new("Zone", zone))
    lease_id, _ = await client.grant_lease(3600)
    node_objs, leases = zone_nodes(nodes, zone=zone, prefix=f"sim-{tag}")
    for node, lease in zip(node_objs, leases, strict=True):
        node.metadata.resource_version = 0
        spec_only = clone(node)
        spec_only.node.ClearField("status")
        await client.apply(spec_only)
        await client.update_status(node)
        lease.lease.spec.lease_id = lease_id
        lease.lease.spec.ttl_seconds = 3600
        await client.apply(lease)
    pending = pending_containers(containers, strategy=strategy, zone=zone, workspace="default")
    for start in range(0, len(pending), 100):
        batch = []
        for container in pending[start:start + 100]:
            container.metadata.resource_version = 0
            container.metadata.uid = ""
            batch.append(client.apply(container))
        await asyncio.gather(*batch)

    bound: dict[str, float] = {}
    first, done = asyncio.Event(), asyncio.Event()

    async def follow() -> None:
        async for event in client.watch("Container", zone=zone):
            if conventions.NODE_LABEL in event.object.metadata.labels:
                bound.setdefault(event.object.metadata.name, time.perf_counter())
                first.set()
                if len(bound) == containers:
                    done.set()
                    return

    watcher = asyncio.create_task(follow())
    cpu: dict[str, float] = {}
    try:
        async with daemons.controllers(cluster, client, zone=zone, which="scheduler") as ctl:
            pids = {"apiserver": cluster.apiserver_pid, "controllers": ctl.pid,
                    "etcd": cluster.etcd_pid}
            # From the first bind on (the controllers' start-up and informer sync is not
            # the bind rate): what each process spends on the binds.
            async with asyncio.timeout(300):
                await first.wait()
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            async with asyncio.timeout(300):
                await done.wait()
            cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        with contextlib.suppress(Exception):
            await client.revoke_lease(lease_id)
    times = sorted(bound.values())
    span = times[-1] - times[0]
    rate = (len(times) - 1) / span if span > 0 else float(len(times))
    items, _ = await client.list("Container", zone=zone)
    placed_on: dict[str, list[object_pb2.Object]] = {}
    for item in items:
        placed_on.setdefault(item.container.spec.node_name, []).append(item)
    nodes_now, _ = await client.list("Node", zone=zone)
    gpus = check_no_overcommit(nodes_now, lambda name: placed_on.get(name, []))
    events, _ = await client.list("Event", zone=zone)
    total = sum(cpu.values())
    per_cpu = (len(times) - 1) / total if total else 0.0
    spent = ", ".join(f"{name} {seconds * 1000 / max(1, len(times) - 1):.2f}"
                      for name, seconds in cpu.items())
    return Figure(
        name=f"scheduler placements end to end ({strategy})",
        value=round(rate, 1), unit="placements/s",
        baseline={"what": "Nomad's published rate", "value": NOMAD, "unit": "placements/s"},
        ratio=round(rate / NOMAD, 3), target=f">= {E2E_TARGET:,.0f} placements/s",
        met=rate >= E2E_TARGET,
        notes=f"end to end through the apiserver: a dora-controllers process running only "
              f"the scheduler binds {containers} pending Containers onto {nodes} "
              f"simulated Nodes (declared, Ready, leased; no agents); each bind is one "
              f"conditional Apply; {len(events)} Event objects for them (aggregated per "
              f"workload, counts {sum(e.event.spec.count for e in events)}); rate from the "
              f"first bind to the last seen by a watch ({span:.2f}s); {gpus} GPUs given, "
              f"none twice, no CPU overcommitted; CPU ms per bind: {spent} "
              f"({per_cpu:,.0f} binds per CPU-second of the three: the rate two idle "
              f"cores would reach is about twice that)",
    )


def queue_cost(*, nodes: int, containers: int, strategy: str = "Distribute") -> Figure:
    """Placements per second with the queue's checks beside the same without them, in
    one run, on the same zone and containers (of three accounts, mixed priorities)."""
    node_objs, leases = zone_nodes(nodes)
    pending = pending_containers(containers, strategy=strategy, queued=True)
    without = place_all(strategy=strategy, nodes=node_objs, leases=leases, containers=pending)
    with_queue = place_all(strategy=strategy, nodes=node_objs, leases=leases,
                           containers=pending, queue=True)
    ratio = with_queue.rate / without.rate if without.rate else 0.0
    decisions = with_queue.placed + with_queue.yielded
    per_decision = with_queue.checks / max(1, decisions) * 1000
    choose = (with_queue.seconds - with_queue.checks) / max(1, decisions) * 1000
    return Figure(
        name=f"scheduler placements with the queue ({strategy})",
        value=round(with_queue.rate, 1), unit="placements/s",
        baseline={"what": "the same placements without the queue's checks, same run",
                  "value": round(without.rate, 1), "unit": "placements/s"},
        ratio=round(ratio, 3), target=f">= {QUEUE_TARGET} of the rate without the queue",
        met=ratio >= QUEUE_TARGET,
        notes=f"in-process, as 'scheduler placements': {containers} pending containers "
              f"of {len(ACCOUNTS)} accounts (each under a Quota that does not bind) and "
              f"priorities {sorted(set(PRIORITIES))} onto {nodes} simulated nodes; with "
              f"the queue every decision also asks the quota gate and Turns.ahead, as "
              f"Scheduler._schedule does under its lock: {with_queue.placed} placed in "
              f"{with_queue.seconds:.2f}s of CPU time, {with_queue.yielded} decisions "
              f"yielded to a container ranked ahead (tried again after it); without: "
              f"{without.placed} placed in {without.seconds:.2f}s; the queue's checks "
              f"themselves cost {per_decision:.3f} ms per decision, the rest of a "
              f"decision (choosing the node, the cache) {choose:.3f} ms, so the decisions "
              f"that yield are most of the difference; the pending count falls from "
              f"{containers} to {containers - with_queue.placed} as they are placed "
              f"(CPU-time rates of two runs differ by a few percent on a shared machine, "
              f"hence the target of {QUEUE_TARGET})",
    )
