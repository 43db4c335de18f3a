"""Apply to Running on the real Docker engine, against a plain ``docker run``.

The whole path runs for real: the apiserver process, a ``dora-controllers`` process
(workload controller and scheduler) and a ``dora-agent`` process on the local
dockerd. One run applies a 1-replica Workload of ``dora/busybox`` (pullPolicy
Never) and times, from the moment the Apply is sent, the first time a watch of the
zone's Containers sees the workload's Container created, bound to the node, and
Running (the agent reports Running once Docker has started it). Then the
workload is deleted and the run waits, untimed, until its Container is gone (the
agent's finalizer goes once the Docker container is removed), so runs never
overlap.

The baseline, interleaved with the Dora runs so both see the same machine load:
``docker run -d`` of the same image and command through the docker CLI (it
returns once the container is started), removed untimed afterwards.

``doractl apply -f`` as a subprocess is timed the same way (process start to the
Container Running): that is the docs/architecture.md target's own wording.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.cluster import Cluster
from bench.daemons import BIN, IMAGE
from bench.figures import Figure, median, percentile
from dora.api import conventions, objects
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2

WORKSPACE = "default"
# The shell is PID 1 and ignores SIGTERM unless it traps it: with the trap a removal
# takes milliseconds, not the agent's stop timeout.
CMD = "trap 'exit 0' TERM; sleep 3600 & wait"
# config.cmd is an argv in shell words: the script goes to sh -c, quoted.
WORKLOAD_CMD = shlex.join(["sh", "-c", CMD])
TARGET = 1.0
TIMEOUT = 30.0


def workload(name: str, *, zone: str) -> object_pb2.Object:
    obj = objects.new("Workload", name, zone=zone, workspace=WORKSPACE)
    spec = obj.workload.spec
    spec.replica.count = 1
    spec.driver = "Docker"
    spec.image.image = IMAGE
    spec.image.pull_policy = "Never"
    spec.config.cmd = WORKLOAD_CMD
    spec.selectors.cpu.count = 1
    spec.selectors.cpu.product_name.append("All")
    return obj


MANIFEST = f"""\
apiVersion: v1
kind: Workload
metadata:
  zone: ZONE
  workspace: {WORKSPACE}
  name: NAME
spec:
  driver: Docker
  selectors:
    cpu:
      product_name: All
      count: 1
  image:
    image: {IMAGE}
    pullPolicy: Never
  config:
    cmd: {json.dumps(WORKLOAD_CMD)}
"""


@dataclass
class Progress:
    """When (``perf_counter``) a workload's Container was first seen at each stage."""

    created: float | None = None
    bound: float | None = None
    running: asyncio.Event = field(default_factory=asyncio.Event)
    running_at: float = 0.0
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class Tracker:
    """One watch of the zone's Containers, telling each run what happened to its own."""

    def __init__(self, client: Client, zone: str) -> None:
        self.client = client
        self.zone = zone
        self.runs: dict[str, Progress] = {}
        self.synced = asyncio.Event()

    def track(self, workload_name: str) -> Progress:
        progress = self.runs[workload_name] = Progress()
        return progress

    async def run(self) -> None:
        stream = self.client.watch("Container", zone=self.zone, bookmarks=True)
        async for event in stream:
            now = time.perf_counter()
            if event.type == WatchEvent.BOOKMARK:
                self.synced.set()
                continue
            obj = event.object
            progress = self.runs.get(obj.metadata.labels.get(conventions.WORKLOAD_LABEL, ""))
            if progress is None:
                continue
            if event.type == WatchEvent.DELETED:
                progress.gone.set()
                continue
            if progress.created is None:
                progress.created = now
            if progress.bound is None and conventions.NODE_LABEL in obj.metadata.labels:
                progress.bound = now
            if obj.container.status.phase == "Running" and not progress.running.is_set():
                progress.running_at = now
                progress.running.set()


@contextlib.asynccontextmanager
async def tracking(client: Client, zone: str) -> AsyncIterator[Tracker]:
    tracker = Tracker(client, zone)
    task = asyncio.create_task(tracker.run())
    try:
        async with asyncio.timeout(TIMEOUT):
            await tracker.synced.wait()
        yield tracker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Timings:
    total: list[float] = field(default_factory=list)
    created: list[float] = field(default_factory=list)
    bound: list[float] = field(default_factory=list)


async def _dora_run(client: Client, tracker: Tracker, name: str, timings: Timings,
                    *, ctl_env: dict[str, str] | None = None, workdir: Path) -> None:
    progress = tracker.track(name)
    zone = tracker.zone
    started = time.perf_counter()
    if ctl_env is None:
        await client.apply(workload(name, zone=zone))
    else:
        manifest = workdir / f"{name}.yaml"
        manifest.write_text(MANIFEST.replace("NAME", name).replace("ZONE", zone))
        process = await asyncio.create_subprocess_exec(
            str(BIN / "doractl"), "apply", "-f", str(manifest), env=ctl_env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"doractl apply failed ({process.returncode}): "
                               f"{output.decode(errors='replace')}")
    async with asyncio.timeout(TIMEOUT):
        await progress.running.wait()
    timings.total.append(progress.running_at - started)
    if progress.created is not None:
        timings.created.append(progress.created - started)
    if progress.bound is not None:
        timings.bound.append(progress.bound - started)
    await client.delete("Workload", name, zone=zone, workspace=WORKSPACE)
    async with asyncio.timeout(TIMEOUT):
        await progress.gone.wait()


async def _docker_run(node: str) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        "docker", "run", "-d", "--label", f"dora.node={node}", "--label", "dora.bench=baseline",
        IMAGE, "sh", "-c", CMD, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"docker run failed: {err.decode(errors='replace')}")
    remove = await asyncio.create_subprocess_exec(
        "docker", "rm", "-f", out.decode().strip(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    await remove.wait()
    return elapsed


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


async def apply_to_running(cluster: Cluster, client: Client, *, node: str, zone: str,
                           runs: int, ctl_runs: int) -> list[Figure]:
    """``runs`` Applies (and ``ctl_runs`` doractl applies) timed to Running, each
    after a plain ``docker run`` of the same image, in ``zone`` (the node's, a zone of
    its own: the apiserver figures leave thousands of Workloads in ``default``)."""
    workdir = Path(tempfile.mkdtemp(prefix="dora-bench-running-"))
    tag = uuid.uuid4().hex[:6]
    dora, ctl = Timings(), Timings()
    docker: list[float] = []
    ctl_env = {**os.environ, "DORA_SERVER": cluster.target, "DORA_TOKEN": cluster.token,
               "DORA_CONFIG": str(workdir / "doractl-config.yaml")}
    ctl_env.pop("DORA_CONTEXT", None)
    try:
        async with tracking(client, zone) as tracker:
            # One untimed run first: the controllers' and agent's first reconcile, warm.
            await _dora_run(client, tracker, f"warm-{tag}", Timings(), workdir=workdir)
            for index in range(runs):
                docker.append(await _docker_run(node))
                await _dora_run(client, tracker, f"run-{tag}-{index}", dora, workdir=workdir)
            for index in range(ctl_runs):
                await _dora_run(client, tracker, f"ctl-{tag}-{index}", ctl, ctl_env=ctl_env,
                                workdir=workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    p50, docker_p50 = median(dora.total), median(docker)
    figures = [Figure(
        name="Apply to Running (real Docker) p50",
        value=_ms(p50), unit="ms",
        baseline={"what": "plain `docker run -d` of the same image, p50", "value": _ms(docker_p50),
                  "unit": "ms"},
        ratio=round(p50 / docker_p50, 2), target="< 1000 ms p50", met=p50 < TARGET,
        notes=f"{runs} runs of a 1-replica Workload (Apply sent -> watch sees the Container "
              f"Running) through real dora-apiserver, dora-controllers and dora-agent "
              f"processes; p99 {_ms(percentile(dora.total, 99))} ms (docker run p99 "
              f"{_ms(percentile(docker, 99))} ms); p50 Container created "
              f"{_ms(median(dora.created))} ms, bound {_ms(median(dora.bound))} ms after "
              f"the Apply",
    )]
    if ctl_runs:
        ctl_p50 = median(ctl.total)
        figures.append(Figure(
            name="doractl apply to Running (real Docker) p50",
            value=_ms(ctl_p50), unit="ms",
            baseline={"what": "plain `docker run -d` of the same image, p50",
                      "value": _ms(docker_p50), "unit": "ms"},
            ratio=round(ctl_p50 / docker_p50, 2), target="< 1000 ms p50",
            met=ctl_p50 < TARGET,
            notes=f"{ctl_runs} runs of `doractl apply -f` as a subprocess (process start -> "
                  f"Container Running); p50 Container created {_ms(median(ctl.created))} ms "
                  f"after the process started (its Python start-up included)",
        ))
    return figures
