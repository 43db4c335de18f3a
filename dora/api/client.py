"""The async Dora client: every component and ``doractl`` reach the cluster through it.

Calls raise the ``dora.api.errors`` tree, never ``grpc.RpcError``. ``watch``
yields events and, when told to, resumes a dropped stream from the last version
it delivered, so a caller sees each change once, in order; a version that is too
old raises ``errors.Gone`` and the caller lists again.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import grpc

from dora.api import errors, grpcoptions
from dora.api.execstream import ExecStream
from dora.api.objects import Ref
from dora.api.v1 import (
    coordination_pb2,
    coordination_pb2_grpc,
    devices_pb2,
    devices_pb2_grpc,
    object_pb2,
    pausing_pb2,
    pausing_pb2_grpc,
    resources_pb2,
    resources_pb2_grpc,
    streams_pb2,
    streams_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
    volumes_pb2_grpc,
)
from dora.api.volumefiles import VolumeFiles

WatchEvent = resources_pb2.WatchEvent
ApplyResult = resources_pb2.ApplyResponse.Result

CHANNEL_OPTIONS = grpcoptions.channel(max_receive=64 * grpcoptions.MiB)


class ResourceClient(Protocol):
    """The part of ``Client`` a reconciler uses: objects read, applied, status-written,
    deleted, listed and watched. ``Client`` is one; ``dora.runtime.testing.FakeClient``
    (objects in memory) is another, for unit tests."""

    async def apply(
        self, obj: object_pb2.Object, *, dry_run: bool = False, create_only: bool = False
    ) -> tuple[object_pb2.Object, ApplyResult.ValueType]: ...

    async def get(self, kind: str, name: str, *, zone: str = "", workspace: str = "",
                  resource_version: int = 0) -> object_pb2.Object: ...

    async def list(
        self, kind: str, *, zone: str = "", workspace: str = "", label_selector: str = "",
        page_size: int = 500, resource_version: int = 0,
    ) -> tuple[builtins.list[object_pb2.Object], int]: ...

    async def update_status(self, obj: object_pb2.Object) -> object_pb2.Object: ...

    async def delete(
        self, kind: str, name: str, *, zone: str = "", workspace: str = "",
        resource_version: int = 0,
    ) -> object_pb2.Object: ...

    def watch(
        self, kind: str, *, zone: str = "", workspace: str = "", label_selector: str = "",
        resource_version: int = 0, resume: bool = True, bookmarks: bool = False,
        resume_index: int = 0,
    ) -> AsyncIterator[resources_pb2.WatchEvent]: ...



class Client:
    """A connection to a Dora apiserver (or several: ``ipv4:a:3000,b:3000``)."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        root_certificates: bytes | None = None,
        tls: bool = False,
        timeout: float = 30.0,
    ) -> None:
        # TLS with ``root_certificates`` as the CA bundle; with ``tls`` alone, the
        # system's default roots (an ``https://`` endpoint with no CA configured).
        if tls or root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.aio.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = resources_pb2_grpc.ResourcesStub(self._channel)
        self._leases = coordination_pb2_grpc.LeasesStub(self._channel)
        self._tokens = tokens_pb2_grpc.TokensStub(self._channel)
        self._workspaces = tokens_pb2_grpc.WorkspacesStub(self._channel)
        self._devices = devices_pb2_grpc.DevicesStub(self._channel)
        self._pausing = pausing_pb2_grpc.PausingStub(self._channel)
        self._streams = streams_pb2_grpc.StreamsStub(self._channel)
        self._volume_files = volumes_pb2_grpc.VolumeFilesStub(self._channel)
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._timeout = timeout
        self._owns_channel = True

    def with_token(self, token: str) -> Client:
        """A client on this one's connection that calls with ``token``: a gateway
        (``dora-web``) calls for each signed-in user with that user's own token over
        one shared channel. Closing it leaves the connection open."""
        other = copy.copy(self)
        other._metadata = (("authorization", f"Bearer {token}"),)
        other._owns_channel = False
        return other

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_channel:
            await self._channel.close(None)

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise errors.from_rpc_error(exc) from None

    async def apply(
        self, obj: object_pb2.Object, *, dry_run: bool = False, create_only: bool = False
    ) -> tuple[object_pb2.Object, ApplyResult.ValueType]:
        request = resources_pb2.ApplyRequest(object=obj, dry_run=dry_run, create_only=create_only)
        response = await self._call(self._stub.Apply, request)
        return response.object, response.result

    async def get(self, kind: str, name: str, *, zone: str = "", workspace: str = "",
                  resource_version: int = 0) -> object_pb2.Object:
        """The object now; with ``resource_version`` N, any state not older than N (served
        from the apiserver's cache, without an etcd read)."""
        ref = Ref(kind, zone, workspace, name)
        request = resources_pb2.GetRequest(ref=ref.to_proto(), resource_version=resource_version)
        result: object_pb2.Object = await self._call(self._stub.Get, request)
        return result

    async def list_page(
        self,
        kind: str,
        *,
        zone: str = "",
        workspace: str = "",
        label_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: int = 0,
    ) -> resources_pb2.ListResponse:
        request = resources_pb2.ListRequest(
            kind=kind, zone=zone, workspace=workspace, label_selector=label_selector,
            limit=limit, continue_token=continue_token, resource_version=resource_version,
        )
        response: resources_pb2.ListResponse = await self._call(self._stub.List, request)
        return response

    async def list(
        self, kind: str, *, zone: str = "", workspace: str = "", label_selector: str = "",
        page_size: int = 500, resource_version: int = 0,
    ) -> tuple[list[object_pb2.Object], int]:
        """Every matching object, read page by page at one revision; and that revision.

        With ``resource_version`` N: everything not older than N, in one answer from
        the apiserver's cache."""
        items: list[object_pb2.Object] = []
        token = ""
        while True:
            page = await self.list_page(
                kind, zone=zone, workspace=workspace, label_selector=label_selector,
                limit=page_size, continue_token=token, resource_version=resource_version,
            )
            items.extend(page.items)
            if not page.continue_token:
                return items, page.resource_version
            token = page.continue_token

    async def update_status(self, obj: object_pb2.Object) -> object_pb2.Object:
        result: object_pb2.Object = await self._call(
            self._stub.UpdateStatus, resources_pb2.UpdateStatusRequest(object=obj)
        )
        return result

    async def delete(
        self, kind: str, name: str, *, zone: str = "", workspace: str = "",
        resource_version: int = 0,
    ) -> object_pb2.Object:
        ref = Ref(kind, zone, workspace, name)
        response = await self._call(
            self._stub.Delete,
            resources_pb2.DeleteRequest(ref=ref.to_proto(), resource_version=resource_version),
        )
        result: object_pb2.Object = response.object
        return result

    async def watch(
        self,
        kind: str,
        *,
        zone: str = "",
        workspace: str = "",
        label_selector: str = "",
        resource_version: int = 0,
        resume: bool = True,
        bookmarks: bool = False,
        resume_index: int = 0,
    ) -> AsyncIterator[resources_pb2.WatchEvent]:
        """Events of a kind: from version 0 the current objects, a bookmark, then changes.

        With ``resume`` a dropped stream is reopened from the last position seen (a
        version and, inside it, how many of its events came: ``resume_point``).
        Bookmarks move that version on; they are yielded only with ``bookmarks``.
        """
        version, index = resource_version, resume_index
        # From version 0 the stream first replays the current objects; their
        # versions are not a point to resume from until the bookmark closes it.
        synced = resource_version != 0
        backoff = 0.1
        while True:
            request = resources_pb2.WatchRequest(
                kind=kind, zone=zone, workspace=workspace, label_selector=label_selector,
                resource_version=version, resume_index=index,
            )
            call = self._stub.Watch(request, metadata=self._metadata)
            try:
                async for event in call:
                    backoff = 0.1
                    if event.type == WatchEvent.BOOKMARK:
                        synced = True
                    if synced:
                        version, index = resume_point(version, index, event)
                    if event.type != WatchEvent.BOOKMARK or bookmarks:
                        yield event
            except grpc.aio.AioRpcError as exc:
                error = errors.from_rpc_error(exc)
                if not resume or not synced or not isinstance(error, errors.Unavailable):
                    raise error from None
            finally:
                call.cancel()
            if not resume:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def grant_lease(self, ttl_seconds: int) -> tuple[int, int]:
        """A new etcd lease: its id and TTL."""
        response = await self._call(
            self._leases.Grant, coordination_pb2.GrantLeaseRequest(ttl_seconds=ttl_seconds)
        )
        return int(response.lease_id), int(response.ttl_seconds)

    async def keep_lease_alive(self, lease_id: int, *, every: float) -> AsyncIterator[int]:
        """Refresh ``lease_id`` every ``every`` seconds on one stream; yields the TTL left
        after each refresh. A TTL of 0 means the lease is gone: the holder lost it."""

        async def requests() -> AsyncIterator[coordination_pb2.KeepAliveRequest]:
            while True:
                yield coordination_pb2.KeepAliveRequest(lease_id=lease_id)
                await asyncio.sleep(every)

        call = self._leases.KeepAlive(requests(), metadata=self._metadata)
        try:
            async for response in call:
                yield int(response.ttl_seconds)
        except grpc.aio.AioRpcError as exc:
            raise errors.from_rpc_error(exc) from None
        finally:
            call.cancel()

    async def revoke_lease(self, lease_id: int) -> None:
        await self._call(
            self._leases.Revoke, coordination_pb2.RevokeLeaseRequest(lease_id=lease_id)
        )

    async def create_token(
        self, user: str, workspace: str, token_id: str, *, ttl_seconds: int = 0,
        node: str = "",
    ) -> tuple[str, tokens_pb2.TokenInfo]:
        """A new token for ``user`` (shown only now) and what is stored of it; with
        ``node``, the identity of that node's agent."""
        request = tokens_pb2.CreateTokenRequest(
            user=user, workspace=workspace, id=token_id, ttl_seconds=ttl_seconds, node=node
        )
        response = await self._call(self._tokens.Create, request)
        return str(response.token), response.info

    async def list_tokens(self, user: str = "") -> builtins.list[tokens_pb2.TokenInfo]:
        response = await self._call(self._tokens.List, tokens_pb2.ListTokensRequest(user=user))
        return list(response.tokens)

    async def revoke_token(self, user: str, token_id: str) -> None:
        await self._call(self._tokens.Revoke,
                         tokens_pb2.RevokeTokenRequest(user=user, id=token_id))

    async def whoami(self) -> tokens_pb2.WhoAmIResponse:
        response: tokens_pb2.WhoAmIResponse = await self._call(
            self._tokens.WhoAmI, tokens_pb2.WhoAmIRequest()
        )
        return response

    async def clone_workspace(
        self, source: str, destination: str, *, zone: str = ""
    ) -> builtins.list[str]:
        """Copy a workspace's definitions (workloads stopped); the names copied."""
        request = tokens_pb2.CloneWorkspaceRequest(
            source=source, destination=destination, zone=zone
        )
        response = await self._call(self._workspaces.Clone, request)
        return list(response.copied)

    async def list_devices(self, kind: str, *, zone: str = "") -> devices_pb2.ListDevicesResponse:
        """The GPUs (``kind="GPU"``) or CPUs of a zone's nodes (the caller's default zone)."""
        response: devices_pb2.ListDevicesResponse = await self._call(
            self._devices.List, devices_pb2.ListDevicesRequest(kind=kind, zone=zone))
        return response

    async def set_paused(self, kind: str, name: str, *, paused: bool, zone: str = "",
                         workspace: str = "") -> tuple[object_pb2.Object, builtins.list[str]]:
        """Pause (verb ``Pause``) or resume (``Resume``) a Workload's or a Container's
        Docker containers; the object as stored and the containers changed."""
        request = pausing_pb2.SetPausedRequest(
            ref=Ref(kind, zone, workspace, name).to_proto(), paused=paused)
        response = await self._call(self._pausing.SetPaused, request)
        return response.object, list(response.containers)

    async def logs(
        self, name: str, *, zone: str = "", workspace: str = "", follow: bool = False,
        tail_lines: int | None = None, timestamps: bool = False,
    ) -> AsyncIterator[bytes]:
        """A Container's output as Docker hands it over; with ``follow``, until cancelled
        or the container stops. Needs the verb ``Log`` on the Container."""
        request = streams_pb2.LogsRequest(zone=zone, workspace=workspace, name=name,
                                          follow=follow, timestamps=timestamps)
        if tail_lines is not None:
            request.tail_lines = tail_lines
        call = self._streams.Logs(request, metadata=self._metadata)
        try:
            async for chunk in call:
                yield chunk.data
        except grpc.aio.AioRpcError as exc:
            raise errors.from_rpc_error(exc) from None
        finally:
            call.cancel()

    def exec(
        self, name: str, command: Sequence[str], *, zone: str = "", workspace: str = "",
        tty: bool = False, stdin: bool = False, rows: int = 0, cols: int = 0,
    ) -> ExecStream:
        """Run ``command`` in a running Container (verb ``Shell``):
        ``async with client.exec(...) as session``, then ``session.output()`` or
        ``session.wait()``; ``session.exit_code`` is the command's."""
        start = streams_pb2.ExecStart(zone=zone, workspace=workspace, name=name,
                                      command=list(command), tty=tty, stdin=stdin)
        if rows > 0 and cols > 0:
            start.size.CopyFrom(streams_pb2.TerminalSize(rows=rows, cols=cols))
        return ExecStream(stub=self._streams, start=start, metadata=self._metadata)

    def volume_files(self) -> VolumeFiles:
        """A Volume's files: list, upload, download, delete (verbs Ls, Upload, Download,
        or Sync for ``doractl sync``), through the apiserver, checked with sha256."""
        return VolumeFiles(stub=self._volume_files, metadata=self._metadata,
                           timeout=self._timeout)


def target_of(endpoints: Sequence[str]) -> str:
    """A gRPC target for one or more ``host:port`` apiserver endpoints."""
    cleaned = [e.split("://")[-1].rstrip("/") for e in endpoints]
    return cleaned[0] if len(cleaned) == 1 else "ipv4:" + ",".join(cleaned)


def resume_point(version: int, index: int, event: resources_pb2.WatchEvent) -> tuple[int, int]:
    """Where a watcher at (``version``, ``index``) resumes once it has ``event``: the
    ``resource_version`` and ``resume_index`` of its next Watch. Several events can
    share a version (one transaction changed several objects); the index counts
    those of the version received, 0 meaning all of them (after a bookmark)."""
    revision = event.object.metadata.resource_version
    if event.type == WatchEvent.BOOKMARK:
        return (revision, 0) if revision >= version else (version, index)
    if revision > version:
        return revision, event.revision_index + 1
    if revision == version and index:
        return version, max(index, event.revision_index + 1)
    return version, index
