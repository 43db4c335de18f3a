"""A Task of ten thousand trivial jobs on a thousand simulated nodes: seconds from the
Task's create to every job bound, and what the controllers process spends on it.

The issue's figure (issue 18: "goal <= 10 s, depends on the scheduler's end-to-end
rate"). The parts are real: the apiserver process, a ``dora-controllers`` process
running the task, scheduler and volume controllers, the VolumeFiles service the
task controller lists the configs folder through. What is simulated is the
nodes: a thousand declared Nodes (``scheduler.zone_nodes``: mixed GPU products,
64 cores, Ready, each with its Lease), no agent behind them, so jobs are bound
and stay Pending; binding is what is measured.

The configs folder. The task controller lists it through the apiserver's
``VolumeFiles``, which relays to a node agent's file server; the simulated nodes
have none. So one more node, ``a-files-<tag>`` (first by name, which is the
order the apiserver asks nodes in), is served by a real ``AgentVolumeFilesService``
in this process, the agent's own file server with its agent secret, over a
Local storage in a temporary folder holding the ten thousand config files. That
node allows no workload, so no job lands on it.

The baseline, measured in the same run by the same controllers process: the same
number of job-shaped Containers (no volume) created by a client (32 at once, as
the task controller creates them) instead of by a Task, from the first create to
the last bound: the scheduler's own end-to-end rate. The ratio says what the task
controller (and the jobs' volume) adds to it. The controllers' CPU is its ``utime +
stime`` over each span, its memory the largest ``VmRSS`` sampled every half second
(``/proc/<pid>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench import daemons
from bench.agent_idle import cpu_seconds, rss_mib
from bench.cluster import Cluster
from bench.figures import Figure
from bench.scheduler import zone_nodes
from dora.agent.server import AgentServer
from dora.agent.volumefiles import AgentVolumeFilesService
from dora.agent.volumes import Resolver
from dora.api import conventions, objects, tasks
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.runtime.cache import clone

TARGET_SECONDS = 10.0
WORKSPACE = "default"
CREATES_AT_ONCE = 32  # as the task controller (dora.controllers.task.reconciler)
JOB_EXEC = "true %DATA %IN %OUT"


@dataclass
class Span:
    """One measured run: seconds to every job bound, the controllers' CPU and memory."""

    seconds: float
    first_bound: float
    cpu: float
    rss_peak: float


def job_task(name: str, *, zone: str) -> object_pb2.Object:
    """The Task: one trivial job per config file, no test jobs, no parallelism limit."""
    obj = objects.new("Task", name, zone=zone, workspace=WORKSPACE)
    spec = obj.task.spec
    spec.image.image = daemons.IMAGE
    spec.exec = JOB_EXEC
    spec.data.volume, spec.data.path = "files", "data.txt"
    spec.configs.volume, spec.configs.path = "files", "configs/"
    spec.output.volume, spec.output.path = "files", f"out/{name}/"
    spec.selectors.cpu.millicores = 100
    spec.test_jobs = 0
    return obj


def plain_job(task: object_pb2.Object, index: int) -> object_pb2.Object:
    """A Container shaped as a job of ``task`` (its template, less the volumes: they
    would time the volume controller naming 10,000 distinct users, where a task's
    jobs are one), made by a client."""
    meta = task.metadata
    container = objects.new("Container", f"plain-{meta.name}.{index}", zone=meta.zone,
                            workspace=meta.workspace)
    spec = container.container.spec
    spec.workload, spec.version = f"plain-{meta.name}", 1
    spec.template.CopyFrom(tasks.template(task))
    del spec.template.volumes[:]
    spec.template.config.cmd = "true"
    return container


class Bound:
    """Watches a zone's Containers; when each one named with ``prefix`` was bound."""

    def __init__(self, client: Client, zone: str, prefix: str, count: int) -> None:
        self.client, self.zone, self.prefix, self.count = client, zone, prefix, count
        self.at: dict[str, float] = {}
        self.done = asyncio.Event()

    async def follow(self, ready: asyncio.Event) -> None:
        _, version = await self.client.list("Container", zone=self.zone)
        ready.set()
        async for event in self.client.watch("Container", zone=self.zone,
                                             resource_version=version):
            meta = event.object.metadata
            if meta.name.startswith(self.prefix) and conventions.NODE_LABEL in meta.labels:
                self.at.setdefault(meta.name, time.perf_counter())
                if len(self.at) >= self.count:
                    self.done.set()
                    return


async def measure(client: Client, controllers: daemons.Daemon, *, zone: str, prefix: str,
                  count: int, start: Callable[[], Awaitable[None]],
                  within: float) -> Span:
    """Run ``start`` and wait until ``count`` Containers named ``prefix...`` are bound."""
    bound = Bound(client, zone, prefix, count)
    ready = asyncio.Event()
    watcher = asyncio.create_task(bound.follow(ready))
    await ready.wait()
    rss = [rss_mib(controllers.pid)]

    async def sample() -> None:
        while True:
            await asyncio.sleep(0.5)
            rss.append(rss_mib(controllers.pid))

    sampler = asyncio.create_task(sample())
    cpu_before = cpu_seconds(controllers.pid)
    started = time.perf_counter()
    try:
        await start()
        async with asyncio.timeout(within):
            await bound.done.wait()
    except TimeoutError:
        raise RuntimeError(f"{len(bound.at)} of {count} {prefix}* bound within {within:.0f}s; "
                           f"controllers log:\n{controllers.log_tail()}") from None
    finally:
        for running in (watcher, sampler):
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    ended = max(bound.at.values())
    cpu = cpu_seconds(controllers.pid) - cpu_before
    return Span(seconds=ended - started, first_bound=min(bound.at.values()) - started,
                cpu=cpu, rss_peak=max(rss))


@contextlib.asynccontextmanager
async def file_node(cluster: Cluster, client: Client, *, zone: str, node: str,
                    workdir: Path) -> AsyncIterator[Path]:
    """The node whose agent file server reaches the Local storage; its folder."""
    agent_addr, token_file = await daemons.declare_node(client, node=node, workdir=workdir,
                                                        zone=zone)
    declared = await client.get("Node", node, zone=zone)
    del declared.node.spec.allow[:]  # files only: no job lands here
    await client.apply(declared)
    token = token_file.read_text().strip()
    async with Client(cluster.target, token=token) as as_node:
        server = AgentServer(listen=agent_addr, secret=cluster.agent_secret, handlers=[
            AgentVolumeFilesService(resolver=Resolver(client=as_node)).handler()])
        await server.start()
        try:
            yield workdir / "storage"
        finally:
            await server.stop(0)


async def declare_zone(client: Client, *, zone: str, nodes: int, tag: str,
                       file_node_name: str) -> int:
    """The zone's simulated Nodes (Ready, leased) and the file node's status; the lease."""
    await client.apply(objects.new("Zone", zone))
    lease_id, _ = await client.grant_lease(3600)
    node_objs, leases = zone_nodes(nodes, zone=zone, prefix=f"sim-{tag}")
    files = objects.new("Node", file_node_name, zone=zone)
    files.node.status.phase = "Ready"
    files.node.status.cpu.count = 1
    files_lease = objects.new("Lease", conventions.node_lease_name(file_node_name), zone=zone)
    files_lease.lease.spec.holder = file_node_name

    async def one(node: object_pb2.Object, lease: object_pb2.Object, declare: bool) -> None:
        if declare:
            node.metadata.resource_version = 0
            spec_only = clone(node)
            spec_only.node.ClearField("status")
            await client.apply(spec_only)
        else:
            node = await client.get("Node", node.metadata.name, zone=zone)
            node.node.status.phase, node.node.status.cpu.count = "Ready", 1
        await client.update_status(node)
        lease.lease.spec.lease_id = lease_id
        lease.lease.spec.ttl_seconds = 3600
        await client.apply(lease)

    await one(files, files_lease, False)
    pairs = list(zip(node_objs, leases, strict=True))
    for start in range(0, len(pairs), 50):
        await asyncio.gather(*(one(n, lease, True) for n, lease in pairs[start:start + 50]))
    return lease_id


async def task_to_bound(cluster: Cluster, client: Client, *, nodes: int,
                        jobs: int) -> list[Figure]:
    """The figures: the Task's create to every job bound, against plain Containers."""
    tag = uuid.uuid4().hex[:6]
    zone = f"tasks-{tag}"
    file_node_name = f"a-files-{tag}"
    workdir = Path(await asyncio.to_thread(_mkdtemp))
    await client.apply(objects.new("Zone", zone))
    async with file_node(cluster, client, zone=zone, node=file_node_name,
                         workdir=workdir) as storage:
        lease_id = await declare_zone(client, zone=zone, nodes=nodes, tag=tag,
                                      file_node_name=file_node_name)
        try:
            await asyncio.to_thread(_config_files, storage / WORKSPACE / "files", jobs)
            volume = objects.new("Volume", "files", zone=zone, workspace=WORKSPACE)
            volume.volume.spec.storage = "local"
            await client.apply(volume)
            async with daemons.controllers(cluster, client, zone=zone,
                                           which="task,scheduler,volume") as controllers:
                await _volume_ready(client, zone)
                task = job_task(f"sweep-{tag}", zone=zone)
                within = max(120.0, jobs / 20)

                async def create_plain() -> None:
                    made = [plain_job(task, i) for i in range(jobs)]
                    for start in range(0, jobs, CREATES_AT_ONCE):
                        await asyncio.gather(*(client.apply(c, create_only=True)
                                               for c in made[start:start + CREATES_AT_ONCE]))

                async def create_task() -> None:
                    await client.apply(task, create_only=True)

                plain = await measure(client, controllers, zone=zone,
                                      prefix=f"plain-{task.metadata.name}.", count=jobs,
                                      start=create_plain, within=within)
                span = await measure(client, controllers, zone=zone,
                                     prefix=f"{task.metadata.name}.j", count=jobs,
                                     start=create_task, within=within)
                stored = await client.get("Task", task.metadata.name, zone=zone,
                                          workspace=WORKSPACE)
                if stored.task.status.total != jobs:
                    raise RuntimeError(f"the task has {stored.task.status.total} jobs, "
                                       f"not {jobs}: {stored.task.status.message}")
                used_by = list((await client.get("Volume", "files", zone=zone,
                                                 workspace=WORKSPACE)).volume.status.used_by)
        finally:
            with contextlib.suppress(Exception):
                await client.revoke_lease(lease_id)
    await asyncio.to_thread(_rmtree, workdir)
    return _figures(span, plain, nodes=nodes, jobs=jobs, used_by=used_by)


def _figures(span: Span, plain: Span, *, nodes: int, jobs: int,
             used_by: list[str]) -> list[Figure]:
    what = (f"{jobs} trivial jobs (one per config file, no test jobs, no parallelism limit) "
            f"on {nodes} simulated Nodes (declared, Ready, leased; no agents): a "
            f"dora-controllers process (task, scheduler, volume) through the apiserver")
    baseline = {"what": f"the same {jobs} job-shaped Containers (no volume) created by "
                        f"a client ({CREATES_AT_ONCE} at once), first create to last bound",
                "value": round(plain.seconds, 2), "unit": "s"}
    return [
        Figure(
            name="task create to all jobs bound",
            value=round(span.seconds, 2), unit="s", baseline=baseline,
            ratio=round(span.seconds / plain.seconds, 3) if plain.seconds else None,
            target=f"<= {TARGET_SECONDS:g} s (issue 18)", met=span.seconds <= TARGET_SECONDS,
            notes=f"{what}; the configs folder listed through VolumeFiles (one in-process "
                  f"agent file server over a Local storage); first job bound after "
                  f"{span.first_bound:.2f}s; {jobs / span.seconds:,.0f} jobs/s bound "
                  f"against {jobs / plain.seconds:,.0f}/s for the baseline; the Volume's "
                  f"usedBy at the end: {len(used_by)} entries (at most 20: the 10,000 jobs "
                  f"are one entry)",
        ),
        Figure(
            name="task controllers CPU per 1,000 jobs",
            value=round(span.cpu / jobs * 1000, 2), unit="CPU s",
            baseline={"what": "the same, for the baseline's Containers", "unit": "CPU s",
                      "value": round(plain.cpu / jobs * 1000, 2)},
            ratio=round(span.cpu / plain.cpu, 3) if plain.cpu else None,
            target="informational", met=True,
            notes=f"utime+stime of the dora-controllers process from the create to the "
                  f"last bind: {span.cpu:.1f}s for the task, {plain.cpu:.1f}s for the "
                  f"baseline ({what})",
        ),
        Figure(
            name="task controllers peak memory",
            value=round(span.rss_peak, 1), unit="MiB",
            baseline={"what": "the same process's peak during the baseline",
                      "value": round(plain.rss_peak, 1), "unit": "MiB"},
            ratio=round(span.rss_peak / plain.rss_peak, 3) if plain.rss_peak else None,
            target="informational", met=True,
            notes=f"the largest VmRSS of the dora-controllers process, sampled every 0.5s; "
                  f"it holds both runs' {2 * jobs} Containers in its cache by the end",
        ),
    ]


async def _volume_ready(client: Client, zone: str) -> None:
    async with asyncio.timeout(30):
        while True:
            got = await client.get("Volume", "files", zone=zone, workspace=WORKSPACE)
            if got.volume.status.phase == "Ready":
                return
            await asyncio.sleep(0.1)


def _mkdtemp() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="dora-bench-tasks-")


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _config_files(folder: Path, count: int) -> None:
    configs = folder / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    (folder / "data.txt").write_text("data\n")
    for index in range(count):
        (configs / f"config_{index:05d}.txt").write_text(f"{index}\n")
