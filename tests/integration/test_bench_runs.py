"""The benchmark harness runs and writes figures a script can check (never timings).

The smoke size runs every group: the apiserver against raw etcd, an idle dora-agent
process, Apply to Running through real controllers and agent processes on the local
Docker engine (skipped, with the agent, when no engine or image is there), and the
scheduler's placements, in-process and through the apiserver, a Task's jobs bound
on simulated nodes, the growth figures at two tiny sizes, an Apply to SSE watches
through dora-web and doractl's start-up.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

FIELDS = {"name", "value", "unit", "baseline", "ratio", "target", "met"}
IMAGE = os.environ.get("DORA_BUSYBOX_IMAGE", "dora/busybox:latest")
APISERVER = {"apiserver Apply throughput", "apiserver CPU per Apply", "apiserver Get throughput",
             "apiserver List of every workload", "watch fan-out delivery delay p99",
             "watch delivery under write load p99",
             "apiserver memory after a flood of refused Applies"}
SCHEDULER = {f"scheduler placements ({s})" for s in ("First", "Random", "Distribute", "Fill")} | {
    "scheduler placements end to end (Distribute)",
    "scheduler placements with the queue (Distribute)"}
TASKS = {"task create to all jobs bound", "task controllers CPU per 1,000 jobs",
         "task controllers peak memory"}
SCALE = {f"scale: {what} at 60 objects" for what in (
    "apiserver watch-cache start-up", "apiserver resident memory", "Get p99 (one Container)",
    "List p99 of one workspace (100 Containers)", "List p99 of every Container",
    "List p99 of every Container from the watch cache",
    "controllers start to leading (informers synced)", "controllers resident memory")}
CLIENT = {"Apply to open boards (SSE watches through one dora-web), p99",
          "doractl --help, exec to exit, median",
          "doractl get workloads (a real List), exec to exit, median"}
DOCKER = {"idle agent CPU", "idle agent resident memory", "Apply to Running (real Docker) p50",
          "doractl apply to Running (real Docker) p50"}


def docker_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    found = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True,
                           check=False, timeout=30)
    return found.returncode == 0


def test_bench_smoke_run_writes_valid_results(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    command = [sys.executable, "-m", "bench", "--smoke", "--output", str(output)]
    expected = APISERVER | SCHEDULER | TASKS | SCALE | CLIENT
    if docker_ready():
        expected |= DOCKER
    else:
        command += ["--only", "apiserver", "--only", "scheduler", "--only", "tasks",
                    "--only", "scale", "--only", "sse", "--only", "startup"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(output.read_text())
    assert {f["name"] for f in figures} == expected
    for figure in figures:
        assert figure.keys() >= FIELDS, figure
        assert isinstance(figure["met"], bool)
        assert isinstance(figure["value"], int | float) and math.isfinite(figure["value"]), figure
        assert isinstance(figure["target"], str) and figure["target"], figure
        assert isinstance(figure["baseline"], dict), figure
        assert {"what", "value", "unit"} <= figure["baseline"].keys(), figure
        assert figure["ratio"] is None or isinstance(figure["ratio"], int | float), figure
