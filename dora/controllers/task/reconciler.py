"""The task controller: runs each Task's jobs as Containers, exactly once each.

A reconcile of a Task key:

1. fixes the job list, once: the first reconcile lists the configs folder
   through the apiserver's ``VolumeFiles`` (the controller has no disk) and
   writes it into the status (``status.files``, packed) with ``total`` and one
   ``P`` per job. A missing or empty folder makes the task Broken with the
   reason, and no job starts. Files added to the folder later are not jobs.
2. asks ``plan`` for one step from the status and the task's Containers (the
   attempts, found through their owner reference),
3. writes the status, conditionally on the Task's resourceVersion: this write
   claims the attempts it starts, so on a conflict nothing else happens and the
   reconcile runs again on fresh data,
4. deletes what the step says (attempts on lost nodes, running jobs of a
   killed task) and creates the claimed Containers (``create_only``).

Jobs are Containers, so the credit controller charges them as any container.
While the Usercredit of the user paying for the task's workspace says
``exhausted`` (what stops that user's workloads), no job starts, running ones
are stopped and wait as pending, and ``status.message`` says why.

Why the job records are these and not a list of records in the status. A
status with 10,000 records of index, file, state, attempts, exit code, node
and times is about 1 MiB, etcd's limit is 1.5 MiB, and every job's change
would rewrite all of it. So the status keeps only what must survive anything
(the letter, attempts started and failures per job: two bytes and a letter
each, and the file names zlib-packed: a 10,000-job task's status is some
tens of KiB), and the record of each attempt is its Container, which keeps
its node, exit code, start and end after it ended (``doractl describe task``
and ``doractl logs task/NAME --job N`` read them). Deleting the task deletes
them through their owner references (the garbage collector, ``dora.controllers.gc``,
also those created while it was being deleted); the outputs on the volume stay.

What a reconcile costs. ``plan`` looks at every job, so a reconcile of a 10,000-job
task is some tens of milliseconds; it runs when something it reads changed, not at
every event of the task's Containers: only an attempt that ended, started being
deleted or went wakes the task (``attempt_changed``), not its create, its binding
or its phases while it runs (a task's jobs being placed used to replan every job
twice per job: 16 CPU s per 1,000 jobs in the controllers against 6 for the same
Containers made by a client; 9.3 now, the rest the scheduler's), and events that
come while a reconcile runs are one more reconcile (the work queue). The Containers
are read into attempts again only when their resourceVersion moved, and the status
is written only when the step changed it.

What makes it exactly once is in ``plan``: claims written before creates,
one name per attempt, letters that only move forward. A controller that
restarts (a new leader) starts from etcd's status and the Containers; it
creates again only what was claimed and is not there.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable
from typing import cast

import anyio
from google.protobuf import timestamp_pb2

from dora.api import errors, kinds, objects, tasks
from dora.api.client import Client
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, tasks_pb2
from dora.controllers import payers
from dora.controllers.events import label_value_ok
from dora.controllers.task.plan import ENDED, Attempt, Jobs, Spec, Step, plan
from dora.runtime import reconcile, registry
from dora.runtime.cache import Cache, by_controller_owner
from dora.runtime.clock import Clock
from dora.runtime.handlers import Event, EventType, Watch, own_key, owner_key
from dora.runtime.reconcile import DONE, Result, TerminalError
from dora.runtime.registry import Option, Setup, at_least
from dora.runtime.status import write_status

log = reconcile.logger(__name__)

# Containers created at once by one reconcile (a 10,000-job task with no parallelism
# limit would otherwise wait on one round trip per job).
CREATES_AT_ONCE = 32


class TaskController:
    name = "task"

    def __init__(self, *, client: Client, cache: Cache, clock: Clock, backoff: float = 10.0,
                 max_backoff: float = 300.0) -> None:
        self.client = client
        self.cache = cache
        self.clock = clock
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._files: dict[tuple[str, str], list[str]] = {}
        # Per (task uid, job count): each attempt's Container as ``plan`` reads it, by
        # name, with the resourceVersion it was read at; a reconcile reads again only
        # what changed.
        self._attempts: dict[tuple[str, int], dict[str, tuple[int, Attempt | None]]] = {}

    @staticmethod
    def build(setup: Setup) -> TaskController:
        # Job lists are read through the apiserver's VolumeFiles: the real client.
        return TaskController(client=cast(Client, setup.client), cache=setup.cache,
                              clock=setup.clock, backoff=setup.option("task_backoff"))

    def tasks_paid_by(self, event: Event) -> list[Ref]:
        """When a user's credit runs out or comes back: the tasks it pays for."""
        return payers.keys_paid_by(event, cache=self.cache, kind=kinds.TASK)

    def _held(self, task: object_pb2.Object) -> str:
        """Why no job of ``task`` may run (its user's credit is spent), or ""."""
        credit = payers.spent_credit(self.cache, task)
        if credit is None:
            return ""
        return (f"the credit of user {credit.usercredit.spec.user or credit.metadata.name}"
                f" in zone {task.metadata.zone} is spent: no job runs until there is more")

    async def reconcile(self, *, key: Ref) -> Result:
        task = self.cache.store(kinds.TASK).get(key)
        if task is None or task.metadata.HasField("deletion_timestamp"):
            return DONE
        status = task.task.status
        # A task broken before it had jobs (no configs folder) lists again on `task retry`.
        if not status.files and (status.state != tasks.BROKEN
                                 or task.task.spec.retry > status.observed_retry):
            fixed = await self._fix_jobs(task)
            if fixed is None:
                return DONE
            task = fixed
        status = task.task.status
        if not status.total:
            return DONE
        files = self._files_of(task)
        containers = self.cache.store(kinds.CONTAINER).by_index("owner", task.metadata.uid)
        step = plan(
            spec=_spec_of(task, held=self._held(task)), jobs=_jobs_of(status),
            attempts=self._attempts_of(task, containers),
            now=self.clock.wall().timestamp(), backoff=self.backoff,
            max_backoff=self.max_backoff, file_of=files,
        )
        await self._write_status(task, step)
        for name, why in step.delete:
            log.info("%s: deleting %s: %s", key, name, why)
            with contextlib.suppress(errors.NotFound):
                await self.client.delete(kinds.CONTAINER, name, zone=key.zone,
                                         workspace=key.workspace)
        await self._create(task, step.start, files)
        return Result(requeue_after=step.requeue_after)

    def _attempts_of(self, task: object_pb2.Object,
                     containers: Iterable[object_pb2.Object]) -> dict[int, list[Attempt]]:
        """The task's attempts by job index, from its Containers, reading again only
        those that changed since the last reconcile of the task (a 10,000-job task's
        names are parsed once, not at every step)."""
        uid = (task.metadata.uid, task.task.status.total)
        before = self._attempts.get(uid, {})
        kept: dict[str, tuple[int, Attempt | None]] = {}
        found: dict[int, list[Attempt]] = defaultdict(list)
        for container in containers:
            name, version = container.metadata.name, container.metadata.resource_version
            known = before.get(name)
            if known is None or known[0] != version:
                known = (version, _attempt(task, container))
            kept[name] = known
            if known[1] is not None:
                found[known[1].index].append(known[1])
        if len(self._attempts) > 1000 and uid not in self._attempts:
            self._attempts.clear()  # tasks long gone: start again
        self._attempts[uid] = kept
        return found

    def _files_of(self, task: object_pb2.Object) -> list[str]:
        """The unpacked job list, kept per task uid (it never changes)."""
        cache_key = (task.metadata.uid, task.task.status.files)
        files = self._files.get(cache_key)
        if files is None:
            files = tasks.unpack_files(task.task.status.files)
            self._files = {k: v for k, v in self._files.items() if k[0] != cache_key[0]}
            self._files[cache_key] = files
        return files

    async def _fix_jobs(self, task: object_pb2.Object) -> object_pb2.Object | None:
        """List the configs folder and write the job list; the updated task, or None
        when the task became Broken (or went away)."""
        status = tasks_pb2.TaskStatus()
        status.observed_generation = task.metadata.generation
        status.observed_retry = task.task.spec.retry
        try:
            names = await tasks.list_configs(self.client.volume_files(), task)
        except (errors.Invalid, errors.NotFound) as exc:
            status.state = tasks.BROKEN
            status.message = f"cannot list the config files: {exc.message}"
            log.info("%s: broken: %s", objects.ref_of(task), status.message)
            await self._update(task, status)
            return None
        status.state = tasks.TESTING if task.task.spec.test_jobs else tasks.RUNNING
        status.total = len(names)
        status.test_jobs = min(task.task.spec.test_jobs, len(names))
        status.files = tasks.pack_files(names)
        status.jobs = tasks.PENDING * len(names)
        status.attempts.extend([0] * len(names))
        status.failures.extend([0] * len(names))
        return await self._update(task, status)

    async def _write_status(self, task: object_pb2.Object, step: Step) -> None:
        old = task.task.status
        status = tasks_pb2.TaskStatus()
        status.CopyFrom(old)
        status.state = step.state
        status.message = step.message
        status.jobs = "".join(step.jobs.letters)
        del status.attempts[:]
        status.attempts.extend(step.jobs.attempts)
        del status.failures[:]
        status.failures.extend(step.jobs.failures)
        status.observed_retry = step.jobs.observed_retry
        status.observed_generation = task.metadata.generation
        status.completed = step.counts.get(tasks.JOB_COMPLETED, 0)
        status.failed = step.counts.get(tasks.JOB_FAILED, 0)
        status.running = step.counts.get(tasks.JOB_RUNNING, 0)
        status.killed = step.counts.get(tasks.JOB_KILLED, 0)
        if status != old:
            await self._update(task, status)

    async def _update(self, task: object_pb2.Object,
                      status: tasks_pb2.TaskStatus) -> object_pb2.Object | None:
        """Write ``status`` if the task is still as it was read (else ``Conflict``: the
        step is planned again on the fresh task, never replayed on it)."""

        def put(obj: object_pb2.Object) -> None:
            obj.task.status.CopyFrom(status)

        return await write_status(self.client, task, put, attempts=1)

    async def _create(self, task: object_pb2.Object, start: Iterable[tuple[int, int]],
                      files: list[str]) -> None:
        limit = anyio.Semaphore(CREATES_AT_ONCE)
        failures: list[errors.Invalid] = []

        async def create(index: int, attempt: int) -> None:
            container = new_container(task, index, attempt, files[index])
            async with limit:
                try:
                    await self.client.apply(container, create_only=True)
                except errors.AlreadyExists:
                    return
                except errors.Invalid as exc:
                    failures.append(exc)

        async with anyio.create_task_group() as group:
            for index, attempt in start:
                group.start_soon(create, index, attempt)
        if failures:
            raise TerminalError(f"cannot create the jobs' containers: {failures[0]}")


def new_container(task: object_pb2.Object, index: int, attempt: int,
                  config_file: str) -> object_pb2.Object:
    """Attempt ``attempt`` of job ``index``: the task's template running the job's command."""
    meta = task.metadata
    container = objects.new(kinds.CONTAINER, tasks.container_name(meta.name, index, attempt),
                            zone=meta.zone, workspace=meta.workspace)
    container.metadata.owner_references.add(kind=kinds.TASK, name=meta.name, uid=meta.uid,
                                            controller=True)
    if label_value_ok(meta.name):
        container.metadata.labels[tasks.TASK_LABEL] = meta.name
    container.metadata.labels[tasks.JOB_LABEL] = str(index)
    spec = container.container.spec
    # The scheduler spreads and counts containers by this name (Distribute).
    spec.workload = meta.name
    spec.version = max(1, meta.generation)
    spec.template.CopyFrom(tasks.template(task))
    spec.template.config.cmd = tasks.job_command(task, index, config_file)
    spec.shell_cmd = True  # a job's command is a shell script (orchestra's --exec)
    return container


def _spec_of(task: object_pb2.Object, *, held: str = "") -> Spec:
    spec = task.task.spec
    return Spec(total=task.task.status.total, test_jobs=spec.test_jobs, retries=spec.retries,
                parallelism=spec.parallelism if spec.HasField("parallelism") else None,
                killed=spec.killed, retry=spec.retry, held=held)


def _jobs_of(status: tasks_pb2.TaskStatus) -> Jobs:
    return Jobs(list(status.jobs), list(status.attempts), list(status.failures),
                status.observed_retry)


def _attempt(task: object_pb2.Object, container: object_pb2.Object) -> Attempt | None:
    """The attempt a Container of ``task`` is; None if it is none of its jobs'."""
    parsed = tasks.attempt_of(task.metadata.name, container.metadata.name)
    if parsed is None or parsed[0] >= task.task.status.total:
        return None
    status = container.container.status
    return Attempt(
        index=parsed[0], attempt=parsed[1], name=container.metadata.name,
        phase=status.phase, exit_code=status.exit_code,
        terminating=container.metadata.HasField("deletion_timestamp"),
        finished=_seconds(status.finished_at) if status.HasField("finished_at") else None,
    )


# What ``plan`` reads of an attempt's Container: (the phase if it ended, its exit
# code, whether it is being deleted, when it ended).
Planned = tuple[str, int, bool, float | None]
_LIVE: Planned = ("", 0, False, None)


def _planned(container: object_pb2.Object) -> Planned:
    status = container.container.status
    terminating = container.metadata.HasField("deletion_timestamp")
    if status.phase not in ENDED:
        return ("", 0, terminating, None)
    return (status.phase, status.exit_code, terminating,
            _seconds(status.finished_at) if status.HasField("finished_at") else None)


def attempt_changed(event: Event) -> bool:
    """Whether a Container event can change its task's step: an attempt that ended,
    started being deleted or is gone. Binding it, its phases while it runs, a live
    one appearing (the controller's own create) change nothing ``plan`` reads, so
    they wake no reconcile: a 10,000-job task is planned again when jobs end, not
    twice per job while they are placed."""
    if event.type is EventType.UPDATED:
        assert event.old is not None and event.new is not None
        return _planned(event.old) != _planned(event.new)
    if event.type is EventType.ADDED:
        assert event.new is not None
        return _planned(event.new) != _LIVE
    return True  # deleted, or a resync (a new leader looks at everything)


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


CONTROLLER = registry.REGISTRY.add(registry.ControllerSpec(
    name="task",
    help="runs each Task's jobs as Containers, exactly once each",
    build=TaskController.build,
    watches=[
        Watch(kinds.TASK, own_key),
        Watch(kinds.CONTAINER, owner_key(kinds.TASK), attempt_changed),
        Watch(kinds.USERCREDIT, TaskController.tasks_paid_by),
    ],
    indexes={
        kinds.TASK: {payers.WORKSPACE_INDEX: payers.by_workspace},
        kinds.CONTAINER: {"owner": by_controller_owner},
        kinds.USERCREDIT: {payers.PAID_INDEX: payers.paid_workspaces},
    },
    workers="workers",
    options=[
        Option("task_backoff", 10.0,
               "seconds before a failed task job's first retry; doubled at each further "
               "failure, at most 300", check=at_least(0, "--task-backoff", " seconds")),
    ],
    order=60,
))
