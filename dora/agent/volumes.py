"""Dora Volumes as this node sees them: resolved at the moment they are needed.

Before it creates a Docker container, the agent resolves every entry of the
Container's ``template.volumes`` through the API client: the Volume (in the
entry's ``workspace``, else the Container's), which must be Ready and not being
deleted, and its Storage in the same zone. The path is recomputed from the two
specs (``dora.api.volumes.volume_path``, seed 002's rule), never taken from a
status someone else wrote. Nothing is cached: each resolve reads the current
state, so the agent stays level-triggered, and a Volume deleted a moment ago is
never mounted. (The node token may read Volumes and Storages: the ``node-rep``
role's ``Node: [report]`` implies it, see ``dora.apiserver.auth.authorizer``.)

A Local storage is a directory of this machine: the Volume's directory is made
here (``mkdir -p``) and the Docker volume bind-mounts it. An NFS storage is
mounted by Docker itself (``type=nfs``); the Volume's directory must exist on
the export (an administrator or an earlier upload makes it).
"""

from __future__ import annotations

import asyncio
import os

from dora.agent.dockerspec import Mount
from dora.api import errors, volumes
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.runtime.reconcile import Retry


class NotReady(Retry):
    """A volume the Container needs cannot be mounted now; the message says why."""


class Resolver:
    def __init__(self, *, client: Client) -> None:
        self.client = client

    async def volume(self, *, zone: str, workspace: str,
                     name: str) -> tuple[object_pb2.Object, object_pb2.Object]:
        """The Volume and its Storage; ``NotReady`` saying why not."""
        where = f"volume {workspace}/{name}"
        try:
            volume = await self.client.get("Volume", name, zone=zone, workspace=workspace)
        except errors.NotFound:
            raise NotReady(f"{where} does not exist in zone {zone}") from None
        if volume.metadata.HasField("deletion_timestamp"):
            raise NotReady(f"{where} is being deleted")
        status = volume.volume.status
        if status.phase != volumes.READY:
            why = next((c.message for c in status.conditions if c.type == "Ready"), "")
            raise NotReady(f"{where} is {status.phase or 'not reconciled yet'}"
                           + (f": {why}" if why else ""))
        storage_name = volume.volume.spec.storage
        try:
            storage = await self.client.get("Storage", storage_name, zone=zone)
        except errors.NotFound:
            raise NotReady(f"{where}: storage {storage_name} does not exist in zone "
                           f"{zone}") from None
        return volume, storage

    async def mounts(self, obj: object_pb2.Object) -> list[Mount]:
        """One ``Mount`` per entry of the Container's ``template.volumes``."""
        zone = obj.metadata.zone
        found = []
        for entry in obj.container.spec.template.volumes:
            workspace = entry.workspace or obj.metadata.workspace
            volume, storage = await self.volume(zone=zone, workspace=workspace, name=entry.name)
            try:
                path = volumes.path_of(volume, storage)
            except errors.Invalid as exc:
                raise NotReady(f"volume {workspace}/{entry.name}: {exc.message}") from exc
            spec = storage.storage.spec
            if spec.kind == volumes.LOCAL:
                await make_directory(path)
            found.append(Mount(workspace=workspace, name=entry.name, kind=spec.kind, path=path,
                               target=entry.target or f"/{entry.name}",
                               read_only=entry.read_only, endpoint=spec.endpoint))
        return found


async def make_directory(path: str) -> None:
    try:
        await asyncio.to_thread(os.makedirs, path, exist_ok=True)
    except OSError as exc:
        raise NotReady(f"cannot make the volume's directory {path}: {exc.strerror}") from exc
