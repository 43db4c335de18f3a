"""``doractl volume ls|upload|download|rm`` and ``doractl sync``: a Volume's files.

Everything goes through the apiserver (``Client.volume_files``), which checks the
seeds' verbs on the Volume (``Ls``, ``Upload``, ``Download``; ``Sync`` for sync)
and relays to a node that reaches the storage: the user never needs, nor
learns, the storage's address. A Volume is named ``VOLUME[:PATH]`` (``home``,
``home:/src``) in the current zone and workspace (``-z``, ``-g`` for another).

``sync LOCAL_DIR VOLUME[:PATH]`` is the old CLI's code sync: a first copy that
skips files whose size and sha256 already match, then a look at the folder
every ``--interval`` seconds (0.5) that sends what changed and deletes what was
deleted, until Ctrl-C. ``.doraignore`` in the folder says what stays local
(gitignore-like, see ``dora.ctl.syncing``). Transfers show rich progress on a
terminal and one line per file otherwise.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from dora.api import errors, syncing, volumes
from dora.api.v1 import volumes_pb2
from dora.api.volumefiles import VolumeFiles
from dora.ctl import humanize, printers, session
from dora.ctl.options import command, settings_of

app = typer.Typer(help="A volume's files: ls, upload, download, rm.", no_args_is_help=True)

VolumeArg = Annotated[str, typer.Argument(
    metavar="VOLUME[:PATH]", help="The volume, and a path inside it (default: its root).",
    show_default=False)]
# A whole volume tree can take a while to list with checksums, a big file to hash.
CALL_TIMEOUT = 600.0


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="volume")
    root.add_typer(app, name="volumes", hidden=True)
    command(root, "sync")(sync)


def split(word: str, *, param: str = "VOLUME[:PATH]") -> tuple[str, str]:
    """``home:/src`` -> (``home``, ``src``); the path is confined to the volume."""
    name, _, path = word.partition(":")
    if not name:
        raise typer.BadParameter(f"{word!r} names no volume", param_hint=param)
    try:
        return name, volumes.clean(path, field=param)
    except errors.Invalid as exc:
        raise typer.BadParameter(exc.message, param_hint=param) from None


def _target(s: session.Session, name: str) -> volumes_pb2.VolumeTarget:
    return volumes_pb2.VolumeTarget(zone=s.connection.zone, workspace=s.connection.workspace,
                                    name=name)


def _console() -> Console:
    return Console(stderr=True, highlight=False)


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(), console=console,
        disable=not console.is_terminal,
    )
    with progress:
        yield progress


@command(app, "ls")
def ls(
    ctx: typer.Context,
    volume: VolumeArg,
    recursive: Annotated[bool, typer.Option("--recursive", "-R",
                                            help="Everything under PATH.")] = False,
    checksums: Annotated[bool, typer.Option("--sha256", help="Show each file's sha256.")
                         ] = False,
) -> None:
    """List a volume's files."""
    name, path = split(volume)

    async def work(s: session.Session) -> volumes_pb2.ListFilesResponse:
        return await s.client.volume_files().list(_target(s, name), path,
                                                  recursive=recursive, checksums=checksums)

    listing = session.run(settings_of(ctx).connection(), work, timeout=CALL_TIMEOUT)
    if not listing.exists:
        raise errors.NotFound(f"{path or '/'} does not exist in volume {name}")
    headers = ["MODE", "SIZE", "MODIFIED", "PATH"] + (["SHA256"] if checksums else [])
    rows = []
    for info in listing.files:
        modified = dt.datetime.fromtimestamp(info.mtime_ns / 1e9, tz=dt.UTC)
        row = [stat.filemode(info.mode | (stat.S_IFDIR if info.is_dir else stat.S_IFREG)),
               "-" if info.is_dir else humanize.size(info.size),
               modified.strftime("%Y-%m-%d %H:%M:%S"),
               info.path + ("/" if info.is_dir else "")]
        rows.append(row + ([info.sha256 or "-"] if checksums else []))
    printers.print_table(headers, rows)


@command(app, "upload")
def upload(
    ctx: typer.Context,
    args: Annotated[list[str], typer.Argument(
        metavar="SRC... VOLUME[:DIR]",
        help="Local files or folders, then the volume and the folder to put them in.",
        show_default=False)],
) -> None:
    """Copy local files and folders into a volume (each under its own name in DIR)."""
    if len(args) < 2:
        raise typer.BadParameter("name at least one SRC and the VOLUME[:DIR]",
                                 param_hint="SRC... VOLUME[:DIR]")
    name, base = split(args[-1])
    sources = [Path(a) for a in args[:-1]]
    plan: list[tuple[Path, str]] = []
    for source in sources:
        if not source.exists():
            raise typer.BadParameter(f"{source}: no such file or folder", param_hint="SRC")
        if source.is_dir():
            ignore = syncing.Ignore.load(source)
            for rel, entry in sorted(syncing.scan(source, ignore).items()):
                if not entry.is_dir:
                    plan.append((source / rel, syncing.remote_path(base,
                                                                   f"{source.name}/{rel}")))
        else:
            plan.append((source, syncing.remote_path(base, source.name)))
    console = _console()

    async def work(s: session.Session) -> None:
        files = s.client.volume_files()
        target = _target(s, name)
        with _progress(console) as progress:
            for local, remote in plan:
                await _send(files, target, local, remote, progress=progress, console=console)

    session.run(settings_of(ctx).connection(), work, timeout=CALL_TIMEOUT)
    console.print(f"{len(plan)} file(s) uploaded to volume {name}:/{base}")


async def _send(files: VolumeFiles, target: volumes_pb2.VolumeTarget, local: Path,
                remote: str, *, progress: Progress, console: Console, sync: bool = False,
                digest: str = "") -> None:
    size = (await asyncio.to_thread(local.stat)).st_size
    task = progress.add_task(f"↑ {remote}", total=size)
    try:
        await files.upload(target, remote, local, sync=sync, digest=digest,
                           progress=lambda n: progress.advance(task, n))
    finally:
        progress.remove_task(task)
    if not console.is_terminal or sync:
        console.print(f"↑ {remote} ({humanize.size(size)})")


@command(app, "download")
def download(
    ctx: typer.Context,
    volume: Annotated[str, typer.Argument(
        metavar="VOLUME:PATH", help="The file or folder in the volume.", show_default=False)],
    destination: Annotated[Path, typer.Argument(
        metavar="DEST", help="Where to put it (default: here, under its own name).")
    ] = Path("."),
) -> None:
    """Copy a file or folder out of a volume (resumes an interrupted download)."""
    name, path = split(volume, param="VOLUME:PATH")
    console = _console()

    async def work(s: session.Session) -> int:
        files = s.client.volume_files()
        target = _target(s, name)
        listing = await files.list(target, path, recursive=True)
        if not listing.exists:
            raise errors.NotFound(f"{path or '/'} does not exist in volume {name}")
        single = len(listing.files) == 1 and listing.files[0].path == path \
            and not listing.files[0].is_dir
        if single:
            local = destination / Path(path).name if destination.is_dir() else destination
            plan = [(path, local)]
        else:
            top = destination / (Path(path).name or name)
            prefix = f"{path}/" if path else ""
            plan = [(f.path, top / f.path.removeprefix(prefix))
                    for f in listing.files if not f.is_dir]
        with _progress(console) as progress:
            for remote, local in plan:
                task = progress.add_task(f"↓ {remote}", total=None)

                def advance(n: int, task: TaskID = task) -> None:
                    progress.advance(task, n)

                info = await files.download(target, remote, local, progress=advance)
                progress.remove_task(task)
                if not console.is_terminal:
                    console.print(f"↓ {remote} -> {local} ({humanize.size(info.size)})")
        return len(plan)

    count = session.run(settings_of(ctx).connection(), work, timeout=CALL_TIMEOUT)
    console.print(f"{count} file(s) downloaded from volume {name}:/{path}")


@command(app, "rm")
def rm(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(
        metavar="VOLUME:PATH...", help="Files (or folders, with -r) to delete.",
        show_default=False)],
    recursive: Annotated[bool, typer.Option("--recursive", "-r",
                                            help="Delete folders and what they hold.")] = False,
) -> None:
    """Delete files or folders of a volume."""
    by_volume: dict[str, list[str]] = {}
    for word in paths:
        name, path = split(word, param="VOLUME:PATH")
        if not path:
            raise typer.BadParameter(f"{word!r}: name a path; a volume's root cannot be "
                                     "deleted", param_hint="VOLUME:PATH")
        by_volume.setdefault(name, []).append(path)

    async def work(s: session.Session) -> int:
        deleted = 0
        for name, names in by_volume.items():
            deleted += await s.client.volume_files().delete(_target(s, name), names,
                                                            recursive=recursive)
        return deleted

    deleted = session.run(settings_of(ctx).connection(), work, timeout=CALL_TIMEOUT)
    typer.echo(f"{deleted} path(s) deleted")


def sync(
    ctx: typer.Context,
    local_dir: Annotated[Path, typer.Argument(
        metavar="LOCAL_DIR", help="The folder to mirror.", show_default=False,
        exists=True, file_okay=False, dir_okay=True)],
    volume: VolumeArg,
    interval: Annotated[float, typer.Option(
        "--interval", help="Seconds between looks at the folder.")] = 0.5,
    once: Annotated[bool, typer.Option(
        "--once", help="Copy what differs, then stop instead of following changes.")] = False,
    prune: Annotated[bool, typer.Option(
        "--prune", help="Also delete files in the volume that the folder lacks at the "
                        "start.")] = False,
) -> None:
    """Mirror LOCAL_DIR into a volume: copy what differs, then follow changes (Ctrl-C
    stops). Deletions are mirrored; .doraignore is honoured."""
    if interval <= 0:
        raise typer.BadParameter("must be more than 0", param_hint="--interval")
    name, base = split(volume)
    console = _console()

    async def work(s: session.Session) -> None:
        syncer = syncing.Syncer(files=s.client.volume_files(), target=_target(s, name),
                                base=base, root=local_dir, reporter=ConsoleReporter(console))
        await syncer.first_copy(prune=prune)
        if once:
            return
        console.print(f"following {local_dir} -> volume {name}:/{base} (Ctrl-C stops)")
        while True:
            await asyncio.sleep(interval)
            await syncer.follow()

    try:
        session.run(settings_of(ctx).connection(), work, timeout=CALL_TIMEOUT)
    except KeyboardInterrupt:
        console.print("sync stopped")


class ConsoleReporter:
    """``doractl sync``'s side of a sync: a progress bar per file on a terminal, one
    line per file and per deletion."""

    def __init__(self, console: Console) -> None:
        self.console = console

    @contextmanager
    def transfer(self, remote: str, size: int) -> Iterator[Callable[[int], None]]:
        with _progress(self.console) as progress:
            task = progress.add_task(f"↑ {remote}", total=size)
            yield lambda n: progress.advance(task, n)
        self.console.print(f"↑ {remote} ({humanize.size(size)})")

    def deleted(self, remote: str) -> None:
        self.console.print(f"✗ {remote}")

    def problem(self, message: str) -> None:
        self.console.print(f"! {message}")

    def note(self, message: str) -> None:
        self.console.print(message)
