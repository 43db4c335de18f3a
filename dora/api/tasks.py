"""What a Task's job is, in words the apiserver, the task controller and ``doractl`` share.

A Task (seed 003, orchestra's "task of N jobs") runs one job per file of its
configs folder. Attempt ``a`` of job ``i`` is the Container
``<task>.j<i>-<a>``: a workload's containers end in ``.<n>``, so the two never
take each other's names, and a name per attempt makes every create
``create_only``: a controller that runs a step twice (a stale cache, a new
leader) gets ``AlreadyExists`` instead of a second container.

Where a job finds its files. The volumes of ``data``, ``configs`` and
``output`` are mounted at ``/task/<workspace>/<volume>`` (one mount per
volume, however many of the three share it), so

- ``%DATA`` is ``/task/<ws>/<volume>/<data.path>``,
- ``%IN`` is ``/task/<ws>/<volume>/<configs.path>/<config file>``,
- ``%OUT`` is ``/task/<ws>/<volume>/<output.path>/<config file stem>/``: a
  folder per job, named after its config file without its last suffix
  (``config_sort_1_init_2.json`` writes under ``.../config_sort_1_init_2/``),
  made before the command runs. A rerun writes into the same folder, so the
  outputs of a lost attempt are overwritten, never doubled;
- ``%JOB`` is the job's index (0 for the first config file, in name order).

Paths are shell-quoted where they are put, and the result runs as orchestra's
did, through ``sh -c`` (the job's Container says ``spec.shellCmd``: the agent runs
its ``config.cmd`` as ``/bin/sh -c CMD``, not as shell words), so
``. /setup_envs.sh && python3 job.py -c %IN && python3 after.py`` works as written.
"""

from __future__ import annotations

import base64
import posixpath
import re
import shlex
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dora.api import errors, volumes, workloads
from dora.api.client import ApplyResult, Client
from dora.api.v1 import object_pb2, tasks_pb2, volumes_pb2, workloads_pb2
from dora.api.volumefiles import VolumeFiles

DATA, IN, OUT, JOB = "%DATA", "%IN", "%OUT", "%JOB"
REQUIRED_TAGS = (DATA, IN, OUT)
TAG_MEANING = {DATA: "the data file", IN: "the config file of each job",
               OUT: "the output folder of each job"}
MOUNT_ROOT = "/task"
# Jobs one task may have: the packed list of 100,000 names stays far below etcd's limit.
MAX_JOBS = 100_000
# Longest task name: its containers' names add ".j<index>-<attempt>".
MAX_NAME = 230

TASK_LABEL = "dora.io/task"
JOB_LABEL = "dora.io/job"

# States of a task (status.state).
REGISTERED, TESTING, RUNNING = "Registered", "Testing", "Running"
COMPLETED, FAILED, BROKEN, KILLED = "Completed", "Failed", "Broken", "Killed"
STATES = (REGISTERED, TESTING, RUNNING, COMPLETED, FAILED, BROKEN, KILLED)

# States of a job: one letter each in status.jobs.
PENDING, JOB_RUNNING, WAITING = "P", "R", "W"
JOB_COMPLETED, JOB_FAILED, JOB_KILLED = "C", "F", "K"
JOB_STATES = {PENDING: "Pending", JOB_RUNNING: "Running", WAITING: "Waiting",
              JOB_COMPLETED: "Completed", JOB_FAILED: "Failed", JOB_KILLED: "Killed"}

_TAG = re.compile(r"%(DATA|IN|OUT|JOB)\b")
_ATTEMPT = re.compile(r"^\.j(\d+)-(\d+)$")


def missing_tags(command: str) -> list[str]:
    """The mandatory tags ``command`` lacks (seed 003: %DATA, %IN and %OUT)."""
    found = {m.group(0) for m in _TAG.finditer(command)}
    return [tag for tag in REQUIRED_TAGS if tag not in found]


def container_name(task: str, index: int, attempt: int) -> str:
    return f"{task}.j{index}-{attempt}"


def attempt_of(task: str, name: str) -> tuple[int, int] | None:
    """(job index, attempt) of a Container named by ``container_name``; else None."""
    if not name.startswith(task):
        return None
    match = _ATTEMPT.match(name[len(task):])
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def mount_target(workspace: str, volume: str) -> str:
    return f"{MOUNT_ROOT}/{workspace}/{volume}"


def _where(path: tasks_pb2.TaskPath, own_workspace: str) -> str:
    """A TaskPath inside the job's container."""
    root = mount_target(path.workspace or own_workspace, path.volume)
    inside = volumes.clean(path.path)
    return posixpath.join(root, inside) if inside else root


def stem(config_file: str) -> str:
    """The name of a job's output folder: its config file's name without its suffix."""
    base = posixpath.basename(config_file)
    head, dot, _ = base.rpartition(".")
    return head if dot and head else base


def output_dir(task: object_pb2.Object, config_file: str) -> str:
    spec = task.task.spec
    return posixpath.join(_where(spec.output, task.metadata.workspace), stem(config_file)) + "/"


def paths(task: object_pb2.Object, index: int, config_file: str) -> dict[str, str]:
    """What each tag stands for in job ``index`` (its config file ``config_file``)."""
    spec, workspace = task.task.spec, task.metadata.workspace
    return {
        DATA: _where(spec.data, workspace),
        IN: posixpath.join(_where(spec.configs, workspace), config_file),
        OUT: output_dir(task, config_file),
        JOB: str(index),
    }


def substitute(command: str, values: dict[str, str]) -> str:
    """``command`` with every tag replaced by its value, shell-quoted."""
    return _TAG.sub(lambda m: shlex.quote(values[m.group(0)]), command)


def job_command(task: object_pb2.Object, index: int, config_file: str) -> str:
    """The ``sh -c`` script of job ``index``: make its output folder, then run ``exec``."""
    values = paths(task, index, config_file)
    return (f"mkdir -p {shlex.quote(values[OUT])} || exit 1\n"
            + substitute(task.task.spec.exec, values))


def template(task: object_pb2.Object) -> workloads_pb2.WorkloadSpec:
    """The WorkloadSpec every job's Container runs (without its command)."""
    spec, workspace = task.task.spec, task.metadata.workspace
    out = workloads_pb2.WorkloadSpec()
    out.replica.count = 1
    out.driver = "Docker"
    out.selectors.CopyFrom(spec.selectors)
    out.image.CopyFrom(spec.image)
    out.config.affinity = spec.affinity
    out.config.restart_policy = "Never"
    out.config.shm_size = spec.shm_size
    out.priority = spec.priority
    out.network.CopyFrom(spec.network)
    mounted: set[tuple[str, str]] = set()
    for path in (spec.data, spec.configs, spec.output):
        key = (path.workspace or workspace, path.volume)
        if not path.volume or key in mounted:
            continue
        mounted.add(key)
        out.volumes.add(name=path.volume, workspace=key[0],
                        target=mount_target(*key))
    out.volumes.extend(spec.volumes)
    return out


def pack_files(names: Sequence[str]) -> str:
    """The job list as ``status.files`` keeps it: base64 of zlib of the joined names."""
    return base64.b64encode(zlib.compress("\n".join(names).encode(), 9)).decode()


def unpack_files(packed: str) -> list[str]:
    if not packed:
        return []
    text = zlib.decompress(base64.b64decode(packed)).decode()
    return text.split("\n") if text else []


async def list_configs(files: VolumeFiles, task: object_pb2.Object) -> list[str]:
    """The config files of ``task``, in name order: one job each.

    Hidden files (``.name``) and folders are not jobs. ``errors.Invalid`` naming
    ``spec.configs.path`` when the folder is missing, is a file, holds no file or
    more than ``MAX_JOBS``.
    """
    spec, meta = task.task.spec, task.metadata
    inside = volumes.clean(spec.configs.path, field="spec.configs.path")
    target = volumes_pb2.VolumeTarget(zone=meta.zone,
                                      workspace=spec.configs.workspace or meta.workspace,
                                      name=spec.configs.volume)
    listing = await files.list(target, inside)
    where = f"{inside or '/'} in volume {target.workspace}/{target.name}"
    if not listing.exists:
        raise errors.Invalid(f"{where} does not exist", field="spec.configs.path")
    if len(listing.files) == 1 and listing.files[0].path == inside and not listing.files[0].is_dir:
        raise errors.Invalid(f"{where} is a file; name the folder of config files",
                             field="spec.configs.path")
    names = sorted(posixpath.basename(f.path) for f in listing.files
                   if not f.is_dir and not posixpath.basename(f.path).startswith("."))
    if not names:
        raise errors.Invalid(f"{where} holds no config file: a task needs one per job",
                             field="spec.configs.path")
    if len(names) > MAX_JOBS:
        raise errors.Invalid(f"{where} holds {len(names)} files; a task has at most "
                             f"{MAX_JOBS} jobs", field="spec.configs.path")
    return names


# -- kill, retry and the job table: what `doractl task` and dora-web both do ---------------

TaskMutation = Callable[[tasks_pb2.TaskSpec], None]


def kill_spec(spec: tasks_pb2.TaskSpec) -> None:
    """``task kill``: running jobs stop, no job starts; the records stay."""
    spec.killed = True


def retry_spec(spec: tasks_pb2.TaskSpec) -> None:
    """``task retry``: the Failed and Killed jobs run again (a Completed one never)."""
    spec.killed = False
    spec.retry += 1


async def update_spec(client: Client, name: str, mutate: TaskMutation, *, zone: str = "",
                      workspace: str = "") -> tuple[object_pb2.Object, ApplyResult.ValueType]:
    """Get task ``name``, ``mutate`` its spec, apply it back at the version read (again
    on a fresh read while it conflicts)."""

    async def attempt() -> tuple[object_pb2.Object, ApplyResult.ValueType]:
        obj = await client.get("Task", name, zone=zone, workspace=workspace)
        mutate(obj.task.spec)
        obj.task.ClearField("status")
        return await client.apply(obj)

    return await workloads.retry_on_conflict(f"task/{name}", attempt)


@dataclass(frozen=True)
class JobRecord:
    """One row of a task's job table, unpacked from its status."""

    index: int
    file: str
    state: str
    attempts: int
    failures: int
    # The Container of the latest attempt ("" before the first).
    container: str


def job_table(task: object_pb2.Object) -> list[JobRecord]:
    """Every job of ``task`` by index: its config file, state in words, attempts,
    failures since the last retry and its latest attempt's Container."""
    status, name = task.task.status, task.metadata.name
    files = unpack_files(status.files)
    rows = []
    for index, letter in enumerate(status.jobs):
        attempts = status.attempts[index] if index < len(status.attempts) else 0
        failures = status.failures[index] if index < len(status.failures) else 0
        rows.append(JobRecord(
            index=index, file=files[index] if index < len(files) else "",
            state=JOB_STATES.get(letter, letter), attempts=attempts, failures=failures,
            container=container_name(name, index, attempts - 1) if attempts else ""))
    return rows
