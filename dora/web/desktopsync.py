"""The desktop app's sync folders: where they are kept, and the syncs kept live.

A workload's sync folders are pairs (local folder -> volume[:path]) that belong to
one machine, so they are kept in ``~/.dora/desktop.yaml`` on it, never in the
cluster, keyed by context, zone, workspace and workload::

    syncs:
    - context: admin
      zone: dora-cluster-1
      workspace: alice
      workload: trainer
      folders:
      - {local: /home/alice/project, volume: home, path: code}

While ``doractl ui`` runs, ``Manager`` keeps each of them live with the engine
``doractl sync`` runs (``dora.api.syncing.Syncer``): a first copy (what differs
by size and sha256), then a look at the folder twice a second. Each sync's state
(``syncing``, ``idle`` with the last sync time, ``paused`` while its workload is
stopped, ``error`` with the message) goes to the page over Server-Sent Events.
A folder that disappears or cannot be read stops that sync with an error and
deletes nothing on the volume (``FolderUnreadable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dora.api import errors
from dora.api.client import Client
from dora.api.syncing import FolderUnreadable, Syncer
from dora.api.v1 import volumes_pb2

log = logging.getLogger(__name__)

# How often a sync looks at its folder, and at its workload and volume.
LOOK_SECONDS = 0.5
CHECK_SECONDS = 2.0
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def default_path() -> Path:
    return Path("~/.dora/desktop.yaml").expanduser()


@dataclass(frozen=True)
class Folder:
    local: str
    volume: str
    path: str = ""


@dataclass(frozen=True, order=True)
class Key:
    context: str
    zone: str
    workspace: str
    workload: str

    def id(self, index: int) -> str:
        return f"{self.context}/{self.zone}/{self.workspace}/{self.workload}/{index}"


def parse_folders(raw: Any, *, field_name: str = "folders") -> list[Folder]:
    """The folders of a request or of the file; ``Invalid`` names the bad field."""
    if not isinstance(raw, list):
        raise errors.Invalid("expected a list of {local, volume, path}", field=field_name)
    folders = []
    for i, item in enumerate(raw):
        where = f"{field_name}[{i}]"
        if not isinstance(item, dict):
            raise errors.Invalid("expected {local, volume, path}", field=where)
        local, volume, path = item.get("local"), item.get("volume"), item.get("path", "")
        if not isinstance(local, str) or not local.strip():
            raise errors.Invalid("a local folder is required", field=f"{where}.local")
        expanded = Path(local.strip()).expanduser()
        if not expanded.is_absolute():
            raise errors.Invalid("must be an absolute path (or start with ~)",
                                 field=f"{where}.local")
        if not expanded.is_dir():
            raise errors.Invalid(f"{expanded} is not a folder", field=f"{where}.local")
        if not isinstance(volume, str) or not _NAME.fullmatch(volume):
            raise errors.Invalid("a volume name is required (lowercase letters, digits, -)",
                                 field=f"{where}.volume")
        if not isinstance(path, str) or ".." in path.split("/"):
            raise errors.Invalid("a path inside the volume, without '..'",
                                 field=f"{where}.path")
        folders.append(Folder(str(expanded), volume, path.strip().strip("/")))
    return folders


@dataclass
class Store:
    """``desktop.yaml``: read once, written (atomically, owner-only) on each change."""

    path: Path
    syncs: dict[Key, list[Folder]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Store:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            return cls(path)
        except (OSError, yaml.YAMLError) as exc:
            raise errors.Invalid(f"{path}: {exc}") from None
        store = cls(path)
        entries = data.get("syncs") or [] if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise errors.Invalid(f"{path}: expected syncs: a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise errors.Invalid(f"{path}: syncs[{i}] must be a mapping")
            key = Key(*(str(entry.get(k) or "") for k in
                        ("context", "zone", "workspace", "workload")))
            store.syncs[key] = [Folder(str(f.get("local", "")), str(f.get("volume", "")),
                                       str(f.get("path", "") or ""))
                                for f in entry.get("folders") or [] if isinstance(f, dict)]
        return store

    def save(self) -> None:
        data = {"syncs": [{**asdict(key), "folders": [asdict(f) for f in folders]}
                          for key, folders in sorted(self.syncs.items(), key=lambda kv: kv[0])
                          if folders]}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                yaml.safe_dump(data, out, sort_keys=False)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass
class State:
    id: str
    context: str
    zone: str
    workspace: str
    workload: str
    local: str
    volume: str
    path: str
    state: str = "starting"  # syncing, idle, paused, error
    message: str = ""
    last_sync: str = ""

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "context": self.context, "zone": self.zone,
                "workspace": self.workspace, "workload": self.workload, "local": self.local,
                "volume": self.volume, "path": self.path, "state": self.state,
                "message": self.message, "lastSync": self.last_sync}


class _Reporter:
    """A sync's transfers and deletions make it ``syncing``; problems are kept for the
    error badge."""

    def __init__(self, mark: Callable[[str, str], None]) -> None:
        self.mark = mark
        self.problems: list[str] = []

    @contextlib.contextmanager
    def transfer(self, remote: str, size: int) -> Iterator[Callable[[int], None]]:
        self.mark("syncing", f"sending {remote}")
        yield lambda n: None

    def deleted(self, remote: str) -> None:
        self.mark("syncing", f"deleted {remote}")

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def note(self, message: str) -> None:
        pass


ClientFor = Callable[[str], Awaitable[Client]]


class Manager:
    """Every configured sync as a task; ``states`` and ``subscribe`` for the page."""

    def __init__(self, store: Store, client_for: ClientFor) -> None:
        self.store = store
        self.client_for = client_for
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.wanted: dict[str, tuple[Key, Folder]] = {}
        self.states: dict[str, State] = {}
        self.subscribers: set[asyncio.Queue[dict[str, str]]] = set()

    def folders(self, key: Key) -> list[Folder]:
        return list(self.store.syncs.get(key, []))

    def set_folders(self, key: Key, folders: list[Folder]) -> None:
        self.store.syncs[key] = folders
        self.store.save()
        self.reconcile()

    def reconcile(self) -> None:
        """Start the syncs configured and not running, stop the ones no longer there
        (or whose folder pair changed)."""
        wanted = {key.id(i): (key, f) for key, folders in self.store.syncs.items()
                  for i, f in enumerate(folders)}
        for sid in list(self.tasks):
            if self.wanted.get(sid) != wanted.get(sid):
                self.tasks.pop(sid).cancel()
                if sid not in wanted:
                    self.states.pop(sid, None)
                    self._publish({"id": sid, "state": "removed"})
        self.wanted = wanted
        for sid, (key, folder) in wanted.items():
            # A sync that stopped (its folder went away) starts again when saved again.
            if sid not in self.tasks or self.tasks[sid].done():
                self.states[sid] = State(sid, key.context, key.zone, key.workspace,
                                         key.workload, folder.local, folder.volume,
                                         folder.path)
                self.tasks[sid] = asyncio.create_task(self._run(sid, key, folder),
                                                      name=f"sync {sid}")

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def subscribe(self) -> asyncio.Queue[dict[str, str]]:
        queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, str]]) -> None:
        self.subscribers.discard(queue)

    def _publish(self, event: dict[str, str]) -> None:
        for queue in self.subscribers:
            queue.put_nowait(event)

    def _mark(self, sid: str, state: str, message: str = "", *, synced: bool = False) -> None:
        current = self.states.get(sid)
        if current is None:
            return
        if synced:
            current.last_sync = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if (current.state, current.message) == (state, message) and not synced:
            return
        current.state, current.message = state, message
        self._publish(current.to_json())

    async def _run(self, sid: str, key: Key, folder: Folder) -> None:
        reporter = _Reporter(lambda state, message: self._mark(sid, state, message))
        target = volumes_pb2.VolumeTarget(name=folder.volume, zone=key.zone,
                                          workspace=key.workspace)
        syncer: Syncer | None = None
        checked = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                client = await self.client_for(key.context)
                if loop.time() - checked >= CHECK_SECONDS:
                    checked = loop.time()
                    if await self._paused(client, key):
                        self._mark(sid, "paused", f"workload {key.workload} is stopped")
                        syncer = None  # a fresh first copy when it starts again
                        await asyncio.sleep(CHECK_SECONDS)
                        continue
                    await self._volume_usable(client, key, folder.volume)
                reporter.problems.clear()
                if syncer is None:
                    syncer = Syncer(files=client.volume_files(), target=target,
                                    base=folder.path, root=Path(folder.local),
                                    reporter=reporter)
                    self._mark(sid, "syncing", "first copy")
                    await syncer.first_copy(prune=False)
                    did = True
                else:
                    did = await syncer.follow()
                if reporter.problems:
                    self._mark(sid, "error", reporter.problems[-1])
                elif did or self.states[sid].state != "idle":
                    self._mark(sid, "idle", "", synced=True)
            except FolderUnreadable as exc:
                self._mark(sid, "error", f"{exc.message}: sync stopped, nothing deleted "
                                         "on the volume")
                return
            except errors.NotFound as exc:
                self._mark(sid, "error", exc.message)
                syncer = None
                checked = 0.0
                await asyncio.sleep(CHECK_SECONDS)
                continue
            except errors.DoraError as exc:
                self._mark(sid, "error", exc.message)
                syncer = None
                await asyncio.sleep(CHECK_SECONDS)
                continue
            except (OSError, RuntimeError, ValueError) as exc:
                # Not foreseen (a local disk error...): shown, and tried again; the
                # sync must not die silently with a spinner left on the card.
                log.exception("sync %s", sid)
                self._mark(sid, "error", f"{type(exc).__name__}: {exc}")
                syncer = None
                await asyncio.sleep(CHECK_SECONDS)
                continue
            await asyncio.sleep(LOOK_SECONDS)

    @staticmethod
    async def _volume_usable(client: Client, key: Key, name: str) -> None:
        """``NotFound`` for a volume gone, or being deleted; ``Unavailable`` for one not
        Ready: a sync into it cannot work, and the page says why."""
        volume = await client.get("Volume", name, zone=key.zone, workspace=key.workspace)
        if volume.metadata.HasField("deletion_timestamp"):
            raise errors.NotFound(f"volume {name} is being deleted")
        phase = volume.volume.status.phase
        if phase != "Ready":
            raise errors.Unavailable(f"volume {name} is {phase or 'not ready'}")

    @staticmethod
    async def _paused(client: Client, key: Key) -> bool:
        workload = await client.get("Workload", key.workload, zone=key.zone,
                                    workspace=key.workspace)
        return bool(workload.workload.spec.stopped)
