"""The table columns of every kind, for ``doractl get`` (``-o wide`` adds the wide ones).

A column is a header and a function of the object and the time it is printed at
(ages are relative), so tables are pure functions of their input and are tested
as plain strings. Nodes keep the old CLI's columns (seed 004):
``KIND ZONE NAME ENDPOINT CPU GPU LASTSEEN STATUS VERSION``; the summaries read
``56xIntel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz`` and ``2xTesla V100-SXM2-16GB``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dora.api import kinds
from dora.api.v1 import credits_pb2, meta_pb2, object_pb2, workloads_pb2
from dora.ctl import humanize

Cell = Callable[[object_pb2.Object, dt.datetime], str]
NONE = "<none>"


@dataclass(frozen=True)
class Column:
    header: str
    cell: Cell
    wide: bool = False


def columns(kind: str, *, wide: bool = False) -> list[Column]:
    known = kinds.get(kind)
    table = _COLUMNS.get(known.name) or _generic(known)
    return [c for c in table if wide or not c.wide]


def _generic(kind: kinds.Kind) -> tuple[Column, ...]:
    """Columns for a kind this table does not know yet: its name, scope and age."""
    scope = ((NAME,) + ((ZONE,) if kind.zoned else ()) + ((WORKSPACE,) if kind.workspaced
                                                           else ()))
    return (*scope, AGE, LABELS)


def row(obj: object_pb2.Object, cols: Iterable[Column], *, now: dt.datetime) -> list[str]:
    return [c.cell(obj, now) or NONE for c in cols]


# -- cells every kind uses ------------------------------------------------------------

def _name(obj: object_pb2.Object, now: dt.datetime) -> str:
    return obj.metadata.name


def _zone(obj: object_pb2.Object, now: dt.datetime) -> str:
    return obj.metadata.zone


def _workspace(obj: object_pb2.Object, now: dt.datetime) -> str:
    return obj.metadata.workspace


def _age(obj: object_pb2.Object, now: dt.datetime) -> str:
    return humanize.age(humanize.when(obj.metadata, "creation_timestamp"), now=now)


def _labels(obj: object_pb2.Object, now: dt.datetime) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(obj.metadata.labels.items()))


NAME = Column("NAME", _name)
ZONE = Column("ZONE", _zone)
WORKSPACE = Column("WORKSPACE", _workspace)
AGE = Column("AGE", _age)
LABELS = Column("LABELS", _labels, wide=True)


def _field(getter: Callable[[object_pb2.Object], object]) -> Cell:
    def cell(obj: object_pb2.Object, now: dt.datetime) -> str:
        value = getter(obj)
        if isinstance(value, float):
            return f"{value:g}"
        return str(value) if value not in ("", None) else ""

    return cell


def _condition(conditions: Iterable[meta_pb2.Condition], type_: str) -> meta_pb2.Condition | None:
    return next((c for c in conditions if c.type == type_), None)


# -- nodes ----------------------------------------------------------------------------

def cpu_summary(obj: object_pb2.Object, now: dt.datetime | None = None) -> str:
    cpu = obj.node.status.cpu
    if not cpu.count and not cpu.product_name:
        return "-"
    return f"{cpu.count}x{cpu.product_name or 'CPU'}"


def gpu_summary(obj: object_pb2.Object, now: dt.datetime | None = None) -> str:
    status = obj.node.status
    if not status.gpus:
        return "-"
    counts = Counter(g.product_name or "GPU" for g in status.gpus)
    text = ",".join(f"{n}x{product}" for product, n in counts.items())
    return f"{text} (simulated)" if status.simulated_gpus else text


def _node_status(obj: object_pb2.Object, now: dt.datetime) -> str:
    parts = [obj.node.status.phase or "Unknown"]
    if obj.node.spec.scheduling_disabled:
        parts.append("SchedulingDisabled")
    if obj.metadata.HasField("deletion_timestamp"):
        parts.append("Terminating")
    return ",".join(parts)


def _last_seen(obj: object_pb2.Object, now: dt.datetime) -> str:
    return humanize.last_seen(humanize.when(obj.node.status, "last_seen"), now=now)


def _quota_scope(obj: object_pb2.Object) -> str:
    spec = obj.quota.spec
    if spec.workspace:
        return f"workspace {spec.workspace}"
    return f"user {spec.user}" if spec.user else "zone"


def _quota_gpus(obj: object_pb2.Object) -> str:
    """``4``, ``2 A100-SXM4-80GB``, ``4, 2 [A100|V100]``; ``-`` when uncapped."""
    parts = []
    for entry in obj.quota.spec.gpu:
        products = [p for p in entry.product_name if p != "All"]
        which = products[0] if len(products) == 1 else f"[{'|'.join(products)}]"
        parts.append(f"{entry.count} {which}" if products else str(entry.count))
    return ", ".join(parts) or "-"


def _gpus_free(obj: object_pb2.Object, now: dt.datetime) -> str:
    gpus = obj.node.status.gpus
    if not gpus:
        return "-"
    return f"{sum(1 for g in gpus if not g.container)}/{len(gpus)}"


def _memory(obj: object_pb2.Object, now: dt.datetime) -> str:
    memory = obj.node.status.memory_bytes
    return humanize.size(memory) if memory else "-"


_NODE = (
    Column("KIND", lambda obj, now: "node"),
    ZONE,
    NAME,
    Column("ENDPOINT", _field(lambda o: o.node.spec.endpoint)),
    Column("CPU", cpu_summary),
    Column("GPU", gpu_summary),
    Column("LASTSEEN", _last_seen),
    Column("STATUS", _node_status),
    Column("VERSION", _field(lambda o: o.node.status.agent_version)),
    Column("MEMORY", _memory, wide=True),
    Column("GPUS FREE", _gpus_free, wide=True),
    Column("ALLOW", _field(lambda o: ",".join(o.node.spec.allow)), wide=True),
    Column("AGE", _age, wide=True),
)


# -- workloads and containers ---------------------------------------------------------

def desired_replicas(spec: workloads_pb2.WorkloadSpec) -> int:
    """What the spec asks for: 0 when stopped, 1 when the count is unset."""
    if spec.stopped:
        return 0
    return spec.replica.count if spec.replica.HasField("count") else 1


def _replicas(obj: object_pb2.Object, now: dt.datetime) -> str:
    workload = obj.workload
    return f"{workload.status.ready_replicas}/{desired_replicas(workload.spec)}"


def workload_status(obj: object_pb2.Object, now: dt.datetime | None = None) -> str:
    workload = obj.workload
    if obj.metadata.HasField("deletion_timestamp"):
        return "Terminating"
    if workload.spec.stopped:
        return "Stopped"
    desired = desired_replicas(workload.spec)
    if desired == 0:
        return "Idle"
    unserved = _condition(workload.status.conditions, "ZoneUnserved")
    if unserved is not None and unserved.status == "True":
        return "ZoneUnserved"
    if workload.spec.paused:
        return "Paused"
    failing = _condition(workload.status.conditions, "Failed")
    if failing is not None and failing.status == "True":
        return failing.reason or "Failed"
    if workload.status.observed_generation < obj.metadata.generation:
        return "Pending"
    if workload.status.ready_replicas >= desired:
        return "Running"
    return "Progressing"


def resources(spec: workloads_pb2.WorkloadSpec) -> str:
    """``gpu 2x[Quadro RTX 6000|Tesla V100-SXM2-16GB]``, ``cpu 500m``, ``cpu 1xAll``."""
    parts = []
    for name in ("gpu", "cpu"):
        if not spec.selectors.HasField(name):
            continue
        selector = getattr(spec.selectors, name)
        products = list(selector.product_name) or ["All"]
        product = products[0] if len(products) == 1 else "[" + "|".join(products) + "]"
        if name == "cpu" and selector.millicores:
            parts.append(f"cpu {selector.millicores}m")
        else:
            parts.append(f"{name} {selector.count}x{product}")
    return ", ".join(parts)


_WORKLOAD = (
    NAME,
    ZONE,
    WORKSPACE,
    Column("REPLICAS", _replicas),
    Column("IMAGE", _field(lambda o: o.workload.spec.image.image)),
    Column("STATUS", workload_status),
    AGE,
    Column("RESOURCES", lambda o, now: resources(o.workload.spec), wide=True),
    Column("VERSION", _field(lambda o: o.workload.status.current_version or ""), wide=True),
    Column("RESTART", _field(lambda o: o.workload.spec.config.restart_policy), wide=True),
    LABELS,
)


def container_node(obj: object_pb2.Object) -> str:
    return obj.container.spec.node_name or obj.container.status.node_name


def container_phase(obj: object_pb2.Object, now: dt.datetime | None = None) -> str:
    if obj.metadata.HasField("deletion_timestamp"):
        return "Terminating"
    return obj.container.status.phase or "Pending"


def _gpu_indexes(obj: object_pb2.Object, now: dt.datetime) -> str:
    return ",".join(str(g.index) for g in obj.container.spec.gpus)


_CONTAINER = (
    NAME,
    Column("WORKLOAD", _field(lambda o: o.container.spec.workload)),
    Column("NODE", lambda o, now: container_node(o)),
    Column("PHASE", container_phase),
    Column("REASON", _field(lambda o: o.container.status.reason)),
    AGE,
    Column("ZONE", _zone, wide=True),
    Column("WORKSPACE", _workspace, wide=True),
    Column("VERSION", _field(lambda o: o.container.spec.version or ""), wide=True),
    Column("GPUS", _gpu_indexes, wide=True),
    Column("IMAGE", _field(lambda o: o.container.spec.template.image.image), wide=True),
    Column("DOCKER ID", _field(lambda o: o.container.status.docker_id[:12]), wide=True),
)


# -- tasks ----------------------------------------------------------------------------

def task_state(obj: object_pb2.Object, now: dt.datetime | None = None) -> str:
    if obj.metadata.HasField("deletion_timestamp"):
        return "Terminating"
    return obj.task.status.state or "Registered"


def task_done(obj: object_pb2.Object, now: dt.datetime | None = None) -> str:
    status = obj.task.status
    return f"{status.completed}/{status.total}" if status.total else "-"


_TASK = (
    NAME,
    Column("STATE", task_state),
    Column("DONE/TOTAL", task_done),
    Column("FAILED", _field(lambda o: str(o.task.status.failed))),
    Column("RUNNING", _field(lambda o: str(o.task.status.running))),
    AGE,
    Column("ZONE", _zone, wide=True),
    Column("WORKSPACE", _workspace, wide=True),
    Column("IMAGE", _field(lambda o: o.task.spec.image.image), wide=True),
    Column("PARALLELISM", _field(lambda o: o.task.spec.parallelism
                                 if o.task.spec.HasField("parallelism") else "-"), wide=True),
    Column("MESSAGE", _field(lambda o: o.task.status.message), wide=True),
)


# -- the rest -------------------------------------------------------------------------

def _bindings(obj: object_pb2.Object, now: dt.datetime) -> str:
    return ",".join(
        f"{b.role}@{b.kind or 'All'}/{b.zone or 'All'}/{b.workspace or 'All'}"
        for b in obj.user.spec.resources
    )


def _price(obj: object_pb2.Object, now: dt.datetime) -> str:
    spec = obj.resourcecredit.spec
    unit = spec.annotations.get("priceUnit", "")
    return f"{spec.credit.per.hour:g}{unit}/h"


def credit_amount(value: float, unit: str = "") -> str:
    """Credits to the cent, without trailing zeros: ``7.5€``, ``500€``."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{'0' if text in ('-0', '') else text}{unit}"


def _week_start(obj: object_pb2.Object) -> str:
    start = humanize.when(obj.usercredit.status, "week_start")
    return f"{start:%Y-%m-%d %H:%M} UTC" if start is not None else ""


def credit_state(status: credits_pb2.UsercreditStatus) -> str:
    if status.unlimited:
        return "Unlimited"
    return "Exhausted" if status.exhausted else "OK"


def _usercredit_cell(render: Callable[[credits_pb2.UsercreditStatus], str]) -> Cell:
    def cell(obj: object_pb2.Object, now: dt.datetime) -> str:
        return render(obj.usercredit.status)

    return cell


def _holder_ttl(obj: object_pb2.Object, now: dt.datetime) -> str:
    ttl = obj.lease.spec.ttl_seconds
    return f"{ttl}s" if ttl else ""


def event_last_seen(obj: object_pb2.Object) -> dt.datetime | None:
    return (humanize.when(obj.event.spec, "last_timestamp")
            or humanize.when(obj.metadata, "creation_timestamp"))


def event_object(obj: object_pb2.Object) -> str:
    involved = obj.event.spec.involved_object
    return f"{involved.kind.lower()}/{involved.name}" if involved.name else ""


_EVENT = (
    Column("LAST SEEN", lambda o, now: humanize.age(event_last_seen(o), now=now)),
    Column("TYPE", _field(lambda o: o.event.spec.type)),
    Column("REASON", _field(lambda o: o.event.spec.reason)),
    Column("OBJECT", lambda o, now: event_object(o)),
    Column("MESSAGE", _field(lambda o: o.event.spec.message)),
    Column("COUNT", _field(lambda o: o.event.spec.count or ""), wide=True),
    Column("FROM", _field(lambda o: o.event.spec.source), wide=True),
    Column("FIRST SEEN", lambda o, now: humanize.age(
        humanize.when(o.event.spec, "first_timestamp"), now=now), wide=True),
)

_WORKLOADVERSION = (
    NAME,
    Column("WORKLOAD", _field(lambda o: o.workloadversion.spec.workload)),
    Column("VERSION", _field(lambda o: o.workloadversion.spec.version)),
    Column("IMAGE", _field(lambda o: o.workloadversion.spec.template.image.image)),
    AGE,
    Column("ZONE", _zone, wide=True),
    Column("WORKSPACE", _workspace, wide=True),
    Column("RESOURCES", lambda o, now: resources(o.workloadversion.spec.template), wide=True),
    Column("CMD", _field(lambda o: o.workloadversion.spec.template.config.cmd), wide=True),
)


_COLUMNS: dict[str, tuple[Column, ...]] = {
    "Zone": (NAME, Column("ENDPOINT", _field(lambda o: o.zone.spec.endpoint)), AGE, LABELS),
    "Workspace": (
        NAME, Column("DESCRIPTION", _field(lambda o: o.workspace.spec.description)), AGE, LABELS,
    ),
    "User": (
        NAME,
        Column("DEFAULT ZONE", _field(lambda o: o.user.spec.defaults.zone)),
        Column("DEFAULT WORKSPACE", _field(lambda o: o.user.spec.defaults.workspace)),
        Column("BINDINGS", _field(lambda o: len(o.user.spec.resources))),
        AGE,
        Column("ROLES", _bindings, wide=True),
    ),
    "Role": (
        NAME,
        Column("KINDS", _field(lambda o: ",".join(sorted(o.role.spec.permission)))),
        AGE,
    ),
    "Storage": (
        ZONE,
        NAME,
        Column("KIND", _field(lambda o: o.storage.spec.kind)),
        Column("ENDPOINT", _field(lambda o: o.storage.spec.endpoint)),
        Column("MOUNTPATH", _field(lambda o: o.storage.spec.mountpath)),
        AGE,
    ),
    "Node": _NODE,
    "Resourcecredit": (
        ZONE,
        NAME,
        Column("PRODUCT", _field(lambda o: o.resourcecredit.spec.product_name)),
        Column("PRICE", _price),
        AGE,
    ),
    "Quota": (
        ZONE,
        NAME,
        Column("SCOPE", _field(_quota_scope)),
        Column("GPU", _field(_quota_gpus)),
        Column("CPU", _field(lambda o: f"{o.quota.spec.cpu.millicores}m"
                             if o.quota.spec.cpu.HasField("millicores") else "-")),
        Column("CONTAINERS", _field(lambda o: str(o.quota.spec.containers)
                                    if o.quota.spec.HasField("containers") else "-")),
        AGE,
    ),
    "Usercredit": (
        ZONE,
        NAME,
        Column("WEEKLY", _usercredit_cell(
            lambda s: "-" if s.unlimited else credit_amount(s.weekly, s.price_unit))),
        Column("USED", _usercredit_cell(lambda s: credit_amount(s.used, s.price_unit))),
        Column("REMAINING", _usercredit_cell(
            lambda s: "-" if s.unlimited else credit_amount(s.remaining, s.price_unit))),
        Column("PER HOUR", _usercredit_cell(
            lambda s: f"{credit_amount(s.running_per_hour, s.price_unit)}/h")),
        Column("STATE", _usercredit_cell(credit_state)),
        AGE,
        Column("USER", _field(lambda o: o.usercredit.spec.user), wide=True),
        Column("WEEK START", lambda o, now: _week_start(o), wide=True),
    ),
    "Workload": _WORKLOAD,
    "Container": _CONTAINER,
    "Volume": (
        NAME,
        ZONE,
        WORKSPACE,
        Column("STORAGE", _field(lambda o: o.volume.spec.storage)),
        Column("PHASE", _field(lambda o: o.volume.status.phase or "Pending")),
        AGE,
        Column("PATH", _field(lambda o: o.volume.status.path or o.volume.spec.local_path),
               wide=True),
        Column("USED BY", _field(lambda o: ",".join(o.volume.status.used_by)), wide=True),
    ),
    "Event": _EVENT,
    "Workloadversion": _WORKLOADVERSION,
    "Task": _TASK,
    "Lease": (
        ZONE,
        NAME,
        Column("HOLDER", _field(lambda o: o.lease.spec.holder)),
        Column("TTL", _holder_ttl),
        AGE,
    ),
}
