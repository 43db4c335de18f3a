"""From a Container object to a Docker container, and back.

Pure functions and plain data, no Docker client: what name and labels a Docker
container gets, how a ``WorkloadSpec`` becomes ``docker run`` options
(``RunSpec``), and what a Docker container's state means as a Container status.
``docker_driver`` turns a ``RunSpec`` into docker-py calls.

Labels are the agent's memory. Every Docker container it runs carries
``dora.node`` (which agent owns it: several agents may share one engine),
``dora.uid`` (which incarnation of the Container it runs: a Container deleted
and created again under the same name has a new uid), ``dora.zone``,
``dora.workspace`` and ``dora.container`` (the Container's key), and
``dora.workload`` and ``dora.version`` (for people and ``docker ps``). A restarted
agent rebuilds everything it needs from them.

The Docker name is ``dora-<zone>-<workspace>-<name>-<uid[:8]>``: readable in
``docker ps``, and unique per incarnation, so a Container created again under the
same name never waits for the old Docker container's name.

``config.cmd`` is an argv written as shell words (``shlex``, like docker-compose's
``command:``): ``sh -c "echo $i"`` hands ``echo $i`` to the inner shell untouched.
Containers of a version stored before that change carry ``spec.shellCmd`` and run
their cmd as ``/bin/sh -c CMD``, the meaning it had when it was written.

Every container runs as ``docker run -it`` would: a TTY and an open stdin, so an
interactive image (``cmd: /bin/sh``) waits for input instead of exiting at once.
Its environment is ``config.env`` plus what Dora tells it (``dora_environment``).

No container runs without a memory limit: one that names none (``selectors.cpu.memory``,
else ``selectors.gpu.memory``, which the apiserver's ``--default-memory`` may have
filled in) gets ``DEFAULT_MEMORY_FRACTION`` of its node's memory, so a runaway process
is killed by its own cgroup before the kernel's OOM killer picks the agent, dockerd or
the system.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from dora.agent.inventory import read_memory
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, workloads_pb2

LABEL_NODE = "dora.node"
LABEL_UID = "dora.uid"
LABEL_ZONE = "dora.zone"
LABEL_WORKSPACE = "dora.workspace"
LABEL_CONTAINER = "dora.container"
LABEL_WORKLOAD = "dora.workload"
LABEL_VERSION = "dora.version"
# On Docker named volumes: which Dora Volume (with dora.zone and dora.workspace).
LABEL_VOLUME = "dora.volume"

# The memory limit of a container that names none: this share of the node's memory
# (the rest stays with the agent, dockerd and the system).
DEFAULT_MEMORY_FRACTION = 0.75

_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class Unsupported(Exception):
    """The Container asks for something this agent cannot do; the message says what."""


def labels_for(obj: object_pb2.Object, *, node: str) -> dict[str, str]:
    meta, spec = obj.metadata, obj.container.spec
    return {
        LABEL_NODE: node,
        LABEL_UID: meta.uid,
        LABEL_ZONE: meta.zone,
        LABEL_WORKSPACE: meta.workspace,
        LABEL_CONTAINER: meta.name,
        LABEL_WORKLOAD: spec.workload,
        LABEL_VERSION: str(spec.version),
    }


def key_of(labels: dict[str, str]) -> Ref | None:
    """The Container a Docker container's labels point at; None if they are incomplete."""
    zone, workspace, name = (labels.get(k, "") for k in (LABEL_ZONE, LABEL_WORKSPACE,
                                                             LABEL_CONTAINER))
    if not (zone and workspace and name and labels.get(LABEL_UID)):
        return None
    return Ref("Container", zone, workspace, name)


def docker_name(obj: object_pb2.Object) -> str:
    meta = obj.metadata
    parts = (meta.zone, meta.workspace, meta.name, meta.uid.replace("-", "")[:8])
    return "dora-" + "-".join(_NOT_IN_NAME.sub("_", p) for p in parts)


@dataclass(frozen=True)
class RunSpec:
    """What ``docker create`` needs, in Dora's terms; ``docker_driver`` speaks docker-py."""

    name: str
    image: str
    labels: dict[str, str]
    # None: the image's own CMD.
    command: list[str] | None = None
    shm_size: int = 0
    nano_cpus: int = 0
    # Docker's memory limit in bytes (``selectors.*.memory``, else a share of the
    # node's: ``memory_of``); 0: none.
    mem_limit: int = 0
    # GPUs for the NVIDIA runtime, by UUID; empty on simulated GPUs.
    gpu_uuids: tuple[str, ...] = ()
    network_mode: str = "none"
    # "8008/tcp" -> node port.
    ports: dict[str, int] = field(default_factory=dict)
    # Docker named volumes (see ``docker_volume``): name -> (target, read-only).
    volumes: dict[str, tuple[str, bool]] = field(default_factory=dict)
    # NAME -> value, in order: config.env, then Dora's (``dora_environment``).
    environment: dict[str, str] = field(default_factory=dict)
    # As ``docker run -it``: a terminal, and stdin kept open.
    tty: bool = True
    stdin_open: bool = True


@dataclass(frozen=True)
class Mount:
    """A Dora Volume resolved for one Container: what Docker needs to mount it.

    ``kind`` Local: ``path`` is a directory of this machine (bind-mounted);
    NFS: ``path`` is the export path on ``endpoint``.
    """

    workspace: str
    name: str
    kind: str
    path: str
    target: str
    read_only: bool = False
    endpoint: str = ""


@dataclass(frozen=True)
class DockerVolume:
    """A Docker named volume of the ``local`` driver standing for a Dora Volume."""

    name: str
    options: dict[str, str]
    labels: dict[str, str]


# Options of every NFS mount; ``addr`` comes first, the storage's endpoint.
NFS_OPTIONS = "rw,nfsvers=4,hard"


def docker_volume(mount: Mount, *, zone: str) -> DockerVolume:
    """The named volume for ``mount``: the ``local`` driver, as ``docker volume create
    --opt type=... --opt o=... --opt device=...`` would make it.

    Docker volumes cannot change, so the name ends with a digest of the options: a
    Storage that moves gets a new named volume, never a stale one.
    """
    if mount.kind == "Local":
        options = {"type": "none", "o": "bind", "device": mount.path}
    elif mount.kind == "NFS":
        if not mount.endpoint:
            raise Unsupported(f"volume {mount.name}: its NFS storage has no endpoint")
        options = {"type": "nfs", "o": f"addr={mount.endpoint},{NFS_OPTIONS}",
                   "device": f":{mount.path}"}
    else:
        raise Unsupported(f"volume {mount.name}: storage kind {mount.kind!r} is not NFS or "
                          "Local")
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]
    parts = (zone, mount.workspace, mount.name)
    return DockerVolume(
        name="dora-" + "-".join(_NOT_IN_NAME.sub("_", p) for p in parts) + f"-{digest}",
        options=options,
        labels={LABEL_ZONE: zone, LABEL_WORKSPACE: mount.workspace, LABEL_VOLUME: mount.name},
    )


def run_spec(obj: object_pb2.Object, *, node: str, simulated_gpus: bool,
             mounts: Sequence[Mount] = (), node_memory: int | None = None) -> RunSpec:
    """The Docker container a Container bound to ``node`` runs as, with its volumes
    already resolved (``mounts``, one per entry of ``template.volumes``);
    ``node_memory`` (bytes, this machine's when None) bounds a container that names
    no memory limit.

    Raises ``Unsupported`` for what this agent cannot run (yet): the Container is
    then Failed with that reason rather than run without what it asked for.
    """
    spec = obj.container.spec
    template = spec.template
    if not template.image.image:
        raise Unsupported("spec.template.image.image is empty")
    command = command_of(obj.container.spec)
    mode = (template.network.mode or "none").lower()
    if mode not in ("none", "bridge", "host"):
        raise Unsupported(f"network mode {template.network.mode!r} is not none, bridge or host")
    ports: dict[str, int] = {}
    if mode == "bridge":
        ports = {
            f"{p.port}/{(p.protocol or 'tcp').lower()}": p.node_port
            for p in template.network.ports
        }
    return RunSpec(
        name=docker_name(obj),
        image=template.image.image,
        labels=labels_for(obj, node=node),
        command=command,
        shm_size=max(template.config.shm_size, 0),
        nano_cpus=max(spec.cpu_millicores, 0) * 1_000_000,
        mem_limit=memory_of(template,
                            node_memory=read_memory() if node_memory is None else node_memory),
        # By UUID: indexes can change order across reboots; the index only if no UUID.
        gpu_uuids=() if simulated_gpus else tuple(g.uuid or str(g.index) for g in spec.gpus),
        network_mode=mode,
        ports=ports,
        volumes=volume_mounts(obj, mounts, zone=obj.metadata.zone),
        environment={**{e.name: e.value for e in template.config.env},
                     **dora_environment(obj, node=node)},
        tty=interactive(obj),
        stdin_open=interactive(obj),
    )


def memory_of(template: workloads_pb2.WorkloadSpec, *, node_memory: int = 0) -> int:
    """The container's memory limit in bytes: the cpu selector's, else the gpu
    selector's; when neither names one, ``DEFAULT_MEMORY_FRACTION`` of
    ``node_memory`` (0, none, only when the node's memory is unknown)."""
    for name in ("cpu", "gpu"):
        if template.selectors.HasField(name):
            memory = getattr(template.selectors, name).memory
            if memory > 0:
                return int(memory)
    return int(max(node_memory, 0) * DEFAULT_MEMORY_FRACTION)


def interactive(obj: object_pb2.Object) -> bool:
    """A workload's container runs as ``docker run -it`` (a bare shell waits for its
    user); a Task's job is a batch command: no terminal, so its logs are its plain
    stdout and stderr, line for line."""
    return not any(owner.kind == "Task" for owner in obj.metadata.owner_references)


def command_of(spec: workloads_pb2.ContainerSpec) -> list[str] | None:
    """The argv ``config.cmd`` stands for; None (the image's CMD) when it is empty."""
    cmd = spec.template.config.cmd
    if not cmd.strip():
        return None
    if spec.shell_cmd:
        return ["/bin/sh", "-c", cmd]
    try:
        return shlex.split(cmd)
    except ValueError as exc:
        raise Unsupported(f"spec.template.config.cmd: {exc} (it is split into shell words)"
                          ) from None


def replica_index(obj: object_pb2.Object) -> int:
    """The replica slot: ``spec.replicaIndex``, or for a Container created before that
    field existed, its name's suffix (``<workload>.<n>``)."""
    spec = obj.container.spec
    if spec.HasField("replica_index"):
        return spec.replica_index
    suffix = obj.metadata.name.rpartition(".")[2]
    return int(suffix) if suffix.isdigit() else 0


def dora_environment(obj: object_pb2.Object, *, node: str) -> dict[str, str]:
    """What every container is told about itself. Validation keeps these names out of
    ``config.env``, so a user cannot hide the GPUs given or fake the identity."""
    meta, spec = obj.metadata, obj.container.spec
    env = {
        "DORA_WORKLOAD": spec.workload,
        "DORA_CONTAINER": meta.name,
        "DORA_REPLICA_INDEX": str(replica_index(obj)),
        "DORA_REPLICAS": str(max(spec.replicas, 0)),
        "DORA_NODE": node,
        "DORA_ZONE": meta.zone,
        "DORA_WORKSPACE": meta.workspace,
    }
    if spec.template.replica.gang:
        env.update(gang_environment(obj))
    uuids = ",".join(g.uuid or str(g.index) for g in spec.gpus)
    # "void": the NVIDIA runtime exposes no GPU, even if the image says "all".
    env["NVIDIA_VISIBLE_DEVICES"] = uuids or "void"
    env["CUDA_VISIBLE_DEVICES"] = uuids
    return env


def gang_environment(obj: object_pb2.Object) -> dict[str, str]:
    """What a gang's replica (``template.replica.gang``) is told to find the others: its
    rank (the replica slot), the world size and rank 0's ``host:port`` (written by the
    scheduler when it bound the gang), under Dora's names and torchrun's. One container
    per replica, so the node rank is the rank and the local rank 0."""
    spec = obj.container.spec
    rank = str(replica_index(obj))
    world = str(max(spec.replicas, 1))
    host, _, port = spec.gang_master.rpartition(":")
    return {
        "DORA_RANK": rank, "DORA_WORLD_SIZE": world,
        "DORA_MASTER_ADDR": host, "DORA_MASTER_PORT": port,
        "RANK": rank, "WORLD_SIZE": world, "MASTER_ADDR": host, "MASTER_PORT": port,
        "NODE_RANK": rank, "LOCAL_RANK": "0",
    }


def volume_mounts(obj: object_pb2.Object, mounts: Sequence[Mount], *,
                  zone: str) -> dict[str, tuple[str, bool]]:
    """Docker named volume -> (target, read-only) for the Container's ``volumes``.

    Every entry of ``template.volumes`` must have been resolved: a Container never
    runs without a volume it asked for.
    """
    wanted = [(v.workspace or obj.metadata.workspace, v.name)
              for v in obj.container.spec.template.volumes]
    have = {(m.workspace, m.name) for m in mounts}
    missing = [f"{w}/{n}" for w, n in wanted if (w, n) not in have]
    if missing:
        raise Unsupported(f"volumes ({', '.join(missing)}) were not resolved")
    result: dict[str, tuple[str, bool]] = {}
    for mount in mounts:
        target = mount.target or f"/{mount.name}"
        if not target.startswith("/") or ".." in target.split("/"):
            raise Unsupported(f"volume {mount.name}: target {target!r} is not an absolute path")
        result[docker_volume(mount, zone=zone).name] = (target, mount.read_only)
    return result


@dataclass(frozen=True)
class Observed:
    """One Docker container as ``docker inspect`` shows it."""

    id: str
    name: str
    labels: dict[str, str]
    # created, running, paused, restarting, removing, exited or dead.
    state: str
    exit_code: int = 0
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    oom_killed: bool = False
    error: str = ""
    # The container's init process on the host (0 when not running): its cgroup
    # holds the container's CPU and memory counters (``usage``).
    pid: int = 0

    @property
    def uid(self) -> str:
        return self.labels.get(LABEL_UID, "")

    @property
    def key(self) -> Ref | None:
        return key_of(self.labels)


def parse_docker_time(value: str) -> dt.datetime | None:
    """Docker's RFC 3339 times, nanoseconds and all; its zero time is None."""
    if not value or value.startswith("0001-01-01"):
        return None
    match = re.match(r"^(.*?T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", value)
    if match is None:
        return None
    base, fraction, zone = match.groups()
    micros = (fraction or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    return dt.datetime.fromisoformat(f"{base}.{micros}{zone}")


def observed_from_inspect(attrs: dict[str, object]) -> Observed:
    """An ``Observed`` from the ``docker inspect`` JSON of a container."""
    state = attrs.get("State")
    config = attrs.get("Config")
    state = state if isinstance(state, dict) else {}
    config = config if isinstance(config, dict) else {}
    labels = config.get("Labels") or {}
    return Observed(
        id=str(attrs.get("Id", "")),
        name=str(attrs.get("Name", "")).lstrip("/"),
        labels={str(k): str(v) for k, v in labels.items()},
        state=str(state.get("Status", "")),
        exit_code=int(state.get("ExitCode") or 0),
        started_at=parse_docker_time(str(state.get("StartedAt") or "")),
        finished_at=parse_docker_time(str(state.get("FinishedAt") or "")),
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
        pid=int(state.get("Pid") or 0),
    )
