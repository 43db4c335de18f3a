"""The ``AgentVolumeFiles`` gRPC service: a Volume's files on this node's disk.

The apiserver has authorized the user on the Volume and picked this node;
``server.AgentServer`` has checked the apiserver's secret. This module does not
trust what it is sent beyond the Volume's name: it resolves the Volume and its
Storage itself (``volumes.Resolver``, the same rule as for mounts), and every
path goes through two checks:

- ``dora.api.volumes.clean``: no ``..``, no NUL; ``/`` is the volume's root;
- ``os.path.realpath`` of the result (and of a new file's directory once made)
  must stay under the realpath of the Volume's directory, so a symbolic link
  a container left in the volume (``evil -> /etc``) cannot lead a transfer out.
  Files are opened with ``O_NOFOLLOW``; a container swapping a directory for a
  link in the instant between check and open is the remaining window
  (``openat2(RESOLVE_BENEATH)`` would close it; Python does not offer it).

A ``Local`` storage is the host directory itself. An NFS storage is served
only where the administrator mounted its export on the node and told the agent
(``dora-agent --storage-mount NAME=DIR``: DIR holds what the export's
``spec.mountpath`` holds); elsewhere the call is answered ``UNIMPLEMENTED``
("this node does not reach that storage"), and the apiserver tries another node.

Uploads go to ``.<name>.dora-partial`` beside the file, are checked against the
header's size and sha256, then renamed over the file: a reader never sees half
a file, and an interrupted upload resumes from ``partial_size``. Partials are
hidden from listings.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import posixpath
import shutil
import stat
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

import grpc

from dora.agent.volumes import NotReady, Resolver, make_directory
from dora.api import errors, grpcservice, volumes
from dora.api.v1 import volumes_pb2

log = logging.getLogger(__name__)

SERVICE = "dora.api.v1.AgentVolumeFiles"
Context = grpc.aio.ServicerContext[Any, Any]
CHUNK = 1024 * 1024
PARTIAL_SUFFIX = ".dora-partial"


class Refused(Exception):
    """The request cannot be served; ``code`` says how the apiserver should see it."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def partial_of(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}{PARTIAL_SUFFIX}")


def is_partial(name: str) -> bool:
    return name.startswith(".") and name.endswith(PARTIAL_SUFFIX)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as stream:
        while block := stream.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class VolumeDir:
    """One Volume's directory on this disk, with every path confined to it."""

    def __init__(self, root: str, label: str) -> None:
        self.root = os.path.realpath(root)
        self.label = label

    def _check(self, real: str, given: str) -> str:
        if real != self.root and not real.startswith(self.root + os.sep):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"path {given!r} leads outside {self.label} (through a symbolic "
                          "link)")
        return real

    def confine(self, path: str, *, field: str = "path") -> tuple[str, str]:
        """(the path on disk, its cleaned form) for ``path`` inside the volume."""
        inside = volumes.clean(path, field=field)
        joined = os.path.join(self.root, inside) if inside else self.root
        return self._check(os.path.realpath(joined), path), inside

    def info(self, real: str, inside: str, *, checksum: bool = False) -> volumes_pb2.FileInfo:
        st = os.lstat(real)
        is_dir = stat.S_ISDIR(st.st_mode)
        info = volumes_pb2.FileInfo(path=inside, is_dir=is_dir,
                                    size=0 if is_dir else st.st_size,
                                    mtime_ns=st.st_mtime_ns, mode=stat.S_IMODE(st.st_mode))
        if checksum and stat.S_ISREG(st.st_mode):
            info.sha256 = sha256_of(real)
        return info

    def list(self, request: volumes_pb2.ListFilesRequest) -> volumes_pb2.ListFilesResponse:
        real, inside = self.confine(request.path)
        response = volumes_pb2.ListFilesResponse()
        partial = partial_of(real)
        if inside and os.path.isfile(partial) and not os.path.islink(partial):
            response.partial_size = os.lstat(partial).st_size
        if not os.path.lexists(real):
            return response
        response.exists = True
        if not os.path.isdir(real):
            response.files.append(self.info(real, inside, checksum=request.checksums))
            return response
        found = []
        for directory, dirs, files in os.walk(real):
            rel_dir = os.path.relpath(directory, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in sorted(dirs + files):
                if is_partial(name):
                    continue
                rel = f"{rel_dir}/{name}" if rel_dir else name
                found.append(self.info(os.path.join(directory, name), rel,
                                       checksum=request.checksums))
            if not request.recursive:
                break
            dirs.sort()
        response.files.extend(sorted(found, key=lambda f: f.path))
        return response

    def open_upload(self, header: volumes_pb2.UploadHeader) -> tuple[BinaryIO, str, str, str]:
        """The partial file positioned at ``header.offset``; its path, the target, its
        cleaned name."""
        real, inside = self.confine(header.path, field="header.path")
        if not inside:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "name a file, not the volume's root")
        if os.path.isdir(real) and not os.path.islink(real):
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"{inside} is a directory in {self.label}")
        parent = os.path.dirname(real)
        os.makedirs(parent, exist_ok=True)
        self._check(os.path.realpath(parent), header.path)
        partial = partial_of(real)
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
        if header.offset:
            have = os.lstat(partial).st_size if os.path.isfile(partial) else 0
            if have != header.offset:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                              f"cannot resume {inside} at byte {header.offset}: the partial "
                              f"upload has {have} bytes; start again from 0")
        else:
            flags |= os.O_TRUNC
        fd = os.open(partial, flags, 0o600)
        stream = os.fdopen(fd, "wb")
        stream.seek(header.offset)
        return stream, partial, real, inside

    def finish_upload(self, header: volumes_pb2.UploadHeader, partial: str, real: str,
                      inside: str) -> volumes_pb2.FileInfo:
        size = os.lstat(partial).st_size
        if size != header.size:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"upload of {inside} ended at byte {size} of {header.size}; resume it")
        digest = sha256_of(partial)
        if header.sha256 and digest != header.sha256.lower():
            os.unlink(partial)
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"upload of {inside} arrived damaged (sha256 {digest}, expected "
                          f"{header.sha256}); send it again")
        os.chmod(partial, header.mode & 0o777 or 0o644)
        if header.mtime_ns:
            os.utime(partial, ns=(header.mtime_ns, header.mtime_ns))
        # The target's directory was checked after it was made; replace() renames the
        # link itself if a link appeared at the target meanwhile, never its target.
        os.replace(partial, real)
        info = self.info(real, inside)
        info.sha256 = digest
        return info

    def open_download(self, request: volumes_pb2.DownloadRequest
                      ) -> tuple[BinaryIO, volumes_pb2.FileInfo]:
        real, inside = self.confine(request.path)
        if not os.path.lexists(real):
            raise Refused(grpc.StatusCode.NOT_FOUND, f"{inside} does not exist in {self.label}")
        if not os.path.isfile(real):
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"{inside} is not a file in {self.label}")
        info = self.info(real, inside, checksum=True)
        if request.offset > info.size:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"offset {request.offset} is past the end of {inside} "
                          f"({info.size} bytes)")
        stream = os.fdopen(os.open(real, os.O_RDONLY | os.O_NOFOLLOW), "rb")
        stream.seek(request.offset)
        return stream, info

    def delete(self, request: volumes_pb2.DeleteFilesRequest) -> int:
        deleted = 0
        for index, path in enumerate(request.paths):
            inside = volumes.clean(path, field=f"paths[{index}]")
            if not inside:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                              "the volume's root cannot be deleted")
            head, name = os.path.split(os.path.join(self.root, inside))
            parent = self._check(os.path.realpath(head), path)
            target = os.path.join(parent, name)
            if not os.path.lexists(target):
                continue
            if os.path.isdir(target) and not os.path.islink(target):
                if request.recursive:
                    shutil.rmtree(target)
                else:
                    try:
                        os.rmdir(target)
                    except OSError as exc:
                        raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                                      f"{inside} is a directory that is not empty; delete "
                                      "it recursively") from exc
            else:
                os.unlink(target)
            deleted += 1
        return deleted


def parse_storage_mount(value: str) -> tuple[str, str]:
    """``NAME=DIR`` of ``--storage-mount``; ``ValueError`` saying what is wrong."""
    name, sep, directory = value.partition("=")
    if not sep or not name or not directory:
        raise ValueError(f"{value!r} is not NAME=DIR")
    if not os.path.isabs(directory):
        raise ValueError(f"{value!r}: DIR must be an absolute path")
    return name, os.path.normpath(directory)


class AgentVolumeFilesService:
    def __init__(self, *, resolver: Resolver,
                 storage_mounts: dict[str, str] | None = None) -> None:
        self.resolver = resolver
        # Storage name -> where its export is mounted on this node (NFS).
        self.storage_mounts = dict(storage_mounts or {})

    async def _dir(self, target: volumes_pb2.VolumeTarget) -> VolumeDir:
        label = f"volume {target.workspace}/{target.name}"
        volume, storage = await self.resolver.volume(zone=target.zone,
                                                      workspace=target.workspace,
                                                      name=target.name)
        spec, storage_name = storage.storage.spec, storage.metadata.name
        path = volumes.path_of(volume, storage)
        if spec.kind == volumes.LOCAL:
            root = path
        elif storage_name in self.storage_mounts:
            export = posixpath.normpath("/" + spec.mountpath.strip("/"))
            inside = path.removeprefix(export).lstrip("/")  # path_of keeps it under export
            root = posixpath.join(self.storage_mounts[storage_name], inside)
        else:
            raise Refused(grpc.StatusCode.UNIMPLEMENTED,
                          f"this node does not reach {spec.kind} storage {storage_name!r} "
                          f"of {label} (dora-agent --storage-mount {storage_name}=DIR)")
        await make_directory(root)
        return VolumeDir(root, label)

    async def _fail(self, context: Context, exc: Exception) -> None:
        if isinstance(exc, Refused):
            code, message = exc.code, str(exc)
        elif isinstance(exc, errors.Invalid):
            code, message = grpc.StatusCode.INVALID_ARGUMENT, exc.message
        elif isinstance(exc, NotReady):
            code, message = grpc.StatusCode.FAILED_PRECONDITION, str(exc)
        elif isinstance(exc, errors.DoraError):
            code, message = grpc.StatusCode.UNAVAILABLE, exc.message
        elif isinstance(exc, OSError):
            # The host path stays in the agent's log: users learn nothing of the storage.
            log.warning("volume file operation failed: %s", exc)
            message = f"{exc.strerror or type(exc).__name__} (on the node's storage)"
            if isinstance(exc, FileNotFoundError):
                code = grpc.StatusCode.NOT_FOUND
            elif isinstance(exc, FileExistsError | NotADirectoryError | IsADirectoryError):
                code = grpc.StatusCode.FAILED_PRECONDITION
                message = f"{exc.strerror}: a file stands where a folder is needed, or the " \
                          "other way round"
            else:
                code = grpc.StatusCode.INTERNAL
        else:
            raise exc
        await context.abort(code, message)

    async def List(self, request: volumes_pb2.ListFilesRequest,
                   context: Context) -> volumes_pb2.ListFilesResponse:
        try:
            directory = await self._dir(request.volume)
            return await asyncio.to_thread(directory.list, request)
        except (Refused, errors.DoraError, NotReady, OSError) as exc:
            await self._fail(context, exc)
        raise AssertionError("unreachable")

    async def Delete(self, request: volumes_pb2.DeleteFilesRequest,
                     context: Context) -> volumes_pb2.DeleteFilesResponse:
        try:
            directory = await self._dir(request.volume)
            deleted = await asyncio.to_thread(directory.delete, request)
            return volumes_pb2.DeleteFilesResponse(deleted=deleted)
        except (Refused, errors.DoraError, NotReady, OSError) as exc:
            await self._fail(context, exc)
        raise AssertionError("unreachable")

    async def Upload(self, requests: AsyncIterator[volumes_pb2.UploadRequest],
                     context: Context) -> volumes_pb2.UploadResponse:
        stream: BinaryIO | None = None
        try:
            first = await anext(aiter(requests), None)
            if first is None or first.WhichOneof("part") != "header":
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                              "the first message must be the header")
            header = first.header
            directory = await self._dir(header.volume)
            out, partial, real, inside = await asyncio.to_thread(directory.open_upload, header)
            stream = out
            written = header.offset
            async for message in requests:
                data = message.chunk
                written += len(data)
                if written > header.size:
                    raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"upload of {inside} is longer than its {header.size} bytes")
                await asyncio.to_thread(out.write, data)
            await asyncio.to_thread(out.close)
            stream = None
            info = await asyncio.to_thread(directory.finish_upload, header, partial, real,
                                           inside)
            return volumes_pb2.UploadResponse(file=info)
        except (Refused, errors.DoraError, NotReady, OSError) as exc:
            await self._fail(context, exc)
        finally:
            if stream is not None:
                stream.close()  # what arrived stays in the partial, to resume from
        raise AssertionError("unreachable")

    async def Download(self, request: volumes_pb2.DownloadRequest,
                       context: Context) -> AsyncIterator[volumes_pb2.DownloadChunk]:
        stream: BinaryIO | None = None
        try:
            directory = await self._dir(request.volume)
            source, info = await asyncio.to_thread(directory.open_download, request)
            stream = source
            yield volumes_pb2.DownloadChunk(file=info)
            while data := await asyncio.to_thread(source.read, CHUNK):
                yield volumes_pb2.DownloadChunk(data=data)
        except (Refused, errors.DoraError, NotReady, OSError) as exc:
            await self._fail(context, exc)
        finally:
            if stream is not None:
                stream.close()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpcservice.handler(
            volumes_pb2.DESCRIPTOR.services_by_name["AgentVolumeFiles"], self)
