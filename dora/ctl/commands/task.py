"""``doractl task create|kill|retry``: seed 003's orchestra commands, for the Task kind.

``task create`` speaks orchestra's words (``-c`` configs, ``-d`` data, ``-o``
output, ``-t`` task, ``--exec``, ``--bypass``) with Dora's ``VOLUME:PATH`` for
where files are, and writes the same Task a YAML file would (``--dry-run``
prints it). Before it writes anything it lists the configs folder, so a missing
or empty folder, or one with more than 100,000 files, is an error and no task is
created; the task controller lists it again when the task starts and that list
is the job list.

``task kill`` sets ``spec.killed`` (running jobs stop, records stay) and
``task retry`` raises ``spec.retry`` and clears ``killed`` (Failed and Killed
jobs run again, Completed ones never): read, change, apply at the version read,
again on a conflict. The apiserver asks for the verbs ``Kill`` and ``Retry``.

``job_lines`` is what ``doractl describe task`` adds: a progress bar, the test
jobs, and the jobs that are not done or not pending, with each one's last
attempt (node, exit code).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Sequence
from typing import Annotated

import typer

from dora.api import codec, errors, kinds, objects, tasks
from dora.api.client import ApplyResult
from dora.api.v1 import object_pb2, tasks_pb2
from dora.ctl import columns, printers, session
from dora.ctl.commands.volumes import split
from dora.ctl.options import command, complete_name, settings_of

app = typer.Typer(help="Tasks of N jobs (seed 003): create, kill, retry.",
                  no_args_is_help=True)
TASK = kinds.get("Task")
# Jobs listed one per line by describe before the rest is summed up.
SHOWN_JOBS = 50
BAR_WIDTH = 30

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The task's name.",
                                        show_default=False, autocompletion=complete_name)]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="task")


def where(word: str, *, param: str) -> tasks_pb2.TaskPath:
    """``files:my_config_files/`` as a TaskPath (``VOLUME:PATH``)."""
    volume, path = split(word, param=param)
    return tasks_pb2.TaskPath(volume=volume, path=path)


def build(*, name: str, image: str, exec_: str, configs: tasks_pb2.TaskPath,
          data: tasks_pb2.TaskPath, output: tasks_pb2.TaskPath, bypass: bool = False,
          test_jobs: int | None = None, parallelism: int | None = None,
          retries: int = 0, gpus: int = 0, cpus: int = 0) -> object_pb2.Object:
    """The Task ``task create`` applies: what the equivalent YAML decodes to."""
    obj = objects.new("Task", name)
    spec = obj.task.spec
    spec.image.image = image
    spec.exec = exec_
    spec.configs.CopyFrom(configs)
    spec.data.CopyFrom(data)
    spec.output.CopyFrom(output)
    if bypass:
        spec.test_jobs = 0
    elif test_jobs is not None:
        spec.test_jobs = test_jobs
    if parallelism is not None:
        spec.parallelism = parallelism
    spec.retries = retries
    if gpus:
        spec.selectors.gpu.count = gpus
    elif cpus:
        spec.selectors.cpu.count = cpus
    return obj


@command(app, "create")
def create(
    ctx: typer.Context,
    configs: Annotated[str, typer.Option(
        "--configs", "-c", metavar="VOLUME:PATH",
        help="The folder of config files: one job per file (%IN).", show_default=False)],
    data: Annotated[str, typer.Option(
        "--data", "-d", metavar="VOLUME:PATH", help="The data file (%DATA).",
        show_default=False)],
    output: Annotated[str, typer.Option(
        "--output", "-o", metavar="VOLUME:PATH",
        help="Where outputs go: <PATH>/<config stem>/ per job (%OUT).", show_default=False)],
    name: Annotated[str, typer.Option("--task", "-t", metavar="NAME",
                                      help="The task's name.", show_default=False)],
    image: Annotated[str, typer.Option("--image", "--containerImage",
                                       help="The image every job runs.",
                                       show_default=False)],
    exec_: Annotated[str, typer.Option(
        "--exec", help='The command, e.g. "python3 /job.py -d %DATA -c %IN -o %OUT".',
        show_default=False)],
    bypass: Annotated[bool, typer.Option(
        "--bypass", help="Skip the test jobs: every job may start at once.")] = False,
    test_jobs: Annotated[int | None, typer.Option(
        "--test-jobs", min=0, help="Jobs run first (default 10).", show_default=False)] = None,
    parallelism: Annotated[int | None, typer.Option(
        "--parallelism", help="Jobs running at once (default: no limit).",
        show_default=False)] = None,
    retries: Annotated[int, typer.Option(
        "--retries", min=0, help="Further attempts of a failed job.")] = 0,
    gpus: Annotated[int, typer.Option("--gpus", min=0, help="GPUs per job.")] = 0,
    cpus: Annotated[int, typer.Option("--cpus", min=0,
                                      help="CPU cores per job (default 1).")] = 0,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the Task as YAML, checked by the server; create nothing.")
    ] = False,
) -> None:
    """Create a task of one job per config file (orchestra_create.py)."""
    if gpus and cpus:
        raise typer.BadParameter("give --gpus or --cpus, not both", param_hint="--gpus")
    obj = build(name=name, image=image, exec_=exec_, bypass=bypass, test_jobs=test_jobs,
                configs=where(configs, param="--configs"), data=where(data, param="--data"),
                output=where(output, param="--output"), parallelism=parallelism,
                retries=retries, gpus=gpus, cpus=cpus)
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> tuple[object_pb2.Object, int]:
        s.fill_scope(obj)
        checked, _ = await s.client.apply(obj, dry_run=True, create_only=True)
        jobs = await tasks.list_configs(s.client.volume_files(), checked)
        if dry_run:
            return checked, len(jobs)
        created, _ = await s.client.apply(obj, create_only=True)
        return created, len(jobs)

    try:
        created, jobs = session.run(connection, work)
    except errors.AlreadyExists:
        raise errors.AlreadyExists(f"task/{name} exists: delete it (`doractl delete task "
                                   f"{name}`) or choose another name") from None
    if dry_run:
        printed = object_pb2.Object()
        printed.CopyFrom(created)
        printed.task.ClearField("status")
        sys.stdout.write(codec.to_yaml([printed]))
        return
    test = min(created.task.spec.test_jobs, jobs)
    typer.echo(f"task/{name} created: {jobs} jobs, {test} of them test jobs")


@command(app, "kill")
def kill(ctx: typer.Context, name: NameArg) -> None:
    """Stop a task: running jobs are stopped, no job starts; the records stay."""

    _change(ctx, name, tasks.kill_spec, done="killed")


@command(app, "retry")
def retry(ctx: typer.Context, name: NameArg) -> None:
    """Run a task's Failed and Killed jobs again (Completed jobs never run twice)."""

    _change(ctx, name, tasks.retry_spec, done="retried")


def _change(ctx: typer.Context, name: str, mutate: Callable[[tasks_pb2.TaskSpec], None], *,
            done: str) -> None:
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> ApplyResult.ValueType:
        zone, workspace = s.scope(TASK)
        _, result = await tasks.update_spec(s.client, name, mutate, zone=zone,
                                            workspace=workspace)
        return result

    result = session.run(connection, work)
    word = "unchanged" if result == ApplyResult.UNCHANGED else done
    typer.echo(f"task/{name} {word}")


# -- describe ---------------------------------------------------------------------------

def progress_bar(status: tasks_pb2.TaskStatus, *, width: int = BAR_WIDTH) -> str:
    """``[#########.....xx....] 9/20 completed, 2 failed, 3 running``."""
    if not status.total:
        return "no jobs yet"
    done = round(width * status.completed / status.total)
    failed = round(width * status.failed / status.total)
    bar = "#" * done + "x" * min(failed, width - done)
    return (f"[{bar:.<{width}}] {status.completed}/{status.total} completed, "
            f"{status.failed} failed, {status.running} running")


def job_lines(task: object_pb2.Object, containers: Sequence[object_pb2.Object],
              *, now: dt.datetime) -> list[str]:
    """The jobs section of ``describe task``."""
    status = task.task.status
    lines = [f"{'Progress:':<20}{progress_bar(status)}"]
    if status.message:
        lines.append(f"{'Why:':<20}{status.message}")
    if not status.total:
        return lines
    files = tasks.unpack_files(status.files)
    last: dict[int, tuple[int, object_pb2.Object]] = {}
    for container in containers:
        parsed = tasks.attempt_of(task.metadata.name, container.metadata.name)
        if parsed is not None and parsed[1] >= last.get(parsed[0], (-1, container))[0]:
            last[parsed[0]] = (parsed[1], container)
    shown = [i for i in range(status.total)
             if i < status.test_jobs or status.jobs[i] not in (tasks.PENDING,
                                                               tasks.JOB_COMPLETED)]
    rows = []
    for index in shown[:SHOWN_JOBS]:
        node = exit_code = ""
        if index in last:
            container = last[index][1]
            node = columns.container_node(container)
            if container.container.status.phase in ("Exited", "Failed"):
                exit_code = str(container.container.status.exit_code)
        rows.append([str(index), files[index] if index < len(files) else "",
                     tasks.JOB_STATES.get(status.jobs[index], status.jobs[index])
                     + (" (test)" if index < status.test_jobs else ""),
                     str(status.attempts[index]) if index < len(status.attempts) else "0",
                     exit_code, node])
    if rows:
        lines.append("Jobs:")
        table = printers.plain_table(["JOB", "CONFIG", "STATE", "ATTEMPTS", "EXIT CODE", "NODE"],
                                     [[c or "-" for c in r] for r in rows])
        lines.extend("  " + line for line in table.rstrip("\n").splitlines())
    if len(shown) > SHOWN_JOBS:
        lines.append(f"  ... and {len(shown) - SHOWN_JOBS} more")
    del now
    return lines
