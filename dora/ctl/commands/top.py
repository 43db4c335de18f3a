"""``doractl top nodes|containers``: what the nodes and containers hold and use.

kubectl top reads metrics-server; Dora has none: its agents measure, and top shows
what they report beside what was reserved, and says which is which:

- use, from each Container's ``status.usage`` (its agent samples the container's
  cgroup every 5 s and writes what moved by more than 5 %, else once a minute):
  CPU in millicores, memory in use, the average NVML utilisation of its GPUs;
- use, from each Node's status: each GPU's utilisation and memory in use (NVML),
  and the Container it is assigned to;
- reservations, from the Containers bound to a node: the CPU millicores, GPUs and
  memory limit they were given.

A node's CPU and memory in use are the sums of its running Containers' usage (Dora's
containers, not the rest of the machine).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import typer

from dora.api import errors, kinds
from dora.ctl import humanize, printers, session
from dora.ctl.options import SelectorOpt, command, settings_of

if TYPE_CHECKING:
    from dora.api.v1 import object_pb2, workloads_pb2

WHAT = {"nodes": "nodes", "node": "nodes", "no": "nodes", "n": "nodes",
        "containers": "containers", "container": "containers", "c": "containers",
        "ct": "containers"}


NoHeadersOpt = Annotated[bool, typer.Option("--no-headers", help="Print tables without headers.")]


def register(app: typer.Typer) -> None:
    command(app, "top")(top)


@dataclass
class Held:
    """What the containers on one node were given."""

    millicores: int = 0
    memory: int = 0
    containers: list[str] = field(default_factory=list)
    # What those of them that report usage use.
    used_millicores: int = 0
    used_memory: int = 0
    reporting: int = 0


def top(
    ctx: typer.Context,
    what: Annotated[str, typer.Argument(
        metavar="nodes|containers", show_default=False,
        help="nodes: each node's CPUs, memory and GPUs, used and reserved; containers: "
             "each running container's CPU, memory and GPUs, used and reserved.")],
    selector: SelectorOpt = "",
    no_headers: NoHeadersOpt = False,
) -> None:
    """CPU, memory and GPU use of nodes or containers, as their agents report it."""
    which = WHAT.get(what.lower())
    if which is None:
        raise typer.BadParameter("use nodes or containers", param_hint="nodes|containers")
    container_kind = kinds.get("Container")

    async def fetch(s: session.Session) -> tuple[list[object_pb2.Object],
                                                  list[object_pb2.Object]]:
        zone = s.connection.zone
        nodes: list[object_pb2.Object] = []
        if which == "nodes":
            nodes, _ = await s.client.list("Node", zone=zone, label_selector=selector)
        else:
            try:
                nodes, _ = await s.client.list("Node", zone=zone)
            except errors.Forbidden:  # a user who may not read nodes sees reservations
                nodes = []
        scope = s.scope(container_kind, everywhere=which == "nodes")
        containers, _ = await s.client.list(
            "Container", zone=zone, workspace=scope[1],
            label_selector=selector if which == "containers" else "")
        return nodes, containers

    nodes, containers = session.run(settings_of(ctx).connection(), fetch)
    if which == "nodes":
        headers, rows = node_rows(nodes, containers)
    else:
        headers, rows = container_rows(nodes, containers)
    if not rows:
        typer.echo(f"No {which} found.", err=True)
        return
    printers.print_table(headers, rows, show_headers=not no_headers)


def _running(container: object_pb2.Object) -> bool:
    return container.container.status.phase in ("Running", "Paused", "Creating", "Pulling") \
        and bool(container.container.spec.node_name)


def _usage(container: object_pb2.Object) -> workloads_pb2.ContainerUsage | None:
    status = container.container.status
    return status.usage if status.phase == "Running" and status.HasField("usage") else None


def _memory_limit(container: object_pb2.Object) -> int:
    selectors = container.container.spec.template.selectors
    return selectors.cpu.memory or selectors.gpu.memory


def node_rows(nodes: list[object_pb2.Object],
              containers: list[object_pb2.Object]) -> tuple[list[str], list[list[str]]]:
    held: dict[str, Held] = defaultdict(Held)
    for c in containers:
        if _running(c):
            on = held[c.container.spec.node_name]
            on.millicores += c.container.spec.cpu_millicores
            on.memory += _memory_limit(c)
            on.containers.append(c.metadata.name)
            usage = _usage(c)
            if usage is not None:
                on.used_millicores += usage.cpu_millicores
                on.used_memory += usage.memory_bytes
                on.reporting += 1
    headers = ["NAME", "STATUS", "CPU(USED)", "CPU(RESERVED)", "CPU%", "MEMORY(USED)",
               "MEMORY(LIMITS)", "GPUS(USED)", "GPU UTIL%", "GPU MEMORY(USED)", "GPU MEMORY%",
               "CONTAINERS"]
    rows = []
    for node in sorted(nodes, key=lambda n: n.metadata.name):
        status = node.node.status
        on = held[node.metadata.name]
        cores = status.cpu.count
        gpus = list(status.gpus)
        used_gpus = sum(1 for g in gpus if g.container)
        gpu_total = sum(g.memory_total_bytes for g in gpus)
        gpu_used = sum(g.memory_used_bytes for g in gpus)
        utilization = [g.utilization_percent for g in gpus if g.HasField("utilization_percent")]
        rows.append([
            node.metadata.name, status.phase or "Unknown",
            f"{on.used_millicores}m" if on.reporting else "-",
            f"{on.millicores}m/{cores}", _percent(on.millicores, cores * 1000),
            humanize.size(on.used_memory) if on.reporting else "-",
            f"{humanize.size(on.memory)}/{humanize.size(status.memory_bytes)}"
            if status.memory_bytes else humanize.size(on.memory),
            f"{used_gpus}/{len(gpus)}",
            f"{round(sum(utilization) / len(utilization))}%" if utilization else "-",
            f"{humanize.size(gpu_used)}/{humanize.size(gpu_total)}" if gpus else "-",
            _percent(gpu_used, gpu_total) if gpus else "-",
            str(len(on.containers)),
        ])
    return headers, rows


def container_rows(nodes: list[object_pb2.Object],
                   containers: list[object_pb2.Object]) -> tuple[list[str], list[list[str]]]:
    # Each GPU's memory in use, by (node, uuid): NVML's figure from the node's status.
    gpu_memory = {(n.metadata.name, g.uuid): (g.memory_used_bytes, g.memory_total_bytes)
                  for n in nodes for g in n.node.status.gpus}
    headers = ["NAME", "NODE", "PHASE", "CPU(USED)", "CPU(RESERVED)", "MEMORY(USED)",
               "MEMORY(LIMIT)", "GPUS", "GPU UTIL%", "GPU MEMORY(USED)"]
    rows = []
    for c in sorted(containers, key=lambda o: o.metadata.name):
        if not _running(c):
            continue
        spec = c.container.spec
        used = total = 0
        known = bool(spec.gpus)
        for gpu in spec.gpus:
            figures = gpu_memory.get((spec.node_name, gpu.uuid))
            if figures is None:
                known = False
                continue
            used += figures[0]
            total += figures[1]
        limit = _memory_limit(c)
        usage = _usage(c)
        rows.append([
            c.metadata.name, spec.node_name, c.container.status.phase,
            f"{usage.cpu_millicores}m" if usage is not None else "-",
            f"{spec.cpu_millicores}m" if spec.cpu_millicores else "-",
            humanize.size(usage.memory_bytes) if usage is not None else "-",
            humanize.size(limit) if limit else "-",
            str(len(spec.gpus)) if spec.gpus else "-",
            f"{usage.gpu_utilization_percent}%"
            if usage is not None and usage.HasField("gpu_utilization_percent") else "-",
            f"{humanize.size(used)}/{humanize.size(total)}" if known else "-",
        ])
    return headers, rows


def _percent(part: int, whole: int) -> str:
    return f"{round(100 * part / whole)}%" if whole else "-"
