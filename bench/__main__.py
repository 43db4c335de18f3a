"""``python -m bench [--quick|--smoke] [--only GROUP]``: run, print, write bench/results.json.

Groups: ``apiserver`` (Apply, Get/List, watch fan-out against raw etcd), ``agent``
(an idle dora-agent's CPU and memory), ``running`` (Apply to Running on the real
Docker engine against ``docker run``), ``scheduler`` (placements per second), ``tasks``
(a Task's create to all its jobs bound, against plain Containers), ``sse`` (an Apply
to 100 open boards through dora-web, against the apiserver's own watches), ``startup``
(doractl's start-up, against the interpreter's and grpc's)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import agent_idle, apiserver, cluster, daemons, scale, scheduler, tasks
from bench import client as client_side
from bench import running as to_running
from bench.figures import Figure
from dora.api.client import Client

RESULTS = Path(__file__).parent / "results.json"


@dataclass(frozen=True)
class Sizes:
    seconds: float
    objects: int
    watchers: int
    writes: int
    # Watch delivery under write load: Applies (100 a second, 20 writers, 50 watchers).
    load_writes: int
    # Apply to Running: Apply runs, doractl runs.
    runs: int
    ctl_runs: int
    # Scheduler: simulated nodes, containers placed per strategy (in-process); the
    # same through the apiserver.
    nodes: int
    containers: int
    e2e_nodes: int
    e2e_containers: int
    # Idle agent: seconds to settle, seconds sampled.
    settle: float
    idle: float
    # A task: simulated nodes, jobs.
    task_nodes: int
    task_jobs: int
    # Growth: stored objects at each step.
    scale: tuple[int, ...]
    # Refused 4 MB/1 MB Applies, 40 a round.
    flood_rounds: int = 5


SIZES = {
    "full": Sizes(seconds=10, objects=10_000, watchers=1_000, writes=30, load_writes=1_000,
                  runs=20, ctl_runs=5,
                  nodes=1_000, containers=10_000, e2e_nodes=1_000, e2e_containers=10_000,
                  settle=5, idle=60, task_nodes=1_000, task_jobs=10_000,
                  scale=(10_000, 50_000, 100_000)),
    "quick": Sizes(seconds=3, objects=1_000, watchers=200, writes=10, load_writes=300,
                   runs=8, ctl_runs=3,
                   nodes=1_000, containers=2_000, e2e_nodes=50, e2e_containers=200,
                   settle=3, idle=10, task_nodes=100, task_jobs=1_000,
                   scale=(1_500, 6_000)),
    # Only proves the harness runs (the test suite uses it); its figures mean nothing.
    "smoke": Sizes(seconds=0.3, objects=20, watchers=5, writes=2, load_writes=40,
                   runs=1, ctl_runs=1,
                   nodes=20, containers=40, e2e_nodes=3, e2e_containers=5,
                   settle=0.5, idle=1, task_nodes=5, task_jobs=20,
                   scale=(30, 60), flood_rounds=1),
}
GROUPS = ("apiserver", "agent", "running", "scheduler", "tasks", "scale", "sse",
          "startup")


async def run(sizes: Sizes, *, only: tuple[str, ...] = GROUPS) -> list[Figure]:
    figures: list[Figure] = []
    async with cluster.running() as running:
        if "apiserver" in only:
            figures.extend(await apiserver.apply_throughput(
                running, workers=16, seconds=sizes.seconds))
            figures.extend(await apiserver.get_and_list(
                running, objects=sizes.objects, seconds=sizes.seconds, workers=16))
            figures.append(await apiserver.watch_fanout(
                running, watchers=sizes.watchers, writes=sizes.writes))
            figures.append(await apiserver.watch_under_load(
                running, writes=sizes.load_writes))
            figures.append(await apiserver.flood_memory(running, rounds=sizes.flood_rounds))
        if {"agent", "running"} & set(only):
            # A zone of its own: the apiserver figures leave thousands of Workloads in
            # the default zone, which controllers there would start working on.
            node = daemons.new_node_name()
            zone = f"zone-{node}"
            async with Client(running.target, token=running.token) as client, \
                    daemons.agent(running, client, node=node, zone=zone) as agent:
                if "agent" in only:
                    figures.extend(await agent_idle.sample(
                        agent, settle=sizes.settle, seconds=sizes.idle))
                if "running" in only:
                    async with daemons.controllers(running, client, zone=zone):
                        figures.extend(await to_running.apply_to_running(
                            running, client, node=node, zone=zone, runs=sizes.runs,
                            ctl_runs=sizes.ctl_runs))
        if "scheduler" in only:
            async with Client(running.target, token=running.token) as client:
                end_to_end = await scheduler.end_to_end(
                    running, client, nodes=sizes.e2e_nodes, containers=sizes.e2e_containers)
        if "tasks" in only:
            async with Client(running.target, token=running.token) as client:
                figures.extend(await tasks.task_to_bound(
                    running, client, nodes=sizes.task_nodes, jobs=sizes.task_jobs))
        if "sse" in only:
            figures.append(await client_side.sse_delivery(
                running, watchers=min(100, sizes.watchers), rounds=sizes.writes))
        if "startup" in only:
            figures.extend(await client_side.startup(running, runs=sizes.runs))
    if "scheduler" in only:
        figures.extend(scheduler.throughput(nodes=sizes.nodes, containers=sizes.containers))
        figures.append(scheduler.queue_cost(nodes=sizes.nodes, containers=sizes.containers))
        figures.append(end_to_end)
    if "scale" in only:
        figures.extend(await scale.growth(sizes.scale))
    return figures


def report(figures: list[Figure]) -> None:
    table = Table(title="Dora benchmarks")
    for column in ("figure", "value", "baseline", "ratio", "target", "met"):
        table.add_column(column)
    for f in figures:
        baseline = f"{f.baseline.get('value')} {f.baseline.get('unit', '')}" if f.baseline else ""
        table.add_row(f.name, f"{f.value} {f.unit}", baseline,
                      "" if f.ratio is None else f"{f.ratio:.2f}", f.target,
                      "yes" if f.met else "NO")
    console = Console()
    console.print(table)
    for f in figures:
        if f.notes:
            console.print(f"[dim]{f.name}: {f.notes}[/dim]")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_const", const="quick", dest="size",
                        help="small sizes, under 2 minutes")
    parser.add_argument("--smoke", action="store_const", const="smoke", dest="size",
                        help="tiny sizes: only checks that everything runs")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--only", action="append", choices=GROUPS,
                        help="run only this group of figures (may be repeated)")
    args = parser.parse_args()
    size = args.size or ("quick" if os.environ.get("DORA_BENCH_QUICK") == "1" else "full")
    figures = asyncio.run(run(SIZES[size], only=tuple(args.only or GROUPS)))
    args.output.write_text(json.dumps([f.as_json() for f in figures], indent=2) + "\n")
    report(figures)


if __name__ == "__main__":
    main()
