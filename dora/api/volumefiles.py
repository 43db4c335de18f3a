"""Moving files in and out of a Volume through the apiserver (``VolumeFiles``).

``Client.volume_files()`` hands out a ``VolumeFiles``; ``doractl volume`` and
``doractl sync`` are built on it. Every transfer is checked end to end with the
whole file's sha256 and can resume:

- an upload first asks the agent for the bytes of an interrupted upload of the
  same path (``partial_size``) and, when there are some, sends only the rest;
  the agent checks size and sha256 of the whole file before it replaces the
  old one, so a resume onto a different file's partial is caught, dropped and
  retried from byte 0;
- a download writes ``<file>.dora-partial`` beside the local file and continues
  it on the next try; the sha256 the agent announces first is checked before
  the partial is renamed over the file.

Files are read and written in a thread (1 MiB chunks), never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from dora.api import errors
from dora.api.v1 import volumes_pb2, volumes_pb2_grpc

CHUNK = 1024 * 1024
PARTIAL_SUFFIX = ".dora-partial"
Progress = Callable[[int], None]
Target = volumes_pb2.VolumeTarget


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as stream:
        while block := stream.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class VolumeFiles:
    def __init__(self, *, stub: volumes_pb2_grpc.VolumeFilesStub,
                 metadata: tuple[tuple[str, str], ...], timeout: float) -> None:
        self._stub = stub
        self._metadata = metadata
        self._timeout = timeout

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise errors.from_rpc_error(exc) from None

    async def list(self, volume: Target, path: str = "", *, recursive: bool = False,
                   checksums: bool = False, sync: bool = False) -> volumes_pb2.ListFilesResponse:
        request = volumes_pb2.ListFilesRequest(volume=volume, path=path, recursive=recursive,
                                               checksums=checksums, sync=sync)
        response: volumes_pb2.ListFilesResponse = await self._call(self._stub.List, request)
        return response

    async def delete(self, volume: Target, paths: Sequence[str], *, recursive: bool = False,
                     sync: bool = False) -> int:
        request = volumes_pb2.DeleteFilesRequest(volume=volume, paths=list(paths),
                                                 recursive=recursive, sync=sync)
        response = await self._call(self._stub.Delete, request)
        return int(response.deleted)

    async def upload(self, volume: Target, path: str, local: Path, *, sync: bool = False,
                     resume: bool = True, progress: Progress | None = None,
                     digest: str = "") -> volumes_pb2.FileInfo:
        """Send ``local`` to ``path`` in the volume; ``progress`` gets each chunk's size
        (and, on a resume, the bytes already there at once)."""
        st = await asyncio.to_thread(local.stat)
        digest = digest or await asyncio.to_thread(file_sha256, local)
        offset = 0
        if resume:
            partial = (await self.list(volume, path, sync=sync)).partial_size
            offset = partial if 0 < partial <= st.st_size else 0
        try:
            return await self._upload(volume, path, local, size=st.st_size, digest=digest,
                                      offset=offset, mode=st.st_mode & 0o777,
                                      mtime_ns=st.st_mtime_ns, sync=sync, progress=progress)
        except errors.DoraError:
            if not offset:
                raise
        # The partial was not a prefix of this file: start over once.
        return await self._upload(volume, path, local, size=st.st_size, digest=digest,
                                  offset=0, mode=st.st_mode & 0o777, mtime_ns=st.st_mtime_ns,
                                  sync=sync, progress=progress)

    async def _upload(self, volume: Target, path: str, local: Path, *, size: int, digest: str,
                      offset: int, mode: int, mtime_ns: int, sync: bool,
                      progress: Progress | None) -> volumes_pb2.FileInfo:
        header = volumes_pb2.UploadHeader(volume=volume, path=path, size=size, sha256=digest,
                                          offset=offset, mode=mode, mtime_ns=mtime_ns,
                                          sync=sync)
        if progress is not None and offset:
            progress(offset)

        async def messages() -> AsyncIterator[volumes_pb2.UploadRequest]:
            yield volumes_pb2.UploadRequest(header=header)
            stream = await asyncio.to_thread(local.open, "rb")
            try:
                await asyncio.to_thread(stream.seek, offset)
                while data := await asyncio.to_thread(stream.read, CHUNK):
                    yield volumes_pb2.UploadRequest(chunk=data)
                    if progress is not None:
                        progress(len(data))
            finally:
                stream.close()

        upload: Any = self._stub.Upload
        try:
            response = await upload(messages(), metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise errors.from_rpc_error(exc) from None
        info: volumes_pb2.FileInfo = response.file
        return info

    async def download(self, volume: Target, path: str, local: Path, *, resume: bool = True,
                       progress: Progress | None = None) -> volumes_pb2.FileInfo:
        """Fetch ``path`` into ``local`` (its directory is made); checked with sha256."""
        partial = local.with_name(local.name + PARTIAL_SUFFIX)
        await asyncio.to_thread(local.parent.mkdir, parents=True, exist_ok=True)
        offset = 0
        if resume and await asyncio.to_thread(partial.is_file):
            offset = (await asyncio.to_thread(partial.stat)).st_size
        request = volumes_pb2.DownloadRequest(volume=volume, path=path, offset=offset)
        info: volumes_pb2.FileInfo | None = None
        stream = await asyncio.to_thread(partial.open, "ab" if offset else "wb")
        call: Any = self._stub.Download(request, metadata=self._metadata)
        try:
            async for chunk in call:
                if chunk.HasField("file"):
                    info = chunk.file
                    if progress is not None and offset:
                        progress(offset)
                if chunk.data:
                    await asyncio.to_thread(stream.write, chunk.data)
                    if progress is not None:
                        progress(len(chunk.data))
        except grpc.aio.AioRpcError as exc:
            error = errors.from_rpc_error(exc)
            if offset and "past the end" in error.message:
                stream.close()
                await asyncio.to_thread(partial.unlink)
                return await self.download(volume, path, local, resume=False,
                                           progress=progress)
            raise error from None
        finally:
            stream.close()
            call.cancel()
        if info is None:
            raise errors.Unavailable(f"the download of {path} ended before it began")
        digest = await asyncio.to_thread(file_sha256, partial)
        if digest != info.sha256:
            await asyncio.to_thread(partial.unlink)
            if offset:  # the partial was of another version of the file: once more
                return await self.download(volume, path, local, resume=False,
                                           progress=progress)
            raise errors.Unavailable(f"the download of {path} arrived damaged (sha256 "
                                     f"{digest}, expected {info.sha256}); try again")
        await asyncio.to_thread(os.replace, partial, local)
        if info.mtime_ns:
            await asyncio.to_thread(os.utime, local, ns=(info.mtime_ns, info.mtime_ns))
        return info

    async def upload_stream(self, volume: Target, path: str, chunks: AsyncIterator[bytes], *,
                            size: int, digest: str = "", offset: int = 0) -> volumes_pb2.FileInfo:
        """Send bytes arriving from elsewhere (``dora-web``'s request body) to ``path``:
        ``size`` is the whole file's, checked by the agent before the file is replaced
        (and ``digest``, the hex sha256, when given). With ``offset``, the bytes continue
        an interrupted upload of the same file (``list``'s ``partial_size``)."""
        header = volumes_pb2.UploadHeader(volume=volume, path=path, size=size, sha256=digest,
                                          offset=offset)

        async def messages() -> AsyncIterator[volumes_pb2.UploadRequest]:
            yield volumes_pb2.UploadRequest(header=header)
            async for data in chunks:
                for start in range(0, len(data), CHUNK):
                    yield volumes_pb2.UploadRequest(chunk=data[start:start + CHUNK])

        upload: Any = self._stub.Upload
        try:
            response = await upload(messages(), metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise errors.from_rpc_error(exc) from None
        info: volumes_pb2.FileInfo = response.file
        return info

    async def download_stream(
        self, volume: Target, path: str,
    ) -> tuple[volumes_pb2.FileInfo, AsyncIterator[bytes]]:
        """Open a download of ``path``: its FileInfo (size, sha256) once the agent has
        announced it, and its bytes as they come; the call ends with the iterator."""
        call: Any = self._stub.Download(volumes_pb2.DownloadRequest(volume=volume, path=path),
                                        metadata=self._metadata)
        chunks: AsyncIterator[volumes_pb2.DownloadChunk] = call.__aiter__()
        try:
            first = await anext(chunks)
        except grpc.aio.AioRpcError as exc:
            call.cancel()
            raise errors.from_rpc_error(exc) from None
        except StopAsyncIteration:
            first = volumes_pb2.DownloadChunk()
        if not first.HasField("file"):
            call.cancel()
            raise errors.Unavailable(f"the download of {path} ended before it began")
        info: volumes_pb2.FileInfo = first.file

        async def data() -> AsyncIterator[bytes]:
            try:
                if first.data:
                    yield first.data
                async for chunk in chunks:
                    if chunk.data:
                        yield chunk.data
            except grpc.aio.AioRpcError as exc:
                raise errors.from_rpc_error(exc) from None
            finally:
                call.cancel()

        return info, data()
