"""The admin's bounds on what one object may ask for, and on how many objects a
workspace and a user may have.

A spec is a request for cluster resources: ``replica.count: 1000000000`` made
thousands of Containers before anything stopped it, ``shmSize: 10**18`` reached
Docker. Every count and size a user writes is bounded here, with defaults a
shared GPU cluster can live with, and each bound is a ``dora-apiserver`` flag
(``FLAGS``: the flag, the field it sets and what it bounds) so the admin can move
it. The README's "Limits" section lists them.

Bounds are checked at admission (``validation``): a spec beyond one is refused
with INVALID_ARGUMENT naming the field, and nothing is written. Object counts are
checked by the service against the watch cache when one is created
(``dora.apiserver.services.resources``), never when one is changed or deleted, so a full
workspace can always scale down.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

GiB = 1024**3


@dataclass(frozen=True)
class Limits:
    # replica.count of one Workload.
    max_replicas: int = 1000
    # config.shmSize (a Task's shmSize) in bytes.
    max_shm_bytes: int = 64 * GiB
    # selectors.cpu.memory / selectors.gpu.memory in bytes.
    max_memory_bytes: int = 1024 * GiB
    # selectors.cpu.count (millicores: a thousand times as many) and selectors.gpu.count.
    max_cpus: int = 1024
    max_gpus: int = 64
    # Entries of volumes and of network.ports.
    max_volumes: int = 64
    max_ports: int = 64
    # The memory limit given to a workload that names none (0: none).
    default_memory_bytes: int = 0
    # nodePorts below this need the verb PrivilegedPort on Workload.
    privileged_port_floor: int = 1024
    # A Task's parallelism, retries and testJobs.
    max_task_parallelism: int = 1000
    max_task_retries: int = 100
    max_task_test_jobs: int = 1000
    # Containers + Workloads + Tasks in one workspace (of one zone).
    max_objects_per_workspace: int = 10_000
    # Workloads of one user: in the workspace named after them and in their default
    # workspace, in every zone (the workspaces their credits pay for).
    max_workloads_per_user: int = 1000


DEFAULT = Limits()

# flag, Limits field, help (the default is appended).
FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--max-replicas", "max_replicas", "replica.count of one Workload at most"),
    ("--max-shm-size", "max_shm_bytes", "config.shmSize (bytes) at most"),
    ("--max-memory", "max_memory_bytes", "selectors.*.memory (bytes) at most"),
    ("--max-cpus", "max_cpus", "selectors.cpu.count at most (millicores: 1000 times)"),
    ("--max-gpus", "max_gpus", "selectors.gpu.count at most"),
    ("--max-volumes", "max_volumes", "volumes of one workload at most"),
    ("--max-ports", "max_ports", "network.ports of one workload at most"),
    ("--default-memory", "default_memory_bytes",
     "memory limit (bytes) of a workload that names none; 0: none"),
    ("--privileged-port-floor", "privileged_port_floor",
     "nodePorts below this need the verb PrivilegedPort on Workload"),
    ("--max-task-parallelism", "max_task_parallelism", "a Task's parallelism at most"),
    ("--max-task-retries", "max_task_retries", "a Task's retries at most"),
    ("--max-task-test-jobs", "max_task_test_jobs", "a Task's testJobs at most"),
    ("--max-objects-per-workspace", "max_objects_per_workspace",
     "Containers + Workloads + Tasks in one workspace at most"),
    ("--max-workloads-per-user", "max_workloads_per_user",
     "Workloads in a user's own and default workspaces, all zones, at most"),
)


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits", "bounds on what users may ask for")
    for flag, name, text in FLAGS:
        default = getattr(DEFAULT, name)
        group.add_argument(flag, dest=f"limit_{name}", type=int, default=default,
                           metavar="N", help=f"{text} (default {default})")


def from_args(args: argparse.Namespace) -> Limits:
    """The limits the flags set; ``ValueError`` naming a flag that is below its floor."""
    values = {name: getattr(args, f"limit_{name}") for _, name, _ in FLAGS}
    for flag, name, _ in FLAGS:
        floor = 0 if name in ("default_memory_bytes", "max_task_retries",
                              "max_task_test_jobs") else 1
        if values[name] < floor:
            raise ValueError(f"{flag} must be at least {floor}")
    limits = Limits(**values)
    if limits.default_memory_bytes > limits.max_memory_bytes:
        raise ValueError("--default-memory must not exceed --max-memory")
    if limits.privileged_port_floor > 65536:
        raise ValueError("--privileged-port-floor must be at most 65536")
    return limits

