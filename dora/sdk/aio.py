"""``AsyncClient``: the SDK for services and async code, over ``dora.api.client``.

It adds to the low-level client what a script wants and doractl has: the
profile (``from_profile``), the connection's zone and workspace as defaults,
kind names as users write them (``wk``, ``containers``), objects from YAML,
dicts or the ``Workload`` builder, results readable without protobuf
(``dora.sdk.resources``), waiting for a state (``dora.api.waiting``), and the
workload verbs as read-modify-apply at the version read (``dora.api.changes``).
Errors are the ``dora.api.errors`` tree. ``dora.sdk.sync.Client`` is the same
methods for scripts and notebooks.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from dora.api import changes, errors, kinds, profiles, syncing, tasks, waiting
from dora.api.client import Client as ApiClient
from dora.api.v1 import object_pb2, tokens_pb2, volumes_pb2
from dora.sdk import resources
from dora.sdk.resources import Applied, Event, ExecResult, Job, Manifest, Resource, Synced

log = logging.getLogger("dora.sdk")

# The states a task stays in until someone acts: what ``wait_task`` waits for.
TASK_ENDS = (tasks.COMPLETED, tasks.FAILED, tasks.BROKEN, tasks.KILLED)


class AsyncClient:
    """A connection to Dora. ``AsyncClient(server="host:3000", token=...)`` or
    ``AsyncClient.from_profile()``; use ``async with`` or ``await close()``."""

    def __init__(self, server: str | None = None, *, token: str | None = None,
                 zone: str = "", workspace: str = "", ca: str = "",
                 timeout: float = 30.0,
                 connection: profiles.Connection | None = None) -> None:
        if connection is None:
            if not server:
                raise errors.DoraError(
                    "no apiserver to talk to: pass server='host:port' or use "
                    "Client.from_profile()")
            connection = profiles.Connection(endpoint=server, token=token or "", ca=ca,
                                             zone=zone, workspace=workspace)
        self.connection = connection
        self.api = ApiClient(connection.target, token=connection.token or None,
                             root_certificates=connection.root_certificates(),
                             tls=connection.tls, timeout=timeout)

    @classmethod
    def from_profile(cls, context: str | None = None, *, config: str | Path | None = None,
                     zone: str | None = None, workspace: str | None = None,
                     timeout: float = 30.0) -> AsyncClient:
        """A client for ``context`` of doractl's profile file (``$DORA_CONFIG`` or
        ``~/.dora/config.yaml``; default: ``$DORA_CONTEXT`` or the current context),
        with ``$DORA_SERVER`` and ``$DORA_TOKEN`` taking precedence as for doractl."""
        return cls(connection=connection_from_profile(context, config=config, zone=zone,
                                                      workspace=workspace),
                   timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.api.close()

    def __repr__(self) -> str:
        return f"<dora.AsyncClient {self.connection.endpoint}>"

    # --- scope -------------------------------------------------------------------

    def _scope(self, kind: kinds.Kind, zone: str | None,
               workspace: str | None) -> tuple[str, str]:
        """The zone and workspace to address ``kind`` in: the ones given, else the
        connection's, and only the scopes the kind has."""
        zone = self.connection.zone if zone is None else zone
        workspace = self.connection.workspace if workspace is None else workspace
        return (zone if kind.zoned else "", workspace if kind.workspaced else "")

    def _fill_scope(self, obj: object_pb2.Object) -> object_pb2.Object:
        kind = kinds.get(obj.kind)
        if kind.zoned and not obj.metadata.zone:
            obj.metadata.zone = self.connection.zone
        if kind.workspaced and not obj.metadata.workspace:
            obj.metadata.workspace = self.connection.workspace
        return obj

    # --- objects -------------------------------------------------------------------

    @overload
    async def apply(self, manifest: str, *, dry_run: bool = False) -> builtins.list[Applied]:
        ...

    @overload
    async def apply(self, manifest: resources.Workload | resources.Task | Resource
                    | object_pb2.Object | dict[str, Any], *,
                    dry_run: bool = False) -> Applied: ...

    async def apply(self, manifest: Manifest, *,
                    dry_run: bool = False) -> Applied | builtins.list[Applied]:
        """Create or update: YAML text (every document; a list back), or one object
        (a dict, a ``Workload``, a ``Task``, a ``Resource``, an ``Object``)."""
        done = []
        for obj in resources.to_objects(manifest):
            stored, result = await self.api.apply(self._fill_scope(obj), dry_run=dry_run)
            done.append(resources.applied(stored, result))
        return done if isinstance(manifest, str) else done[0]

    async def get(self, kind: str, name: str, *, zone: str | None = None,
                  workspace: str | None = None) -> Resource:
        found = kinds.lookup(kind)
        z, w = self._scope(found, zone, workspace)
        return Resource(await self.api.get(found.name, name, zone=z, workspace=w))

    async def list(self, kind: str, selector: str = "", *, zone: str | None = None,
                   workspace: str | None = None,
                   all_scopes: bool = False) -> builtins.list[Resource]:
        """The objects of ``kind`` matching the label ``selector`` (``app=web,tier!=db``);
        ``all_scopes`` lists every zone and workspace the caller may read."""
        found = kinds.lookup(kind)
        z, w = ("", "") if all_scopes else self._scope(found, zone, workspace)
        items, _ = await self.api.list(found.name, zone=z, workspace=w, label_selector=selector)
        return [Resource(item) for item in items]

    async def delete(self, kind: str, name: str, *, zone: str | None = None,
                     workspace: str | None = None, wait: bool = True,
                     timeout: float | None = 60.0) -> None:  # noqa: ASYNC109
        """Delete; with ``wait``, return once it is gone (its finalizers done) and so is
        what it owned (a workload's containers, which the garbage collector deletes
        right after it)."""
        found = kinds.lookup(kind)
        z, w = self._scope(found, zone, workspace)
        deleted = await self.api.delete(found.name, name, zone=z, workspace=w)
        if wait:
            meta = deleted.metadata
            await waiting.wait(self.api, found.name, name, waiting.Condition("delete"),
                               zone=meta.zone, workspace=meta.workspace, uid=meta.uid,
                               timeout=timeout)
            await waiting.dependents_gone(self.api, deleted, timeout=timeout)

    async def watch(self, kind: str, selector: str = "", *, name: str | None = None,
                    zone: str | None = None, workspace: str | None = None,
                    resource_version: int = 0) -> AsyncIterator[Event]:
        """Events of ``kind``: from version 0 the current objects (``ADDED``), then
        every change; ``name`` keeps one object's. Runs until the caller stops."""
        found = kinds.lookup(kind)
        z, w = self._scope(found, zone, workspace)
        async for message in self.api.watch(found.name, zone=z, workspace=w,
                                            label_selector=selector,
                                            resource_version=resource_version):
            if name is None or message.object.metadata.name == name:
                yield resources.event(message)

    async def wait(self, kind: str, name: str, for_: str = "phase=Running", *,
                   zone: str | None = None, workspace: str | None = None,
                   timeout: float | None = 60.0) -> Resource | None:  # noqa: ASYNC109
        """Wait until the object is in a state: ``phase=Running``, ``state=Completed``
        (a Task's), ``condition=Available[=STATUS]`` or ``delete`` (then None comes back). Raises
        ``dora.api.waiting.WaitTimeout`` (a ``TimeoutError``) after ``timeout`` s."""
        found = kinds.lookup(kind)
        z, w = self._scope(found, zone, workspace)
        obj = await waiting.wait(self.api, found.name, name, waiting.parse(for_), zone=z,
                                 workspace=w, timeout=timeout)
        return None if obj is None else Resource(obj)

    # --- workload verbs --------------------------------------------------------------

    async def scale(self, workload: str, replicas: int, *, zone: str | None = None,
                    workspace: str | None = None) -> Resource:
        if replicas < 0:
            raise errors.Invalid("must be 0 or more", field="spec.replica.count")

        def edit(obj: object_pb2.Object) -> bool:
            replica = obj.workload.spec.replica
            if replica.HasField("count") and replica.count == replicas:
                return False
            replica.count = replicas
            return True

        return await self._change(workload, edit, "replicas", zone, workspace)

    async def stop(self, workload: str, *, zone: str | None = None,
                   workspace: str | None = None) -> Resource:
        """Stop a workload: its containers go, its definition stays."""
        return await self._change(workload, _set_stopped(True), "stopped", zone, workspace)

    async def start(self, workload: str, *, zone: str | None = None,
                    workspace: str | None = None) -> Resource:
        return await self._change(workload, _set_stopped(False), "stopped", zone, workspace)

    async def _change(self, name: str, edit: changes.Edit, what: str, zone: str | None,
                      workspace: str | None) -> Resource:
        current = await self.get("Workload", name, zone=zone, workspace=workspace)
        written = await changes.apply_change(self.api, current.proto, edit, what=what)
        if written is None:
            raise errors.NotFound(f"workload/{name} was deleted meanwhile")
        return Resource(written)

    # --- tasks ------------------------------------------------------------------------

    async def submit_task(self, task: resources.Task | Resource | object_pb2.Object
                          | dict[str, Any], *, dry_run: bool = False) -> Resource:
        """Create a Task as ``doractl task create`` does: checked by the server, its
        configs folder listed first (a missing or empty folder is ``errors.Invalid``
        naming ``spec.configs.path``, and nothing is written), never an update of a
        task of the same name (``errors.AlreadyExists``)."""
        obj = self._fill_scope(resources.to_objects(task)[0])
        if obj.kind != "Task":
            raise errors.Invalid(f"submit_task takes a Task, not a {obj.kind}", field="kind")
        checked, _ = await self.api.apply(obj, dry_run=True, create_only=True)
        await tasks.list_configs(self.api.volume_files(), checked)
        if dry_run:
            return Resource(checked)
        created, _ = await self.api.apply(obj, create_only=True)
        return Resource(created)

    async def wait_task(self, name: str, state: str | Sequence[str] = TASK_ENDS, *,
                        zone: str | None = None, workspace: str | None = None,
                        timeout: float | None = None) -> Resource:  # noqa: ASYNC109
        """The Task once its ``status.state`` is ``state`` (one of them, for a list;
        default: Completed, Failed, Broken or Killed, where it stays). Raises
        ``WaitTimeout`` after ``timeout`` seconds (None: no limit)."""
        wanted = state if isinstance(state, str) else ",".join(state)
        found = await self.wait("Task", name, f"state={wanted}", zone=zone,
                                workspace=workspace, timeout=timeout)
        assert found is not None  # a state, not a delete
        return found

    async def jobs(self, task: str | Resource, *, zone: str | None = None,
                   workspace: str | None = None) -> builtins.list[Job]:
        """The jobs of a Task (a name, read now, or a ``Resource`` already read), by
        index: config file, state, attempts (``Job``)."""
        if isinstance(task, str):
            task = await self.get("Task", task, zone=zone, workspace=workspace)
        return resources.jobs_of(task.proto)

    # --- containers ------------------------------------------------------------------

    async def exec(self, container: str, argv: Sequence[str], *, stdin: bytes | str | None = None,
                   zone: str | None = None, workspace: str | None = None) -> ExecResult:
        """Run ``argv`` in a running Container; its exit code and output."""
        z, w = self._scope(kinds.get("Container"), zone, workspace)
        async with self.api.exec(container, list(argv), zone=z, workspace=w,
                                 stdin=stdin is not None) as session:
            if stdin is not None:
                await session.send(stdin.encode() if isinstance(stdin, str) else stdin)
                await session.close_stdin()
            out, err, code = await session.wait()
        return ExecResult(code, out, err)

    async def logs(self, container: str, *, follow: bool = False, tail: int | None = None,
                   zone: str | None = None,
                   workspace: str | None = None) -> AsyncIterator[str]:
        """A Container's output, line by line; with ``follow``, until it stops. A
        workload's containers have a terminal, whose lines end in CR LF: both go."""
        z, w = self._scope(kinds.get("Container"), zone, workspace)
        pending = b""
        async for chunk in self.api.logs(container, zone=z, workspace=w, follow=follow,
                                         tail_lines=tail):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.removesuffix(b"\r").decode("utf-8", "replace")
        if pending:
            yield pending.removesuffix(b"\r").decode("utf-8", "replace")

    # --- volumes -----------------------------------------------------------------------

    def _volume(self, name: str, zone: str | None,
                workspace: str | None) -> volumes_pb2.VolumeTarget:
        z, w = self._scope(kinds.get("Volume"), zone, workspace)
        return volumes_pb2.VolumeTarget(zone=z, workspace=w, name=name)

    async def upload(self, volume: str, local: str | Path, path: str = "", *,
                     zone: str | None = None, workspace: str | None = None,
                     progress: Callable[[int], None] | None = None) -> builtins.list[str]:
        """Copy a local file, or a folder's files, into ``volume`` under ``path``
        (default: the local name); the paths written."""
        plan = await asyncio.to_thread(_upload_plan, Path(local), path)
        target = self._volume(volume, zone, workspace)
        files = self.api.volume_files()
        for file, remote in plan:
            await files.upload(target, remote, file, progress=progress)
        return [remote for _, remote in plan]

    async def download(self, volume: str, path: str, local: str | Path, *,
                       zone: str | None = None, workspace: str | None = None) -> Path:
        """Copy the file ``path`` out of ``volume`` to ``local`` (a folder: under the
        file's own name); resumes an interrupted download. The file written."""
        destination = Path(local)
        if await asyncio.to_thread(destination.is_dir):
            destination = destination / Path(path).name
        files = self.api.volume_files()
        await files.download(self._volume(volume, zone, workspace), path.strip("/"),
                             destination)
        return destination

    async def files(self, volume: str, path: str = "", *, zone: str | None = None,
                    workspace: str | None = None) -> builtins.list[str]:
        """The paths of the files under ``path`` in ``volume``."""
        listing = await self.api.volume_files().list(self._volume(volume, zone, workspace),
                                                     path, recursive=True)
        return [f.path for f in listing.files if not f.is_dir]

    async def sync(self, local: str | Path, volume: str, path: str = "", *,
                   prune: bool = False, follow: bool = False, interval: float = 0.5,
                   zone: str | None = None, workspace: str | None = None,
                   on_change: Callable[[Synced], None] | None = None) -> Synced:
        """Mirror the folder ``local`` into ``volume`` under ``path``, as ``doractl
        sync``: send the files that differ (size and sha256), honouring
        ``.doraignore``; ``prune`` deletes what the folder lacks. With ``follow``, keep
        looking every ``interval`` seconds, sending changes and mirroring deletions,
        until cancelled (Ctrl-C for ``Client``); ``on_change`` gets what each look did.
        What was done in all."""
        if interval <= 0:
            raise errors.Invalid("must be more than 0", field="interval")
        root = Path(local)
        if not await asyncio.to_thread(root.is_dir):
            raise errors.NotFound(f"{root}: no such folder")
        done = Synced()
        reporter = _Recorder(done)
        syncer = syncing.Syncer(files=self.api.volume_files(),
                                target=self._volume(volume, zone, workspace),
                                base=path.strip("/"), root=root, reporter=reporter)
        await syncer.first_copy(prune=prune)
        if on_change is not None and reporter.take():
            on_change(done)
        while follow:
            await asyncio.sleep(interval)
            if await syncer.follow() and on_change is not None and reporter.take():
                on_change(done)
        return done

    async def whoami(self) -> tokens_pb2.WhoAmIResponse:
        return await self.api.whoami()


class _Recorder:
    """``sync``'s ``dora.api.syncing.Reporter``: records into a ``Synced``, logs
    problems (``dora.sdk`` logger)."""

    def __init__(self, done: Synced) -> None:
        self.done = done
        self.changed = False

    @contextlib.contextmanager
    def transfer(self, remote: str, size: int) -> Iterator[Callable[[int], None]]:
        yield lambda n: None
        self.done.sent.append(remote)
        self.changed = True

    def deleted(self, remote: str) -> None:
        self.done.deleted.append(remote)
        self.changed = True

    def problem(self, message: str) -> None:
        log.warning("sync: %s", message)
        self.done.problems.append(message)
        self.changed = True

    def note(self, message: str) -> None:
        log.debug("sync: %s", message)

    def take(self) -> bool:
        changed, self.changed = self.changed, False
        return changed


def _upload_plan(source: Path, path: str) -> builtins.list[tuple[Path, str]]:
    """(local file, path in the volume) for each file ``upload`` sends."""
    if not source.exists():
        raise errors.NotFound(f"{source}: no such file or folder")
    base = (path or source.name).strip("/")
    if not source.is_dir():
        return [(source, base)]
    return [(f, f"{base}/{f.relative_to(source).as_posix()}")
            for f in sorted(source.rglob("*")) if f.is_file()]


def _set_stopped(value: bool) -> changes.Edit:
    def edit(obj: object_pb2.Object) -> bool:
        if obj.workload.spec.stopped == value:
            return False
        obj.workload.spec.stopped = value
        return True

    return edit


def connection_from_profile(context: str | None = None, *, config: str | Path | None = None,
                            zone: str | None = None,
                            workspace: str | None = None) -> profiles.Connection:
    path = Path(config).expanduser() if config is not None else profiles.default_path()
    return profiles.resolve(profiles.load(path), context=context, zone=zone,
                            workspace=workspace)


__all__ = ["TASK_ENDS", "AsyncClient", "connection_from_profile"]
