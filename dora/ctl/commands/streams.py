"""``doractl logs``, ``exec`` and ``shell``: a Container's output, and commands run in it.

Both go through the apiserver (``Client.logs``, ``Client.exec``), which checks
the verbs ``Log`` and ``Shell`` on the Container and finds its node itself.

``logs workload/NAME`` follows every Container of the workload at once (those
it has when the command starts), each line prefixed with ``[container]``.
``logs task/NAME --job N`` prints the last attempt of the task's job N.

``exec`` exits with the remote command's exit code, which the stream carries
as its last message; a stream that breaks before it is an error (exit 1 and a
message), never a success. With ``-it`` the local terminal goes into raw mode,
keys go to the remote terminal as typed, and a window resize (SIGWINCH) is sent
on. When stdin is not a terminal, ``-t`` is dropped with a note and stdin is
piped as it is (kubectl does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from dora.api import conventions, errors, kinds, tasks
from dora.api.client import Client
from dora.ctl import printers, profiles, session, terminal
from dora.ctl.options import command, complete_name, kind_of, settings_of

DEFAULT_SHELL = "/bin/sh"
T = TypeVar("T")

ContainerArg = Annotated[str, typer.Argument(
    metavar="CONTAINER", help="The container's name (or container/NAME).",
    show_default=False, autocompletion=complete_name,
)]
StdinOpt = Annotated[bool, typer.Option(
    "--stdin", "-i", help="Pass stdin to the command.")]
TtyOpt = Annotated[bool, typer.Option(
    "--tty", "-t", help="Allocate a terminal; with -i, an interactive session.")]


def register(app: typer.Typer) -> None:
    command(app, "logs")(logs)
    command(app, "exec")(exec_command)
    command(app, "shell")(shell)


def _container(word: str) -> str:
    kind_word, slash, name = word.partition("/")
    if not slash:
        return word
    if kind_of(kind_word).name != "Container" or not name:
        raise typer.BadParameter(f"{word!r} is not a container name or container/NAME",
                                 param_hint="CONTAINER")
    return name


def _scope(s: session.Session) -> tuple[str, str]:
    return s.scope(kinds.get("Container"))


class _Stdout:
    """Output bytes as they come; for a workload, whole lines with their container's name."""

    def __init__(self) -> None:
        self._partial: dict[str, bytes] = {}

    def raw(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def lines(self, name: str, data: bytes) -> None:
        text = self._partial.pop(name, b"") + data
        *complete, rest = text.split(b"\n")
        if complete:
            prefix = f"[{name}] ".encode()
            self.raw(b"".join(prefix + line + b"\n" for line in complete))
        if rest:
            self._partial[name] = rest

    def flush(self, name: str) -> None:
        rest = self._partial.pop(name, b"")
        if rest:
            self.raw(f"[{name}] ".encode() + rest + b"\n")


def logs(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(
        metavar="CONTAINER|workload/NAME|task/NAME",
        help="A container, a workload (every container of it, lines prefixed), or a task "
             "(with --job).",
        show_default=False, autocompletion=complete_name)],
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing lines as the container prints them.")] = False,
    tail: Annotated[int, typer.Option(
        "--tail", metavar="N", help="Only the last N lines of each container (-1: all).",
    )] = -1,
    timestamps: Annotated[bool, typer.Option(
        "--timestamps", help="Prefix each line with its time (RFC 3339).")] = False,
    job: Annotated[int | None, typer.Option(
        "--job", min=0, metavar="N", help="With task/NAME: the job's index.",
        show_default=False)] = None,
) -> None:
    """Print a container's logs (`logs -f web.0`), a workload's (`logs workload/web`), or a
    task's job's (`logs task/sweep --job 17`: its last attempt)."""
    kind_word, slash, name = target.partition("/")
    workload = slash and kind_of(kind_word).name == "Workload"
    task = slash and kind_of(kind_word).name == "Task"
    if (workload or task) and not name:
        raise typer.BadParameter(f"{kind_word}/NAME needs a name", param_hint="CONTAINER")
    if task and job is None:
        raise typer.BadParameter("task/NAME needs --job N (the job's index)",
                                 param_hint="--job")
    if job is not None and not task:
        raise typer.BadParameter("--job goes with task/NAME", param_hint="--job")
    container = "" if workload or task else _container(target)
    connection = settings_of(ctx).connection()
    out = _Stdout()
    tail_lines = tail if tail >= 0 else None

    async def one(s: session.Session, name: str, *, prefixed: bool,
                  where: tuple[str, str] | None = None) -> None:
        zone, workspace = where or _scope(s)
        async for data in s.client.logs(name, zone=zone, workspace=workspace, follow=follow,
                                        tail_lines=tail_lines, timestamps=timestamps):
            if prefixed:
                out.lines(name, data)
            else:
                out.raw(data)
        if prefixed:
            out.flush(name)

    async def of_workload(s: session.Session) -> bool:
        # The workload's own zone and workspace (the server's defaults when the
        # connection names none), so its containers are looked for where it is.
        found = (await s.get(kinds.get("Workload"), name)).metadata
        where = (found.zone, found.workspace)
        items, _ = await s.client.list(
            "Container", zone=found.zone, workspace=found.workspace,
            label_selector=f"{conventions.WORKLOAD_LABEL}={name}",
        )
        names = sorted(o.metadata.name for o in items)
        if not names:
            raise errors.NotFound(f"workload {name!r} has no containers")
        results = await asyncio.gather(
            *(one(s, n, prefixed=True, where=where) for n in names), return_exceptions=True,
        )
        ok = True
        for container_name, result in zip(names, results, strict=True):
            if isinstance(result, errors.DoraError):
                ok = False
                typer.echo(printers.error_text(result, about=container_name), err=True)
            elif isinstance(result, BaseException):
                raise result
        return ok

    async def of_job(s: session.Session) -> bool:
        found = (await s.get(kinds.get("Task"), name)).metadata
        items, _ = await s.client.list(
            "Container", zone=found.zone, workspace=found.workspace,
            label_selector=f"{tasks.TASK_LABEL}={name},{tasks.JOB_LABEL}={job}",
        )
        attempts = sorted((tasks.attempt_of(name, o.metadata.name) or (0, -1), o.metadata.name)
                          for o in items if any(r.uid == found.uid
                                                for r in o.metadata.owner_references))
        if not attempts:
            raise errors.NotFound(f"job {job} of task {name!r} has not started")
        await one(s, attempts[-1][1], prefixed=False, where=(found.zone, found.workspace))
        return True

    async def work(s: session.Session) -> bool:
        if workload:
            return await of_workload(s)
        if task:
            return await of_job(s)
        await one(s, container, prefixed=False)
        return True

    if not _streaming(connection, work):
        raise typer.Exit(1)


def exec_command(
    ctx: typer.Context,
    container: ContainerArg,
    argv: Annotated[list[str], typer.Argument(
        metavar="-- COMMAND [ARG...]", help="The command to run, after --.",
        show_default=False)],
    stdin: StdinOpt = False,
    tty: TtyOpt = False,
) -> None:
    """Run a command in a running container: `exec web.0 -- ls /`, `exec -it web.0 -- sh`.

    Exits with the command's exit code.
    """
    code = _exec(ctx, _container(container), argv, stdin=stdin, tty=tty)
    raise typer.Exit(code)


def shell(
    ctx: typer.Context,
    container: ContainerArg,
    shell_path: Annotated[str, typer.Option(
        "--shell", metavar="PATH", help="The shell to start.")] = DEFAULT_SHELL,
) -> None:
    """An interactive shell in a running container (`exec -it CONTAINER -- /bin/sh`)."""
    code = _exec(ctx, _container(container), [shell_path], stdin=True, tty=True)
    raise typer.Exit(code)


def _exec(ctx: typer.Context, name: str, argv: list[str], *, stdin: bool, tty: bool) -> int:
    if not argv:
        raise typer.BadParameter("name the command to run after --", param_hint="COMMAND")
    if tty and stdin and not terminal.is_terminal(0):
        typer.echo("note: stdin is not a terminal, so no TTY is allocated (-t dropped); "
                   "stdin is passed as it is", err=True)
        tty = False
    interactive = tty and stdin
    connection = settings_of(ctx).connection()

    async def work(s: session.Session) -> int:
        zone, workspace = _scope(s)
        rows, cols = terminal.size(0 if interactive else 1) if tty else (0, 0)
        return await _run(s.client, name, argv, zone=zone, workspace=workspace,
                          stdin=stdin, tty=tty, rows=rows, cols=cols, raw=interactive)

    return _streaming(connection, work)


async def _run(client: Client, name: str, argv: list[str], *, zone: str, workspace: str,
               stdin: bool, tty: bool, rows: int, cols: int, raw: bool) -> int:
    loop = asyncio.get_running_loop()
    resizes: set[asyncio.Task[bool]] = set()
    async with client.exec(name, argv, zone=zone, workspace=workspace, tty=tty, stdin=stdin,
                           rows=rows, cols=cols) as remote:
        with terminal.raw(0) if raw else contextlib.nullcontext():
            if stdin:
                terminal.read_stdin(loop=loop, fd=0, send=remote.send, close=remote.close_stdin)
            if tty:
                def resized() -> None:
                    rows, cols = terminal.size(0 if raw else 1)
                    task = loop.create_task(remote.resize(rows=rows, cols=cols))
                    resizes.add(task)
                    task.add_done_callback(resizes.discard)

                loop.add_signal_handler(signal.SIGWINCH, resized)
            try:
                async for stream, data in remote.output():
                    terminal.write(2 if stream == "stderr" else 1, data)
            finally:
                if tty:
                    loop.remove_signal_handler(signal.SIGWINCH)
        assert remote.exit_code is not None
        return remote.exit_code



def _streaming(connection: profiles.Connection, work: Callable[[session.Session], Awaitable[T]],
               ) -> T:
    """``session.run`` for a stream: a stream that breaks is reported as such (exit 1),
    not as an apiserver that could not be reached."""

    async def guarded(s: session.Session) -> T:
        try:
            return await work(s)
        except errors.Unavailable as exc:
            raise errors.DoraError(
                f"the stream through {connection.endpoint} broke: {exc.message}"
            ) from exc

    return session.run(connection, guarded)
