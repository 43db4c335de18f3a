"""Growth with the number of stored objects: does anything grow worse than linearly?

For each size (10k, 50k, 100k objects at full size), a fresh etcd is filled with that
many objects, a third each Workloads, Containers and Events, a hundred of each kind per
workspace, written straight to etcd as the apiserver stores them (what is measured
is holding and serving them, not writing them). Then, for a fresh ``dora-apiserver``
on it:

- its watch-cache start-up: from the process's start to the first List of every
  Container answered in full;
- its resident memory (``/proc``) once started;
- Get p99 of one Container, List p99 of one workspace's Containers (a hundred, at
  every size), List p99 of every Container: as ``doractl get`` lists, page by page
  at one revision without a resourceVersion (a consistent read: from the watch
  cache once it has seen etcd's current revision; paged from etcd, as it was before,
  it grew as n^2/500, etcd counting every key of the range again for each page),
  and with a resourceVersion, from the watch cache in one answer;
- a ``dora-controllers`` process running the scheduler (its informers hold every
  Container, Node and Lease; the Containers are bound, so it has nothing to do) on the
  same zone: the time from its start to leading (every informer listed and synced
  first), and its resident memory a second later.

Each figure is printed per size, with its growth from the smallest size against the
growth of the objects: "linear" when it grew at most 1.5x as much (a fixed start-up
cost makes small sizes look worse, never better), "flat" when it did not grow by more
than 1.5x at all.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from bench import cluster, daemons
from bench.agent_idle import rss_mib
from bench.figures import Figure, percentile
from dora.api import conventions, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.apiserver import registry
from dora.runtime.cache import clone
from tests.integration.etcd import EtcdProcess

PER_WORKSPACE = 100  # of each kind
ZONE = "default"


@dataclass
class Sample:
    objects: int
    startup: float
    apiserver_rss: float
    get_p99: float
    list_workspace_p99: float
    list_kind_p99: float
    list_cached_p99: float
    controllers_sync: float
    controllers_rss: float


def _templates() -> list[object_pb2.Object]:
    wl = objects.new("Workload", "t", zone=ZONE, workspace="default")
    spec = wl.workload.spec
    spec.replica.count = 1
    spec.image.image = "busybox"
    spec.config.cmd = "sleep 3600"
    spec.selectors.cpu.count = 1
    spec.selectors.cpu.product_name.append("All")
    container = objects.new("Container", "t.0", zone=ZONE, workspace="default")
    container.container.spec.workload = "t"
    container.container.spec.version = 1
    container.container.spec.template.CopyFrom(spec)
    container.metadata.labels[conventions.WORKLOAD_LABEL] = "t"
    # Bound (to a node that is not there): the scheduler holds them, leaves them be.
    container.container.spec.node_name = "n-1"
    container.metadata.labels[conventions.NODE_LABEL] = "n-1"
    container.metadata.labels[conventions.PLACEMENT_LABEL] = "n-1"
    event = objects.new("Event", "t.0.abc", zone=ZONE, workspace="default")
    event.event.spec.type, event.event.spec.reason = "Normal", "Scheduled"
    event.event.spec.message = "bound t.0 to node n-1"
    event.event.spec.involved_object.kind = "Container"
    event.event.spec.involved_object.name = "t.0"
    event.event.spec.count = 1
    return [wl, container, event]


async def _fill(client: Client, etcd: EtcdProcess, count: int) -> int:
    """``count`` objects straight into etcd, as the apiserver stores them; workspaces."""
    stored = []
    for template in _templates():
        obj, _ = await client.apply(template, dry_run=True)
        stored.append(obj)
    per_kind = count // 3
    workspaces = max(1, per_kind // PER_WORKSPACE)
    for index in range(workspaces):
        await client.apply(objects.new("Workspace", f"ws-{index:04d}"))
    async with cluster.raw_etcd(etcd.endpoint) as raw:
        pending = []
        for template in stored:
            for index in range(per_kind):
                obj = clone(template)
                meta = obj.metadata
                meta.workspace = f"ws-{index // PER_WORKSPACE:04d}"
                meta.name = f"{template.metadata.name}-{index:06d}"
                meta.uid = f"{template.kind[:2]}-{index:06d}"
                pending.append(raw.put_if(
                    registry.key(registry.Ref(obj.kind, ZONE, meta.workspace, meta.name)),
                    registry.encode(obj), mod_revision=0))
                if len(pending) >= 256:
                    await asyncio.gather(*pending)
                    pending = []
        await asyncio.gather(*pending)
    return workspaces


async def _timed(call: object, times: int) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await call()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return percentile(samples, 99)


async def sample(count: int) -> Sample:
    etcd = EtcdProcess()
    etcd.start()
    try:
        async with cluster.running(etcd=etcd) as first, \
                Client(first.target, token=first.token) as client:
            workspaces = await _fill(client, etcd, count)
            token_file = first.token_file
        per_kind = count // 3
        started = time.perf_counter()
        async with cluster.running(etcd=etcd, token_file=token_file) as running, \
                Client(running.target, token=running.token) as client:
            while True:
                items, _ = await client.list("Container", zone=ZONE)
                if len(items) >= per_kind:
                    break
                await asyncio.sleep(0.05)
            startup = time.perf_counter() - started
            apiserver_rss = rss_mib(running.apiserver_pid)
            rng = random.Random(1)

            async def get() -> None:
                index = rng.randrange(per_kind)
                await client.get("Container", f"t.0-{index:06d}", zone=ZONE,
                                 workspace=f"ws-{index // PER_WORKSPACE:04d}")

            async def list_workspace() -> None:
                index = rng.randrange(workspaces)
                items, _ = await client.list("Container", zone=ZONE, workspace=f"ws-{index:04d}")
                assert len(items) == min(PER_WORKSPACE, per_kind - index * PER_WORKSPACE)

            async def list_kind() -> None:
                items, _ = await client.list("Container", zone=ZONE)
                assert len(items) == per_kind

            _, revision = await client.list("Container", zone=ZONE, workspace="ws-0000")

            async def list_cached() -> None:
                items, _ = await client.list("Container", zone=ZONE, resource_version=revision)
                assert len(items) == per_kind

            get_p99 = await _timed(get, 300)
            list_workspace_p99 = await _timed(list_workspace, 50)
            list_kind_p99 = await _timed(list_kind, 5)
            list_cached_p99 = await _timed(list_cached, 5)
            ctl_started = time.perf_counter()
            async with daemons.controllers(running, client, zone=ZONE,
                                           which="scheduler") as ctl:
                sync = time.perf_counter() - ctl_started
                await asyncio.sleep(1.0)
                ctl_rss = rss_mib(ctl.pid)
        return Sample(count, startup, apiserver_rss, get_p99, list_workspace_p99,
                      list_kind_p99, list_cached_p99, sync, ctl_rss)
    finally:
        etcd.cleanup()


def _growth(values: list[float], counts: list[int]) -> tuple[float, str]:
    grew = values[-1] / values[0] if values[0] > 0 else float("inf")
    objects_grew = counts[-1] / counts[0]
    if grew <= 1.5:
        return grew, "flat"
    return grew, "linear" if grew <= 1.5 * objects_grew else "WORSE than linear"


async def growth(sizes: tuple[int, ...]) -> list[Figure]:
    samples = [await sample(count) for count in sizes]
    counts = [s.objects for s in samples]
    measures: list[tuple[str, str, str, float]] = [
        # (field, what, unit, scale to the unit)
        ("startup", "apiserver watch-cache start-up", "s", 1.0),
        ("apiserver_rss", "apiserver resident memory", "MiB", 1.0),
        ("get_p99", "Get p99 (one Container)", "ms", 1000.0),
        ("list_workspace_p99", "List p99 of one workspace (100 Containers)", "ms", 1000.0),
        ("list_kind_p99", "List p99 of every Container", "ms", 1000.0),
        ("list_cached_p99", "List p99 of every Container from the watch cache", "ms", 1000.0),
        ("controllers_sync", "controllers start to leading (informers synced)", "s", 1.0),
        ("controllers_rss", "controllers resident memory", "MiB", 1.0),
    ]
    figures = []
    for field, what, unit, scale in measures:
        values = [getattr(s, field) * scale for s in samples]
        grew, verdict = _growth(values, counts)
        series = ", ".join(f"{c:,}: {v:.1f} {unit}" for c, v in zip(counts, values, strict=True))
        figures.append(Figure(
            name=f"scale: {what} at {counts[-1]:,} objects",
            value=round(values[-1], 2), unit=unit,
            baseline={"what": f"the same at {counts[0]:,} objects", "value": round(values[0], 2),
                      "unit": unit},
            ratio=round(grew, 2),
            target=f"grows at most linearly (objects x{counts[-1] / counts[0]:.0f})",
            met=verdict != "WORSE than linear",
            notes=f"{verdict}: {series} (x{grew:.1f} for x{counts[-1] / counts[0]:.0f} "
                  f"objects; a third each Workloads, Containers, Events, 100 of each per "
                  f"workspace)",
        ))
    return figures
