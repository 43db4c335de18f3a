"""The live parts: watches and logs as Server-Sent Events, exec over a WebSocket.

A watch stream's event ``id`` is the resourceVersion it brings the page to, so a
page that reconnects sends it back as ``Last-Event-ID`` and the watch resumes
right after it: nothing lost, nothing twice. Bookmarks are passed on (event
``bookmark``) so that the resume point moves on while nothing changes. When the
version is too old to resume from (the apiserver answers OUT_OF_RANGE), the page
gets a ``reset`` event and lists again. Events replayed from version 0 carry no
``id`` until the bookmark that ends the replay: they are no point to resume from.

Exec: the browser cannot put a token in a WebSocket handshake's headers and it
must not go in the URL, so the first message on the socket is a JSON text frame
``{"token", "command", "rows", "cols"}``. Then binary frames are the terminal's
input, text frames are JSON control messages (``{"resize": {"rows", "cols"}}``,
``{"eof": true}``); the gateway sends the output as binary frames and, last, a
text frame ``{"exit": code}`` (or ``{"error": {...}}``) before closing.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.websockets import WebSocket, WebSocketDisconnect

from dora.api import codec, errors, kinds
from dora.api.client import Client, WatchEvent
from dora.web import http, security

PING_SECONDS = 15
_TYPES = {WatchEvent.ADDED: "added", WatchEvent.MODIFIED: "modified",
          WatchEvent.DELETED: "deleted"}


def resume_version(request: Request) -> int:
    """Where to start: ``Last-Event-ID`` (a reconnect) before ``?resourceVersion``."""
    raw = request.headers.get("last-event-id") or request.query_params.get("resourceVersion")
    if not raw:
        return 0
    try:
        version = int(raw)
    except ValueError:
        raise errors.Invalid("expected a resourceVersion (an integer)",
                             field="resourceVersion") from None
    if version < 0:
        raise errors.Invalid("must be 0 or more", field="resourceVersion")
    return version


async def watch(request: Request, client: Client, kind: kinds.Kind, *, zone: str,
                workspace: str, label_selector: str) -> EventSourceResponse:
    version = resume_version(request)
    # The watch call reports a refusal only once its stream is read; ask first, so
    # that a bad token or a missing permission is an HTTP status, not an event.
    await client.list_page(kind.name, zone=zone, workspace=workspace,
                           label_selector=label_selector, limit=1)

    async def events() -> AsyncIterator[ServerSentEvent]:
        synced = version != 0
        try:
            async for event in client.watch(kind.name, zone=zone, workspace=workspace,
                                            label_selector=label_selector,
                                            resource_version=version, bookmarks=True):
                rv = event.object.metadata.resource_version
                if event.type == WatchEvent.BOOKMARK:
                    synced = True
                    yield ServerSentEvent(event="bookmark", id=str(rv),
                                          data=json.dumps({"resourceVersion": rv}))
                    continue
                data = json.dumps({"type": _TYPES.get(event.type, "modified"),
                                   "object": codec.to_dict(event.object)})
                yield ServerSentEvent(event=_TYPES.get(event.type, "modified"),
                                      id=str(rv) if synced else None, data=data)
        except errors.Gone as exc:
            yield ServerSentEvent(event="reset", data=json.dumps(http.error_body(exc)))
        except errors.DoraError as exc:
            yield ServerSentEvent(event="error", data=json.dumps(http.error_body(exc)))

    return EventSourceResponse(events(), ping=PING_SECONDS,
                               headers={"Cache-Control": "no-store"})


async def logs(client: Client, name: str, *, zone: str, workspace: str, follow: bool,
               tail_lines: int | None) -> EventSourceResponse:
    async def events() -> AsyncIterator[ServerSentEvent]:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            async for chunk in client.logs(name, zone=zone, workspace=workspace,
                                           follow=follow, tail_lines=tail_lines):
                text = decoder.decode(chunk)
                if text:
                    yield ServerSentEvent(event="log", data=json.dumps({"text": text}))
            yield ServerSentEvent(event="end", data="{}")
        except errors.DoraError as exc:
            yield ServerSentEvent(event="error", data=json.dumps(http.error_body(exc)))

    return EventSourceResponse(events(), ping=PING_SECONDS,
                               headers={"Cache-Control": "no-store"})


def tail_lines(request: Request) -> int | None:
    """``?tailLines=N``: the last N lines only; none: all."""
    raw = request.query_params.get("tailLines", "")
    if raw and not raw.isdigit():
        raise errors.Invalid("expected an integer", field="tailLines")
    return int(raw) if raw else None


def _size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10000:
        raise errors.Invalid("expected an integer from 0 to 10000", field=what)
    return value


async def exec_socket(websocket: WebSocket, shared: Client) -> None:
    name = websocket.path_params["name"]
    zone = websocket.query_params.get("zone", "")
    workspace = websocket.query_params.get("workspace", "")
    await websocket.accept()
    try:
        try:
            async with asyncio.timeout(30):
                hello = json.loads(await websocket.receive_text())
            if not isinstance(hello, dict):
                raise errors.Invalid("the first message must be a JSON object")
            token = security.bearer_token(f"Bearer {hello.get('token', '')}")
            command = hello.get("command") or ["/bin/sh"]
            if not isinstance(command, list) or not all(
                    isinstance(c, str) and c for c in command):
                raise errors.Invalid("expected a list of words", field="command")
            rows = _size(hello.get("rows", 0), "rows")
            cols = _size(hello.get("cols", 0), "cols")
        except (ValueError, TypeError, TimeoutError):
            raise errors.Invalid("the first message must be JSON: "
                                 '{"token", "command", "rows", "cols"}') from None
        client = shared.with_token(token)
        async with client.exec(name, command, zone=zone, workspace=workspace, tty=True,
                               stdin=True, rows=rows, cols=cols) as session:
            output = asyncio.create_task(_output(websocket, session))
            pump = asyncio.create_task(_input(websocket, session))
            done, _ = await asyncio.wait({output, pump}, return_when=asyncio.FIRST_COMPLETED)
            if output not in done:
                # The page went away: leaving the block ends the exec call.
                output.cancel()
                with contextlib.suppress(BaseException):
                    await output
                return
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
            output.result()
            await websocket.send_text(json.dumps({"exit": session.exit_code}))
        await websocket.close(1000)
    except WebSocketDisconnect:
        return
    except errors.DoraError as exc:
        with contextlib.suppress(Exception):
            await websocket.send_text(json.dumps(http.error_body(exc)))
            await websocket.close(1011 if isinstance(exc, errors.Unavailable) else 1008)


async def _output(websocket: WebSocket, session: Any) -> None:
    async for _, data in session.output():
        await websocket.send_bytes(data)


async def _input(websocket: WebSocket, session: Any) -> None:
    """The terminal's keys and control messages, to the exec stream."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is not None:
            await session.send(data)
            continue
        text = message.get("text")
        if not text:
            continue
        with contextlib.suppress(ValueError, TypeError, KeyError, errors.Invalid):
            control = json.loads(text)
            if "resize" in control:
                size = control["resize"]
                await session.resize(rows=_size(size["rows"], "rows"),
                                     cols=_size(size["cols"], "cols"))
            elif control.get("eof"):
                await session.close_stdin()
