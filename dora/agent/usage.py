"""What each running container uses (CPU, memory, GPU utilisation), measured by its
agent and written into the Container's ``status.usage``.

``docker stats`` costs a stream and a second of waiting per container, so the agent
reads the kernel's own counters instead: the container's cgroup files, a few small
reads per container and sample.

- **Where**: the cgroup of the container's init process, from ``/proc/<pid>/cgroup``
  (the pid from ``docker inspect``, asked once per Docker container), read under
  ``/sys/fs/cgroup``. cgroup v1 has one hierarchy per controller (``cpuacct``,
  ``memory``); v2 one unified hierarchy (the ``0::`` line).
- **CPU**: the cgroup's CPU time (v1 ``cpuacct.usage`` in ns, v2 ``usage_usec`` of
  ``cpu.stat``) between two samples over the wall time between them: 1000
  millicores is one core busy.
- **Memory**: the cgroup's usage (v1 ``memory.usage_in_bytes``, v2 ``memory.current``)
  less the inactive file cache (``total_inactive_file`` / ``inactive_file`` of
  ``memory.stat``), what ``docker stats`` reports: page cache the kernel may drop
  is not counted as used.
- **GPU**: the average NVML utilisation of the container's GPUs, from the Node
  status reporter's latest reading.

Samples come at the node status' cadence (5 s). Each write is a status update
every watcher of Containers sees, so a sample is written only when it moved: CPU
by more than 5 % (and 20 millicores), memory by more than 5 % (and 1 MiB), GPU
utilisation by 5 points, or when a minute went by and it changed at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dora.agent.containers import Reconciler, Stale, Status
from dora.agent.docker_driver import Engine, EngineError
from dora.api import errors
from dora.api.v1 import object_pb2, workloads_pb2
from dora.runtime.cache import Store

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")

# How far a sample must move from the one written to be written now.
RELATIVE = 0.05
MIN_MILLICORES = 20
MIN_MEMORY = 1024 * 1024
MIN_GPU_POINTS = 5
# A sample that moved less is still written once this long after the last write.
REFRESH = 60.0
# A container whose cgroup could not be found or read is tried again this long after.
RETRY = 60.0


class CgroupError(Exception):
    """The cgroup of a container cannot be found or read."""


@dataclass(frozen=True)
class Cgroup:
    """The directories holding one container's counters (the same one under v2)."""

    cpu: Path
    memory: Path
    v2: bool


@dataclass(frozen=True)
class Reading:
    """The counters at one instant: CPU time so far (ns), memory in use (bytes)."""

    cpu_ns: int
    memory_bytes: int
    at: float  # time.monotonic()


def cgroup_of(pid: int, *, proc: Path = PROC, root: Path = CGROUP_ROOT) -> Cgroup:
    """The cgroup of process ``pid`` as ``/proc/<pid>/cgroup`` names it."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError as exc:
        raise CgroupError(f"cannot read /proc/{pid}/cgroup: {exc}") from None
    return parse_proc_cgroup(text, root=root)


def parse_proc_cgroup(text: str, *, root: Path = CGROUP_ROOT) -> Cgroup:
    """The CPU and memory directories from the text of ``/proc/<pid>/cgroup``:
    ``4:memory:/docker/<id>`` lines (v1) or one ``0::/docker/<id>`` line (v2).
    v1 wins when both are there (a hybrid host counts in v1)."""
    v1: dict[str, str] = {}
    unified: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "" and parts[0] == "0":
            unified = path
        for controller in controllers.split(","):
            if controller:
                v1[controller] = path
    if "cpuacct" in v1 and "memory" in v1:
        cpu_dir = _mounted(root, ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"), v1["cpuacct"])
        memory_dir = _mounted(root, ("memory",), v1["memory"])
        return Cgroup(cpu=cpu_dir, memory=memory_dir, v2=False)
    if unified is not None:
        directory = root / unified.lstrip("/")
        if (root / "unified").is_dir() and not (root / "cgroup.controllers").exists():
            directory = root / "unified" / unified.lstrip("/")
        return Cgroup(cpu=directory, memory=directory, v2=True)
    raise CgroupError("no cpuacct and memory cgroup (v1) nor a unified one (v2) in "
                      f"{text.strip()!r}")


def _mounted(root: Path, names: tuple[str, ...], path: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name / path.lstrip("/")
    return root / names[0] / path.lstrip("/")


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise CgroupError(f"cannot read {path}: {exc}") from None


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (``cpu.stat``, ``memory.stat``) as a dict; others skipped."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            values[key] = int(value.strip())
        except ValueError:
            continue
    return values


def _read_keyed(path: Path) -> dict[str, int]:
    try:
        return parse_flat_keyed(path.read_text())
    except OSError as exc:
        raise CgroupError(f"cannot read {path}: {exc}") from None


def read(cgroup: Cgroup, *, now: float | None = None) -> Reading:
    """The container's counters now. Blocking (files): call it in a worker thread."""
    at = time.monotonic() if now is None else now
    if cgroup.v2:
        cpu_stat = _read_keyed(cgroup.cpu / "cpu.stat")
        if "usage_usec" not in cpu_stat:
            raise CgroupError(f"{cgroup.cpu / 'cpu.stat'} has no usage_usec")
        cpu_ns = cpu_stat["usage_usec"] * 1000
        used = _read_int(cgroup.memory / "memory.current")
        inactive = _read_keyed(cgroup.memory / "memory.stat").get("inactive_file", 0)
    else:
        cpu_ns = _read_int(cgroup.cpu / "cpuacct.usage")
        used = _read_int(cgroup.memory / "memory.usage_in_bytes")
        stat = _read_keyed(cgroup.memory / "memory.stat")
        inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
    return Reading(cpu_ns=cpu_ns, memory_bytes=max(0, used - inactive), at=at)


def millicores(before: Reading, after: Reading) -> int:
    """CPU in use between two readings; 1000 is one core busy the whole time."""
    elapsed = after.at - before.at
    if elapsed <= 0 or after.cpu_ns < before.cpu_ns:
        return 0
    return round((after.cpu_ns - before.cpu_ns) / (elapsed * 1e9) * 1000)


def _moved(old: int, new: int, floor: int) -> bool:
    return abs(new - old) > max(floor, RELATIVE * abs(old))


def significant(written: workloads_pb2.ContainerUsage | None,
                sample: workloads_pb2.ContainerUsage) -> bool:
    """Whether ``sample`` moved enough from ``written`` to be written now."""
    if written is None:
        return True
    if written.HasField("gpu_utilization_percent") != sample.HasField("gpu_utilization_percent"):
        return True
    return (_moved(written.cpu_millicores, sample.cpu_millicores, MIN_MILLICORES)
            or _moved(written.memory_bytes, sample.memory_bytes, MIN_MEMORY)
            or abs(written.gpu_utilization_percent - sample.gpu_utilization_percent)
            >= MIN_GPU_POINTS)


def _same(a: workloads_pb2.ContainerUsage, b: workloads_pb2.ContainerUsage) -> bool:
    first, second = workloads_pb2.ContainerUsage(), workloads_pb2.ContainerUsage()
    first.CopyFrom(a)
    second.CopyFrom(b)
    first.ClearField("sampled_at")
    second.ClearField("sampled_at")
    return first == second


@dataclass
class _Tracked:
    docker_id: str
    cgroup: Cgroup
    last: Reading | None = None


class UsageReporter:
    """Samples the node's running containers and writes what moved (see the module);
    ``Agent`` calls ``sample`` at the node status' cadence."""

    def __init__(
        self,
        *,
        engine: Engine,
        store: Store,
        reconciler: Reconciler,
        gpu_utilization: Callable[[], Mapping[str, int]],
        refresh: float = REFRESH,
        proc: Path = PROC,
        root: Path = CGROUP_ROOT,
    ) -> None:
        self.engine = engine
        self.store = store
        self.reconciler = reconciler
        self.gpu_utilization = gpu_utilization
        self.refresh = refresh
        self.proc = proc
        self.root = root
        self._tracked: dict[str, _Tracked] = {}  # by Container uid
        self._written_at: dict[str, float] = {}
        self._unreadable: set[str] = set()  # Docker ids whose cgroup was logged unreadable
        self._failed_at: dict[str, float] = {}  # and when it was last tried
        self.writes = 0
        self.samples = 0

    def _running(self) -> list[object_pb2.Object]:
        return [obj for obj in self.store
                if obj.container.status.phase == "Running" and obj.container.status.docker_id
                and obj.container.spec.node_name == self.reconciler.node
                and not obj.metadata.HasField("deletion_timestamp")]

    async def sample(self) -> int:
        """One round: read every running container, write those that moved; the
        number written."""
        running = self._running()
        alive = {obj.metadata.uid for obj in running}
        for uid in list(self._tracked):
            if uid not in alive:
                del self._tracked[uid]
        for uid in list(self._written_at):
            if uid not in alive:
                del self._written_at[uid]
        docker_ids = {obj.container.status.docker_id for obj in running}
        for docker_id in list(self._failed_at):
            if docker_id not in docker_ids:
                del self._failed_at[docker_id]
        self._unreadable &= docker_ids
        gpus = self.gpu_utilization()
        written = 0
        for obj in running:
            usage = await self._measure(obj, gpus)
            if usage is None:
                continue
            if await self._maybe_write(obj, usage):
                written += 1
        self.samples += 1
        return written

    async def _measure(self, obj: object_pb2.Object,
                       gpus: Mapping[str, int]) -> workloads_pb2.ContainerUsage | None:
        uid, docker_id = obj.metadata.uid, obj.container.status.docker_id
        tracked = self._tracked.get(uid)
        failed = self._failed_at.get(docker_id)
        if failed is not None and time.monotonic() - failed < RETRY:
            return None  # its cgroup could not be read a moment ago: no inspect every 5 s
        try:
            if tracked is None or tracked.docker_id != docker_id:
                tracked = _Tracked(docker_id=docker_id, cgroup=await self._find(docker_id))
                self._tracked[uid] = tracked
            reading = await asyncio.to_thread(read, tracked.cgroup)
        except (CgroupError, EngineError) as exc:
            self._tracked.pop(uid, None)  # looked for again later (a restarted container)
            self._failed_at[docker_id] = time.monotonic()
            if docker_id not in self._unreadable:
                self._unreadable.add(docker_id)
                log.warning("cannot measure the usage of Docker container %s: %s",
                            docker_id[:12], exc)
            return None
        self._failed_at.pop(docker_id, None)
        before, tracked.last = tracked.last, reading
        if before is None:
            return None  # CPU needs two readings
        usage = workloads_pb2.ContainerUsage(
            cpu_millicores=millicores(before, reading), memory_bytes=reading.memory_bytes)
        known = [gpus[g.uuid] for g in obj.container.spec.gpus if g.uuid in gpus]
        if known:
            usage.gpu_utilization_percent = round(sum(known) / len(known))
        usage.sampled_at.FromDatetime(dt.datetime.now(dt.UTC))
        return usage

    async def _find(self, docker_id: str) -> Cgroup:
        observed = await self.engine.inspect(docker_id)
        if observed is None or not observed.pid:
            raise CgroupError("it is not running")
        return await asyncio.to_thread(cgroup_of, observed.pid, proc=self.proc, root=self.root)

    async def _maybe_write(self, obj: object_pb2.Object,
                           usage: workloads_pb2.ContainerUsage) -> bool:
        uid = obj.metadata.uid
        current = obj.container.status.usage if obj.container.status.HasField("usage") else None
        last = self._written_at.get(uid)
        stale = last is None or time.monotonic() - last >= self.refresh
        if not significant(current, usage) and not (
                stale and current is not None and not _same(current, usage)):
            return False

        def change(status: Status) -> None:
            if status.phase == "Running":
                status.usage.CopyFrom(usage)

        try:
            await self.reconciler.write(obj, change)
        except (Stale, errors.DoraError) as exc:
            log.info("cannot write the usage of %s/%s: %s", obj.metadata.workspace,
                     obj.metadata.name, exc)
            return False
        self._written_at[uid] = time.monotonic()
        self.writes += 1
        return True
