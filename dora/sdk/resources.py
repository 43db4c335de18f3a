"""What the SDK hands back, readable without protobuf: ``Resource``, ``Applied``,
``Event``, ``ExecResult``, ``Job`` (one job of a Task); and ``Workload`` and
``Task``, typed builders for the common case.

A ``Resource`` wraps the ``Object`` envelope (``.proto`` is the message itself)
and reads it through ``dora.api.codec``: ``spec`` and ``status`` are the plain
dicts the YAML shows, with the YAML's field names; ``to_dict()``/``to_yaml()``
print what ``doractl get -o yaml`` prints. Enums are names: an apply's result is
``"CREATED"``, a watch event's type ``"MODIFIED"``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dora.api import codec, errors, objects, tasks, volumes
from dora.api.v1 import object_pb2, resources_pb2, tasks_pb2

ApplyResult = resources_pb2.ApplyResponse.Result
WatchEvent = resources_pb2.WatchEvent


class Resource:
    """One Dora object: ``kind``, ``name``, ``zone``, ``workspace``, ``labels``,
    ``spec`` and ``status`` (dicts), ``phase``; ``.proto`` is the message."""

    __slots__ = ("proto",)

    def __init__(self, proto: object_pb2.Object) -> None:
        self.proto = proto

    @property
    def kind(self) -> str:
        return self.proto.kind

    @property
    def name(self) -> str:
        return self.proto.metadata.name

    @property
    def zone(self) -> str:
        return self.proto.metadata.zone

    @property
    def workspace(self) -> str:
        return self.proto.metadata.workspace

    @property
    def uid(self) -> str:
        return self.proto.metadata.uid

    @property
    def resource_version(self) -> int:
        return self.proto.metadata.resource_version

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.proto.metadata.labels)

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.proto.metadata.annotations)

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.to_dict().get("metadata", {}))

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.to_dict().get("spec", {}))

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.to_dict().get("status", {}))

    @property
    def phase(self) -> str:
        """``status.phase`` (Container, Volume, Node); empty for other kinds."""
        return str(self.status.get("phase", ""))

    def condition(self, type_: str) -> dict[str, Any] | None:
        """The ``status.conditions`` entry of ``type_`` (any case), or None."""
        for entry in self.status.get("conditions", []):
            if str(entry.get("type", "")).lower() == type_.lower():
                return dict(entry)
        return None

    def to_dict(self) -> dict[str, Any]:
        return codec.to_dict(self.proto)

    def to_yaml(self) -> str:
        return codec.to_yaml([self.proto])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resource) and self.proto == other.proto

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        scope = "/".join(p for p in (self.zone, self.workspace) if p)
        where = f" in {scope}" if scope else ""
        return f"<{self.kind} {self.name}{where} resourceVersion={self.resource_version}>"


@dataclass(frozen=True)
class Applied:
    """What an apply did: ``result`` is ``CREATED``, ``CONFIGURED`` or ``UNCHANGED``."""

    object: Resource
    result: str

    def __str__(self) -> str:
        return f"{self.object.kind.lower()}/{self.object.name} {self.result.lower()}"


@dataclass(frozen=True)
class Event:
    """A watch event: ``type`` is ``ADDED``, ``MODIFIED``, ``DELETED`` (or ``BOOKMARK``)."""

    type: str
    object: Resource


@dataclass(frozen=True)
class ExecResult:
    """A command's exit code and output (decoded as UTF-8; the bytes are kept too)."""

    exit_code: int
    stdout_bytes: bytes
    stderr_bytes: bytes

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class Synced:
    """What ``sync`` did: the paths in the volume it wrote and deleted, and the
    problems it met (each path concerned is tried again at the next look)."""

    sent: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def applied(obj: object_pb2.Object, result: ApplyResult.ValueType) -> Applied:
    return Applied(Resource(obj), ApplyResult.Name(result))


def event(message: resources_pb2.WatchEvent) -> Event:
    return Event(WatchEvent.Type.Name(message.type), Resource(message.object))


@dataclass(frozen=True)
class Workload:
    """A Workload for the common case, as a Python call instead of YAML::

        Workload("train", image="pytorch/pytorch", gpus=2,
                 gpu_products=["Tesla V100-SXM2-16GB"], cmd=["python", "train.py"],
                 env={"EPOCHS": "3"}, volumes={"data": "/data"})

    ``cmd`` is the container's argv: a list of words, or a line split into shell
    words (like compose's ``command:``; write ``"sh -c '...'"`` for a script);
    ``env`` is ``config.env``. ``volumes`` maps a Volume's name
    to where it is mounted (``"name": "/data:ro"`` mounts it read-only). Without
    ``gpus`` the workload asks for ``cpus`` CPUs (1 by default).
    """

    name: str
    image: str
    cmd: str | Sequence[str] = ""
    gpus: int = 0
    gpu_products: Sequence[str] = ("All",)
    cpus: int = 0
    cpu_products: Sequence[str] = ("All",)
    replicas: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    volumes: Mapping[str, str] = field(default_factory=dict)
    zone: str = ""
    workspace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    restart_policy: str = ""
    shm_size: int = 0
    pull_policy: str = ""

    def command_line(self) -> str:
        return self.cmd if isinstance(self.cmd, str) else shlex.join(self.cmd)

    def to_dict(self) -> dict[str, Any]:
        """The YAML this builder stands for, as a dict."""
        metadata: dict[str, Any] = {"name": self.name}
        if self.zone:
            metadata["zone"] = self.zone
        if self.workspace:
            metadata["workspace"] = self.workspace
        if self.labels:
            metadata["labels"] = dict(self.labels)
        selectors: dict[str, Any] = {}
        if self.gpus:
            selectors["gpu"] = {"product_name": list(self.gpu_products), "count": self.gpus}
        if self.cpus or not self.gpus:
            selectors["cpu"] = {"product_name": list(self.cpu_products),
                                "count": self.cpus or 1}
        image: dict[str, Any] = {"image": self.image}
        if self.pull_policy:
            image["pullPolicy"] = self.pull_policy
        config: dict[str, Any] = {}
        if self.command_line():
            config["cmd"] = self.command_line()
        if self.env:
            config["env"] = [{"name": k, "value": str(v)} for k, v in self.env.items()]
        if self.restart_policy:
            config["restartPolicy"] = self.restart_policy
        if self.shm_size:
            config["shmSize"] = self.shm_size
        spec: dict[str, Any] = {"replica": {"count": self.replicas}, "driver": "Docker",
                                "selectors": selectors, "image": image}
        if config:
            spec["config"] = config
        if self.volumes:
            spec["volumes"] = [_mount(name, where) for name, where in self.volumes.items()]
        return {"apiVersion": codec.API_VERSION, "kind": "Workload", "metadata": metadata,
                "spec": spec}

    def to_object(self) -> object_pb2.Object:
        return codec.from_dict(self.to_dict())

    def to_yaml(self) -> str:
        return codec.to_yaml([self.to_object()])


def _mount(name: str, where: str) -> dict[str, Any]:
    target, _, mode = where.partition(":")
    mount: dict[str, Any] = {"name": name, "target": target}
    if mode == "ro":
        mount["readOnly"] = True
    elif mode not in ("", "rw"):
        raise errors.Invalid(f"unknown mount mode {mode!r} (ro or rw)",
                             field=f"volumes.{name}")
    return mount


@dataclass(frozen=True)
class Task:
    """A Task (seed 003's task of N jobs), as a Python call instead of YAML::

        Task("sweep", image="jodafons/orchestra_tutorial",
             exec="python3 /job_tuning.py -d %DATA -c %IN -o %OUT",
             data="files:my_data_file.pic", configs="files:my_config_files/",
             output="files:tasks/sweep/", parallelism=20, gpus=1)

    ``data``, ``configs`` and ``output`` are ``VOLUME:PATH`` as ``doractl task
    create`` takes them; one job runs per file of ``configs``. ``test_jobs`` run
    first (None: the default, 10; 0 is orchestra's ``--bypass``). Without ``gpus``
    each job asks for ``cpus`` CPUs (1 by default). It writes what
    ``doractl task create`` writes.
    """

    name: str
    image: str
    exec: str
    data: str
    configs: str
    output: str
    parallelism: int | None = None
    test_jobs: int | None = None
    retries: int = 0
    gpus: int = 0
    cpus: int = 0
    volumes: Mapping[str, str] = field(default_factory=dict)
    zone: str = ""
    workspace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    shm_size: int = 0

    def to_object(self) -> object_pb2.Object:
        obj = objects.new("Task", self.name, zone=self.zone, workspace=self.workspace)
        obj.metadata.labels.update(self.labels)
        spec = obj.task.spec
        spec.image.image, spec.exec = self.image, self.exec
        spec.data.CopyFrom(_task_path(self.data, "spec.data"))
        spec.configs.CopyFrom(_task_path(self.configs, "spec.configs"))
        spec.output.CopyFrom(_task_path(self.output, "spec.output"))
        if self.parallelism is not None:
            spec.parallelism = self.parallelism
        if self.test_jobs is not None:
            spec.test_jobs = self.test_jobs
        spec.retries = self.retries
        if self.gpus:
            spec.selectors.gpu.count = self.gpus
        else:
            spec.selectors.cpu.count = self.cpus or 1
        spec.shm_size = self.shm_size
        for name, where in self.volumes.items():
            mount = _mount(name, where)
            spec.volumes.add(name=name, target=mount["target"],
                             read_only=bool(mount.get("readOnly")))
        return obj

    def to_dict(self) -> dict[str, Any]:
        """The YAML this builder stands for, as a dict."""
        return codec.to_dict(self.to_object())

    def to_yaml(self) -> str:
        return codec.to_yaml([self.to_object()])


def _task_path(word: str, name: str) -> tasks_pb2.TaskPath:
    """``files:my_config_files/`` as a TaskPath; the path is confined to the volume."""
    volume, _, path = word.partition(":")
    if not volume:
        raise errors.Invalid(f"{word!r} names no volume: write VOLUME:PATH",
                             field=f"{name}.volume")
    return tasks_pb2.TaskPath(volume=volume, path=volumes.clean(path, field=f"{name}.path"))


@dataclass(frozen=True)
class Job:
    """One job of a Task, as its status records it: the index (``%JOB``), the config
    file (``%IN``, relative to the configs folder), the state (Pending, Running,
    Waiting, Completed, Failed, Killed), the attempts started and whether it is a
    test job. Attempt ``a`` is the Container ``<task>.j<index>-<a>`` (``container``
    names the last one), which keeps its node, exit code and times."""

    index: int
    config: str
    state: str
    attempts: int
    failures: int
    test: bool
    container: str


def jobs_of(task: object_pb2.Object) -> list[Job]:
    """The job records of ``task``, read from its packed status."""
    status = task.task.status
    files = tasks.unpack_files(status.files)
    found = []
    for index in range(status.total):
        letter = status.jobs[index] if index < len(status.jobs) else tasks.PENDING
        attempts = status.attempts[index] if index < len(status.attempts) else 0
        found.append(Job(
            index=index, config=files[index] if index < len(files) else "",
            state=tasks.JOB_STATES.get(letter, letter), attempts=attempts,
            failures=status.failures[index] if index < len(status.failures) else 0,
            test=index < status.test_jobs,
            container=tasks.container_name(task.metadata.name, index, attempts - 1)
            if attempts else ""))
    return found


Manifest = str | Mapping[str, Any] | object_pb2.Object | Resource | Workload | Task


def to_objects(manifest: Manifest) -> list[object_pb2.Object]:
    """The objects ``manifest`` describes: YAML text (one or more documents), a dict,
    an ``Object``, a ``Resource``, a ``Workload`` or a ``Task``."""
    if isinstance(manifest, str):
        return codec.decode_yaml(manifest, source="<yaml>")
    if isinstance(manifest, Workload | Task):
        return [manifest.to_object()]
    if isinstance(manifest, Resource):
        return [_copy(manifest.proto)]
    if isinstance(manifest, object_pb2.Object):
        return [_copy(manifest)]
    return [codec.from_dict(manifest)]


def _copy(obj: object_pb2.Object) -> object_pb2.Object:
    copy = object_pb2.Object()
    copy.CopyFrom(obj)
    objects.body(copy)  # checks the kind
    return copy
