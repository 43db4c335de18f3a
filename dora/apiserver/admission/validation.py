"""Validation per kind: every bad field is reported, by its path, in one error.

Every count and size is bounded by the admin's ``limits.Limits`` (replicas, shm,
memory, a Task's parallelism, retries and testJobs, nodePorts from 1 to 65535;
the floor below which a nodePort needs the verb PrivilegedPort is checked by the
service, which knows the caller). Every string of every object is walked
(``_strings``): NUL and other control characters are refused everywhere, and a
line break or tab is allowed only where text has lines (a cmd or exec script, an
env or annotation value, a message or description).

Constants (``Always``, ``Distribute``, ``bridge``) are matched without regard to
case and stored in their canonical spelling, so ``restartPolicy: always`` is
accepted and reads back as ``Always``.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, MutableSequence

from google.protobuf.message import Message

from dora.api import conventions, errors, kinds, tasks, volumes
from dora.api.errors import FieldViolation
from dora.api.v1 import object_pb2, workloads_pb2
from dora.apiserver.admission.limits import DEFAULT, Limits

MAX_OBJECT_BYTES = 1024 * 1024
MAX_ENV_VALUE_BYTES = conventions.MAX_ENV_VALUE_BYTES
MAX_ENV_TOTAL_BYTES = conventions.MAX_ENV_TOTAL_BYTES
MAX_ENV_NAME_BYTES = 256
_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,251}[A-Za-z0-9])?$")
# A workload's priority, either way (spec.priority); above 0 needs the verb Priority.
MAX_PRIORITY = 100
# Product names are names too (Resourcecredit "Tesla V100-SXM2-16GB").
_PRODUCT_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_. ()@]{0,251}[A-Za-z0-9)])?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

_ENDPOINT = re.compile(r"^([a-z]+://)?(\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+)(:\d+)?/?$")

DRIVERS = ("Docker",)
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
RESTART_POLICIES = ("Never", "Always")
# Empty means Fenced (not defaulted: stored specs keep their versions).
REPLACEMENTS = ("Fenced", "Eager")
AFFINITIES = ("First", "Random", "Distribute", "Fill")
NETWORK_MODES = ("none", "bridge", "host")
PORT_KINDS = ("NodePort",)
PROTOCOLS = ("tcp", "udp")
NODE_CAPABILITIES = ("CPUWorkload", "GPUWorkload")
STORAGE_KINDS = ("NFS", "Local")
EVENT_TYPES = ("Normal", "Warning")


# Control characters; \t, \n and \r are in it but allowed where text has lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# String fields whose text may have lines (and tabs); any other string is one line.
_MULTILINE = frozenset({"cmd", "exec", "description", "message", "files", "jobs"})
# Maps whose values may have lines (their keys are one line).
_MULTILINE_VALUES = frozenset({"annotations"})


class _Report:
    """Collects violations while a validator walks an object."""

    def __init__(self, limits: Limits = DEFAULT) -> None:
        self.violations: list[FieldViolation] = []
        self.limits = limits

    def at_most(self, value: float, limit: float, field: str, flag: str) -> None:
        if value > limit:
            self.add(field, f"{value} is more than the limit {limit} (the admin sets it: "
                     f"dora-apiserver {flag})")

    def add(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def require(self, value: str, field: str) -> None:
        if not value:
            self.add(field, "required")

    def non_negative(self, value: float, field: str) -> None:
        if value < 0:
            self.add(field, "must be >= 0")

    def one_of(self, value: str, allowed: Iterable[str], field: str) -> str:
        """``value`` in its canonical spelling, or ``value`` with a violation recorded."""
        allowed = tuple(allowed)
        for candidate in allowed:
            if value.lower() == candidate.lower():
                return candidate
        self.add(field, f"must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def name(self, value: str, field: str, pattern: re.Pattern[str] = _NAME) -> None:
        if not value:
            self.add(field, "required")
        elif not pattern.match(value):
            self.add(
                field,
                f"{value!r} is not a valid name: letters, digits, '-', '_' and '.', "
                "starting and ending with a letter or digit, at most 253 characters",
            )

    def path(self, value: str, field: str, *, absolute: bool = True) -> None:
        if absolute and not value.startswith("/"):
            self.add(field, f"must be an absolute path, not {value!r}")
        if ".." in value.split("/"):
            self.add(field, "must not contain '..'")


def validate(obj: object_pb2.Object, limits: Limits = DEFAULT) -> None:
    """Raise ``errors.Invalid`` naming every bad field of ``obj``; canonicalise constants."""
    report = _Report(limits)
    kind = kinds.get(obj.kind)
    _metadata(obj, kind, report)
    validator = _BY_KIND.get(obj.kind)
    if validator is not None:
        validator(obj, report)
    strings = _Report(limits)
    _strings(obj, "", strings)
    named = {v.field for v in report.violations}  # a field is refused once
    report.violations.extend(v for v in strings.violations if v.field not in named)
    if report.violations:
        raise errors.Invalid.of(report.violations)
    size = obj.ByteSize()
    if size > MAX_OBJECT_BYTES:
        raise errors.Invalid(
            f"object is {size} bytes; the limit is {MAX_OBJECT_BYTES} bytes", field="metadata"
        )


def _strings(msg: Message, prefix: str, report: _Report) -> None:
    """Refuse control characters in every string field of ``msg``, by its path."""
    for field, value in msg.ListFields():
        if field.containing_oneof is not None and field.containing_oneof.name == "body":
            path = prefix  # an Object's body: its fields are spec.*, as users write them
        else:
            path = f"{prefix}.{field.json_name}" if prefix else field.json_name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                entry = f"{path}.{key}"
                _string(str(key), entry, False, report)
                if value_field.type == value_field.TYPE_STRING:
                    _string(item, entry, field.name in _MULTILINE_VALUES, report)
                elif value_field.message_type is not None:
                    _strings(item, entry, report)
            continue
        items = value if field.is_repeated else [value]
        for index, item in enumerate(items):
            where = f"{path}[{index}]" if field.is_repeated else path
            if field.type == field.TYPE_STRING:
                multiline = field.name in _MULTILINE or (
                    field.name == "value" and msg.DESCRIPTOR.name == "EnvVar")
                _string(item, where, multiline, report)
            elif field.type == field.TYPE_MESSAGE:
                _strings(item, where, report)


def _string(value: str, path: str, multiline: bool, report: _Report) -> None:
    for found in _CONTROL.finditer(value):
        char = found.group(0)
        if multiline and char in "\t\n\r":
            continue
        what = {"\0": "NUL", "\n": "a line break", "\r": "a line break",
                "\t": "a tab"}.get(char, f"the control character {char!r}")
        report.add(path, f"must not contain {what}"
                   + ("" if multiline or char not in "\t\n\r" else " (one line of text)"))
        return


def _metadata(obj: object_pb2.Object, kind: kinds.Kind, report: _Report) -> None:
    meta = obj.metadata
    pattern = _PRODUCT_NAME if kind.name == "Resourcecredit" else _NAME
    report.name(meta.name, "metadata.name", pattern)
    if kind.zoned:
        report.name(meta.zone, "metadata.zone")
    elif meta.zone:
        report.add("metadata.zone", f"a {kind.name} belongs to no zone")
    if kind.workspaced:
        report.name(meta.workspace, "metadata.workspace")
    elif meta.workspace:
        report.add("metadata.workspace", f"a {kind.name} belongs to no workspace")
    for key, value in meta.labels.items():
        if not _LABEL_KEY.match(key):
            report.add(f"metadata.labels.{key}", "not a valid label key")
        if not _LABEL_VALUE.match(value):
            report.add(f"metadata.labels.{key}", f"{value!r} is not a valid label value")
    for index, owner in enumerate(meta.owner_references):
        report.require(owner.kind, f"metadata.ownerReferences[{index}].kind")
        report.require(owner.name, f"metadata.ownerReferences[{index}].name")
        report.require(owner.uid, f"metadata.ownerReferences[{index}].uid")


def workload_spec(spec: workloads_pb2.WorkloadSpec, prefix: str, report: _Report) -> None:
    limits = report.limits
    report.non_negative(spec.replica.count, f"{prefix}.replica.count")
    report.at_most(spec.replica.count, limits.max_replicas, f"{prefix}.replica.count",
                   "--max-replicas")
    spec.driver = report.one_of(spec.driver, DRIVERS, f"{prefix}.driver")
    for name in ("cpu", "gpu"):
        if not spec.selectors.HasField(name):
            continue
        selector = getattr(spec.selectors, name)
        path = f"{prefix}.selectors.{name}"
        report.non_negative(selector.count, f"{path}.count")
        report.non_negative(selector.millicores, f"{path}.millicores")
        report.non_negative(selector.memory, f"{path}.memory")
        most = limits.max_cpus if name == "cpu" else limits.max_gpus
        report.at_most(selector.count, most, f"{path}.count", f"--max-{name}s")
        report.at_most(selector.millicores, limits.max_cpus * 1000, f"{path}.millicores",
                       "--max-cpus")
        report.at_most(selector.memory, limits.max_memory_bytes, f"{path}.memory",
                       "--max-memory")
        _product_names(report, selector.product_name, f"{path}.product_name")
    if spec.selectors.gpu.millicores:
        report.add(f"{prefix}.selectors.gpu.millicores", "GPUs are whole devices")
    if not -MAX_PRIORITY <= spec.priority <= MAX_PRIORITY:
        report.add(f"{prefix}.priority", f"must be from -{MAX_PRIORITY} to {MAX_PRIORITY}")
    report.require(spec.image.image, f"{prefix}.image.image")
    spec.image.pull_policy = report.one_of(
        spec.image.pull_policy, PULL_POLICIES, f"{prefix}.image.pullPolicy"
    )
    config = spec.config
    config.affinity = report.one_of(config.affinity, AFFINITIES, f"{prefix}.config.affinity")
    config.restart_policy = report.one_of(
        config.restart_policy, RESTART_POLICIES, f"{prefix}.config.restartPolicy"
    )
    if config.replacement:
        config.replacement = report.one_of(
            config.replacement, REPLACEMENTS, f"{prefix}.config.replacement")
    report.non_negative(config.shm_size, f"{prefix}.config.shmSize")
    report.at_most(config.shm_size, limits.max_shm_bytes, f"{prefix}.config.shmSize",
                   "--max-shm-size")
    try:
        shlex.split(config.cmd)
    except ValueError as exc:
        report.add(f"{prefix}.config.cmd", f"{exc}: cmd is split into shell words, like "
                   "docker-compose's command (quote a script: sh -c \"...\")")
    _env(config.env, f"{prefix}.config.env", report)
    report.at_most(len(spec.volumes), limits.max_volumes, f"{prefix}.volumes",
                   "--max-volumes")
    report.at_most(len(spec.network.ports), limits.max_ports, f"{prefix}.network.ports",
                   "--max-ports")
    targets: set[str] = set()
    for index, volume in enumerate(spec.volumes):
        path = f"{prefix}.volumes[{index}]"
        report.name(volume.name, f"{path}.name")
        if volume.workspace:
            report.name(volume.workspace, f"{path}.workspace")
        report.path(volume.target, f"{path}.target")
        if volume.target.startswith("/") and not volume.target.strip("/. "):
            report.add(f"{path}.target", "cannot mount over the container's root")
        if volume.target in targets:
            report.add(f"{path}.target", f"{volume.target} is mounted twice")
        targets.add(volume.target)
    network = spec.network
    network.mode = report.one_of(network.mode, NETWORK_MODES, f"{prefix}.network.mode")
    if network.ports and network.mode != "bridge":
        report.add(f"{prefix}.network.ports", "ports need network.mode bridge")
    node_ports: set[tuple[int, str]] = set()
    for index, port in enumerate(network.ports):
        path = f"{prefix}.network.ports[{index}]"
        port.kind = report.one_of(port.kind, PORT_KINDS, f"{path}.kind")
        port.protocol = report.one_of(port.protocol, PROTOCOLS, f"{path}.protocol")
        for value, field in ((port.port, "port"), (port.node_port, "nodePort")):
            if not 1 <= value <= 65535:
                report.add(f"{path}.{field}", "must be between 1 and 65535")
        if (port.node_port, port.protocol) in node_ports:
            report.add(f"{path}.nodePort", f"{port.node_port} is used twice")
        node_ports.add((port.node_port, port.protocol))
    if spec.replica.gang:
        _gang(spec, prefix, report)


def _gang(spec: workloads_pb2.WorkloadSpec, prefix: str, report: _Report) -> None:
    """A gang (``replica.gang``): at least one replica (a Container's template carries no
    count), and a network its replicas reach each other on: host, or bridge whose first
    port (the master port) is published on the same number."""
    if spec.replica.HasField("count") and spec.replica.count < 1:
        report.add(f"{prefix}.replica.count", "a gang (replica.gang) needs a count of at least 1")
    network = spec.network
    if network.mode == "bridge":
        if not network.ports:
            report.add(f"{prefix}.network.ports", "a gang (replica.gang) in bridge mode needs a "
                       "port: the first one is the master port rank 0 listens on")
        elif network.ports[0].port != network.ports[0].node_port:
            report.add(f"{prefix}.network.ports[0].port",
                       "a gang's master port (the first port) must have port equal to "
                       "nodePort: every replica is told the one number")
    elif network.mode != "host":
        report.add(f"{prefix}.network.mode", f"a gang (replica.gang) needs a network its "
                   f"replicas reach each other on: host (verb HostNetwork) or bridge with a "
                   f"port, not {network.mode or 'none'}")


def _env(env: Iterable[workloads_pb2.EnvVar], prefix: str, report: _Report) -> None:
    """Names Docker can pass (not empty, no '=', no NUL) and not Dora's own; values
    without NUL; sizes capped, so a typo of a file path cannot fill etcd."""
    seen: set[str] = set()
    total = 0
    for index, var in enumerate(env):
        path = f"{prefix}[{index}]"
        name = var.name
        if not name:
            report.add(f"{path}.name", "required")
        elif "=" in name or "\0" in name:
            report.add(f"{path}.name", f"{name!r} is not a valid name: no '=' and no NUL")
        elif len(name.encode()) > MAX_ENV_NAME_BYTES:
            report.add(f"{path}.name", f"longer than {MAX_ENV_NAME_BYTES} bytes")
        elif name.startswith(conventions.RESERVED_ENV_PREFIX) or name in conventions.RESERVED_ENV:
            report.add(f"{path}.name", f"{name} is set by Dora in every container "
                       f"({conventions.RESERVED_ENV_PREFIX}*, "
                       f"{', '.join(conventions.RESERVED_ENV)})")
        elif name in seen:
            report.add(f"{path}.name", f"{name} is set twice")
        seen.add(name)
        size = len(var.value.encode())
        total += size + len(name.encode())
        if "\0" in var.value:
            report.add(f"{path}.value", "must not contain NUL")
        if size > MAX_ENV_VALUE_BYTES:
            report.add(f"{path}.value", f"is {size} bytes; the limit is "
                       f"{MAX_ENV_VALUE_BYTES} bytes per value")
    if total > MAX_ENV_TOTAL_BYTES:
        report.add(prefix, f"is {total} bytes in all; the limit is {MAX_ENV_TOTAL_BYTES} bytes")


def _workload(obj: object_pb2.Object, report: _Report) -> None:
    workload_spec(obj.workload.spec, "spec", report)


def _container(obj: object_pb2.Object, report: _Report) -> None:
    spec = obj.container.spec
    report.name(spec.workload, "spec.workload")
    if spec.node_name:
        report.name(spec.node_name, "spec.nodeName")
    report.non_negative(spec.cpu_millicores, "spec.cpuMillicores")
    workload_spec(spec.template, "spec.template", report)


def _workloadversion(obj: object_pb2.Object, report: _Report) -> None:
    spec = obj.workloadversion.spec
    report.name(spec.workload, "spec.workload")
    if spec.version < 1:
        report.add("spec.version", "must be >= 1")
    workload_spec(spec.template, "spec.template", report)


def _task(obj: object_pb2.Object, report: _Report) -> None:
    """A Task: its own fields, then what its jobs' Containers will run, checked as a
    workload's spec is (the same paths, but ``affinity`` and ``shmSize`` sit in
    ``spec`` rather than ``spec.config``)."""
    spec, meta = obj.task.spec, obj.metadata
    if len(meta.name) > tasks.MAX_NAME:
        report.add("metadata.name", f"a Task's name has at most {tasks.MAX_NAME} characters "
                   "(its jobs' names add to it)")
    if not spec.exec.strip():
        report.add("spec.exec", "required: the command of every job, with %DATA, %IN "
                   "and %OUT")
    else:
        for tag in tasks.missing_tags(spec.exec):
            report.add("spec.exec", f"must contain {tag} ({tasks.TAG_MEANING[tag]})")
    for name in ("data", "configs", "output"):
        path = getattr(spec, name)
        report.name(path.volume, f"spec.{name}.volume")
        if path.workspace:
            report.name(path.workspace, f"spec.{name}.workspace")
        try:  # stored as cleaned: `dir/` and `dir` are one folder
            path.path = volumes.clean(path.path, field=f"spec.{name}.path")
        except errors.Invalid as exc:
            report.violations.extend(exc.violations)
    if spec.HasField("parallelism") and spec.parallelism < 1:
        report.add("spec.parallelism", "must be >= 1 (leave it out for no limit)")
    limits = report.limits
    report.at_most(spec.parallelism, limits.max_task_parallelism, "spec.parallelism",
                   "--max-task-parallelism")
    report.non_negative(spec.test_jobs, "spec.testJobs")
    report.at_most(spec.test_jobs, limits.max_task_test_jobs, "spec.testJobs",
                   "--max-task-test-jobs")
    report.non_negative(spec.retries, "spec.retries")
    report.at_most(spec.retries, limits.max_task_retries, "spec.retries",
                   "--max-task-retries")
    report.non_negative(spec.retry, "spec.retry")
    for index, volume in enumerate(spec.volumes):
        if (volume.target + "/").startswith(tasks.MOUNT_ROOT + "/"):
            report.add(f"spec.volumes[{index}].target",
                       f"{tasks.MOUNT_ROOT} is where the task's own volumes are mounted")
    template = tasks.template(obj)
    workload = _Report(limits)
    workload_spec(template, "spec", workload)
    renamed = {"spec.config.affinity": "spec.affinity", "spec.config.shmSize": "spec.shmSize"}
    report.violations.extend(FieldViolation(renamed.get(v.field, v.field), v.description)
                             for v in workload.violations
                             if not v.field.startswith("spec.volumes"))
    spec.affinity = template.config.affinity
    spec.image.pull_policy = template.image.pull_policy
    spec.network.mode = template.network.mode
    for port, checked in zip(spec.network.ports, template.network.ports, strict=True):
        port.kind, port.protocol = checked.kind, checked.protocol
    own = _Report(limits)
    workload_volumes = workloads_pb2.WorkloadSpec(volumes=spec.volumes)
    workload_spec(workload_volumes, "spec", own)
    report.violations.extend(v for v in own.violations if v.field.startswith("spec.volumes"))


def _event(obj: object_pb2.Object, report: _Report) -> None:
    spec = obj.event.spec
    spec.type = report.one_of(spec.type, EVENT_TYPES, "spec.type")
    report.require(spec.reason, "spec.reason")
    report.require(spec.involved_object.kind, "spec.involvedObject.kind")
    report.require(spec.involved_object.name, "spec.involvedObject.name")
    report.non_negative(spec.count, "spec.count")


def _node(obj: object_pb2.Object, report: _Report) -> None:
    spec = obj.node.spec
    for index, capability in enumerate(spec.allow):
        spec.allow[index] = report.one_of(capability, NODE_CAPABILITIES, f"spec.allow[{index}]")
    if spec.endpoint and not _ENDPOINT.match(spec.endpoint):
        report.add("spec.endpoint", f"{spec.endpoint!r} is not host:port or a URL")


def _storage(obj: object_pb2.Object, report: _Report) -> None:
    spec = obj.storage.spec
    spec.kind = report.one_of(spec.kind, STORAGE_KINDS, "spec.kind")
    report.require(spec.mountpath, "spec.mountpath")
    if spec.mountpath:
        report.path(spec.mountpath, "spec.mountpath")
    if spec.kind == "NFS":
        report.require(spec.endpoint, "spec.endpoint")


def _volume(obj: object_pb2.Object, report: _Report) -> None:
    spec = obj.volume.spec
    report.name(spec.storage, "spec.storage")
    if spec.local_path:
        report.path(spec.local_path, "spec.localPath", absolute=False)
        if not posixpath.normpath("/" + spec.local_path).lstrip("/"):
            report.add("spec.localPath", "must name a directory inside the storage")


def _role(obj: object_pb2.Object, report: _Report) -> None:
    for kind, verbs in obj.role.spec.permission.items():
        if not kind:
            report.add("spec.permission", "kind names must not be empty")
        for index, verb in enumerate(verbs.verbs):
            if not verb:
                report.add(f"spec.permission.{kind}[{index}]", "must not be empty")


def _user(obj: object_pb2.Object, report: _Report) -> None:
    for index, binding in enumerate(obj.user.spec.resources):
        report.require(binding.role, f"spec.resources[{index}].role")
    for index, budget in enumerate(obj.user.spec.credits):
        report.require(budget.zone, f"spec.credits[{index}].zone")
        report.non_negative(budget.weekly, f"spec.credits[{index}].weekly")


def _resourcecredit(obj: object_pb2.Object, report: _Report) -> None:
    spec = obj.resourcecredit.spec
    report.require(spec.product_name, "spec.product_name")
    report.non_negative(spec.credit.per.hour, "spec.credit.per.hour")


def _quota(obj: object_pb2.Object, report: _Report) -> None:
    spec = obj.quota.spec
    if spec.workspace and spec.user:
        report.add("spec.user", "a Quota caps a workspace or a user, not both")
    if spec.workspace:
        report.name(spec.workspace, "spec.workspace")
    if spec.user:
        report.name(spec.user, "spec.user")
    for index, entry in enumerate(spec.gpu):
        path = f"spec.gpu[{index}]"
        report.non_negative(entry.count, f"{path}.count")
        if not entry.product_name:
            entry.product_name.append("All")
        _product_names(report, entry.product_name, f"{path}.product_name")
    if spec.cpu.HasField("millicores"):
        report.non_negative(spec.cpu.millicores, "spec.cpu.millicores")
    if spec.HasField("containers"):
        report.non_negative(spec.containers, "spec.containers")
    if not (spec.gpu or spec.cpu.HasField("millicores") or spec.HasField("containers")):
        report.add("spec", "a Quota caps something: gpu, cpu.millicores or containers")


def _lease(obj: object_pb2.Object, report: _Report) -> None:
    spec = obj.lease.spec
    report.require(spec.holder, "spec.holder")
    if spec.lease_id <= 0:
        report.add("spec.leaseId", "required: an id from Leases.Grant")


def _usercredit(obj: object_pb2.Object, report: _Report) -> None:
    report.name(obj.usercredit.spec.user, "spec.user")


_BY_KIND: dict[str, Callable[[object_pb2.Object, _Report], None]] = {
    "Workload": _workload,
    "Container": _container,
    "Workloadversion": _workloadversion,
    "Task": _task,
    "Event": _event,
    "Node": _node,
    "Storage": _storage,
    "Volume": _volume,
    "Role": _role,
    "User": _user,
    "Resourcecredit": _resourcecredit,
    "Quota": _quota,
    "Usercredit": _usercredit,
    "Lease": _lease,
}


def _product_names(report: _Report, names: MutableSequence[str], path: str) -> None:
    """GPU product names: none empty; ``all`` in any case is ``All``, and alone."""
    for index, product in enumerate(names):
        if not product.strip():
            report.add(f"{path}[{index}]", "must not be empty")
        elif product.lower() == "all":
            names[index] = "All"
    if "All" in names and len(names) > 1:
        report.add(path, "All cannot be combined with product names")
