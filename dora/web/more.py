"""The gateway's second round of routes: pause/resume, a workload's logs, the GPU and
CPU kinds, volume files, and tasks.

Each is a thin call of the apiserver with the user's own token, as in
``dora.web.app``: pause/resume is the Pausing service (verbs Pause, Resume), the
hardware kinds the Devices service (verb Get on GPU/CPU, which the seed role
grants every user, so the editor no longer needs to read Nodes), volume files
the VolumeFiles service (verbs Ls, Upload, Download) streamed both ways without
holding a file in memory, and a task's kill and retry the ``dora.api.tasks``
recipes ``doractl task`` runs too.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import posixpath
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import json_format
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from dora.api import codec, conventions, errors, tasks, volumes
from dora.api.client import WatchEvent
from dora.api.v1 import object_pb2, volumes_pb2
from dora.web import apply, streams
from dora.web.calls import scope_of, user_client

# The most one upload may carry through the gateway (the agent checks the size too).
MAX_UPLOAD = 64 * 1024**3


def _message(message: Any) -> dict[str, Any]:
    found: dict[str, Any] = json_format.MessageToDict(message)
    return found


# -- pause / resume --------------------------------------------------------------------------

def pause_route(kind: str, paused: bool) -> Any:
    async def handler(request: Request) -> Response:
        zone, workspace = scope_of(request)
        obj, changed = await user_client(request).set_paused(
            kind, request.path_params["name"], paused=paused, zone=zone, workspace=workspace)
        return JSONResponse({"object": codec.to_dict(obj), "containers": changed})

    return handler


# -- the logs of a whole workload ------------------------------------------------------------

# A container has output to read once it has started.
STARTED = frozenset({"Running", "Paused", "Exited", "Failed"})


async def workload_logs(request: Request) -> Response:
    """Every container of the workload at once, each line prefixed with its name:
    events ``log`` ``{"text", "container"}``. Without ``follow``, ``end`` once every
    started container's output is read; with it, the stream goes on, and a container
    that starts later (a replica added, one replaced) joins it, from a watch of the
    workload's containers opened at the list's version."""
    client = user_client(request)
    zone, workspace = scope_of(request)
    name = request.path_params["name"]
    follow = request.query_params.get("follow", "") in ("1", "true")
    tail = streams.tail_lines(request)
    await client.get("Workload", name, zone=zone, workspace=workspace)
    selector = f"{conventions.WORKLOAD_LABEL}={name}"
    found, version = await client.list("Container", zone=zone, workspace=workspace,
                                       label_selector=selector)

    async def events() -> AsyncIterator[ServerSentEvent]:
        queue: asyncio.Queue[ServerSentEvent | None] = asyncio.Queue(maxsize=256)
        readers: dict[str, asyncio.Task[None]] = {}

        async def one(container: str) -> None:
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            pending = ""

            def event(text: str) -> ServerSentEvent:
                return ServerSentEvent(event="log", data=json.dumps(
                    {"text": text, "container": container}))

            try:
                async for chunk in client.logs(container, zone=zone, workspace=workspace,
                                               follow=follow, tail_lines=tail):
                    pending += decoder.decode(chunk)
                    *lines, pending = pending.split("\n")
                    if lines:
                        await queue.put(event("".join(f"[{container}] {line}\n"
                                                      for line in lines)))
                if pending:
                    await queue.put(event(f"[{container}] {pending}\n"))
            except errors.DoraError as exc:
                await queue.put(event(f"[{container}] ({exc.message})\n"))
            finally:
                await queue.put(None)

        def start(container: object_pb2.Object) -> None:
            key = container.metadata.name
            if key not in readers and container.container.status.phase in STARTED:
                readers[key] = asyncio.create_task(one(key))

        async def joining() -> None:
            async for change in client.watch("Container", zone=zone, workspace=workspace,
                                             label_selector=selector,
                                             resource_version=version):
                if change.type in (WatchEvent.ADDED, WatchEvent.MODIFIED):
                    start(change.object)

        for container in sorted(found, key=lambda c: c.metadata.name):
            start(container)
        watcher = asyncio.create_task(joining()) if follow else None
        try:
            ended = 0
            while follow or ended < len(readers):
                item = await queue.get()
                if item is None:
                    ended += 1
                else:
                    yield item
            yield ServerSentEvent(event="end", data=json.dumps({"containers": sorted(readers)}))
        finally:
            tasks_left = [*readers.values(), *([watcher] if watcher else [])]
            for task in tasks_left:
                task.cancel()
            for task in tasks_left:
                with contextlib.suppress(BaseException):
                    await task

    return EventSourceResponse(events(), ping=streams.PING_SECONDS,
                               headers={"Cache-Control": "no-store"})


# -- the GPU and CPU kinds -------------------------------------------------------------------

async def devices(request: Request) -> Response:
    """``GET devices/{kind}``: the GPUs or CPUs of the zone's nodes, and their products."""
    kind = request.path_params["kind"].upper()
    if kind not in ("GPU", "CPU"):
        raise errors.Invalid("expected GPU or CPU", field="kind")
    zone, _ = scope_of(request)
    found = await user_client(request).list_devices(kind, zone=zone)
    products = sorted({d.product_name for d in found.items if d.product_name})
    return JSONResponse({"zone": found.zone, "products": products,
                         "items": [_message(d) for d in found.items]})


# -- volume files ----------------------------------------------------------------------------

def _target(request: Request) -> volumes_pb2.VolumeTarget:
    zone, workspace = scope_of(request)
    return volumes_pb2.VolumeTarget(zone=zone, workspace=workspace,
                                    name=request.path_params["name"])


def _file_info(info: volumes_pb2.FileInfo) -> dict[str, Any]:
    return {"path": info.path, "name": posixpath.basename(info.path), "isDir": info.is_dir,
            "size": info.size, "mtimeNs": info.mtime_ns, "mode": info.mode,
            "sha256": info.sha256}


async def volume_ls(request: Request) -> Response:
    """``GET volumes/{name}/ls?path=``: the entries of a folder (or the one file)."""
    path = volumes.clean(request.query_params.get("path", ""), field="path")
    found = await user_client(request).volume_files().list(_target(request), path)
    return JSONResponse({"path": path, "exists": found.exists,
                         "files": [_file_info(f) for f in found.files],
                         "partialSize": found.partial_size})


def _file_path(request: Request) -> str:
    path = volumes.clean(request.path_params["path"], field="path")
    if not path:
        raise errors.Invalid("name a file, not the volume's root", field="path")
    return path


async def volume_upload(request: Request) -> Response:
    """``PUT volumes/{name}/files/{path}``: the raw body is the file, streamed on to
    the agent; ``Content-Length`` is required (the agent checks the size), and
    ``X-Content-SHA256`` too when sent.

    Resumable: a dropped connection leaves the bytes received so far in the volume
    (``ls?path=FILE`` answers them as ``partialSize``); ``X-Upload-Offset: N`` then
    sends only the rest (the body is the file from byte N; its sha256 is required,
    so the agent checks the joined file as a whole)."""
    path = _file_path(request)
    raw = request.headers.get("content-length", "")
    if not raw.isdigit():
        raise errors.Invalid("send the file as the raw body, with its Content-Length",
                             field="Content-Length")
    offset_text = request.headers.get("x-upload-offset", "0")
    if not offset_text.isdigit():
        raise errors.Invalid("expected the byte the body starts at", field="X-Upload-Offset")
    offset = int(offset_text)
    size = offset + int(raw)
    if size > MAX_UPLOAD:
        raise errors.Invalid(f"at most {MAX_UPLOAD} bytes", field="Content-Length")
    digest = request.headers.get("x-content-sha256", "").lower()
    if digest and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        raise errors.Invalid("expected a hex sha256", field="X-Content-SHA256")
    if offset and not digest:
        raise errors.Invalid("a resumed upload needs the whole file's sha256",
                             field="X-Content-SHA256")
    info = await user_client(request).volume_files().upload_stream(
        _target(request), path, request.stream(), size=size, digest=digest, offset=offset)
    return JSONResponse({"file": _file_info(info)})


async def volume_download(request: Request) -> Response:
    """``GET volumes/{name}/files/{path}``: the file, streamed as the agent sends it."""
    path = _file_path(request)
    info, data = await user_client(request).volume_files().download_stream(
        _target(request), path)
    if info.is_dir:
        with contextlib.suppress(BaseException):
            await data.aclose()  # type: ignore[attr-defined]
        raise errors.Invalid(f"{path} is a folder; download its files", field="path")
    filename = posixpath.basename(path).replace('"', "")
    return StreamingResponse(data, media_type="application/octet-stream", headers={
        "Content-Length": str(info.size), "X-Content-SHA256": info.sha256,
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store"})


# -- tasks -----------------------------------------------------------------------------------

async def task_jobs(request: Request) -> Response:
    """``GET tasks/{name}/jobs``: the job table unpacked from the task's status."""
    zone, workspace = scope_of(request)
    task = await user_client(request).get("Task", request.path_params["name"], zone=zone,
                                          workspace=workspace)
    return JSONResponse({"object": codec.to_dict(task), "jobs": [
        {"index": j.index, "file": j.file, "state": j.state, "attempts": j.attempts,
         "failures": j.failures, "container": j.container} for j in tasks.job_table(task)]})


def task_route(mutate: tasks.TaskMutation) -> Any:
    async def handler(request: Request) -> Response:
        zone, workspace = scope_of(request)
        obj, result = await tasks.update_spec(user_client(request),
                                              request.path_params["name"], mutate,
                                              zone=zone, workspace=workspace)
        return JSONResponse({"object": codec.to_dict(obj),
                             "result": apply.RESULT_WORDS.get(result, "applied")})

    return handler

