"""Docker's log streams and exec sessions, off the event loop.

``docker_driver`` makes short calls with a read timeout; the streams here last
as long as a user watches (``logs -f``, an idle shell), so they use their own
docker-py client without timeout, and each open stream reads in a thread of its
own: a few hundred open shells never starve the threads the reconcile loop
needs. A reading thread hands data to the event loop through a bounded queue
(a slow client slows the reading, it does not fill memory) and ends when the
stream ends or when the consumer goes away (the socket is shut down under it).

Only Docker containers labelled with this agent's node name (``dora.node``) are
served: the apiserver names a Docker id it resolved from the Container, and the
agent checks it is one of its own before touching it.

Exec is Docker's low-level API: ``exec_create``, ``exec_start(socket=True)``
(a hijacked connection: stdin written to it, output read from it, multiplexed
into stdout/stderr frames unless there is a TTY), ``exec_resize``, and
``exec_inspect`` for the exit code once the output has ended.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import docker
import docker.errors
import docker.utils.socket
import requests

from dora.agent import dockerspec

log = logging.getLogger(__name__)

STDOUT, STDERR = 1, 2
_QUEUED = 16
# How long after its output ends an exec may still count as running in Docker.
_EXIT_WAIT = 10.0


class StreamError(Exception):
    """A stream cannot be served; ``kind`` says why (a gRPC servicer maps it)."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind  # "not-found", "not-running", "unavailable", "invalid"


def _explain(exc: Exception) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc) or type(exc).__name__


class _Done:
    """The end of a thread's output; ``error`` if it ended badly."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def _pump(produce: Callable[[], Iterator[Any]], *, loop: asyncio.AbstractEventLoop,
          queue: asyncio.Queue[Any], stopped: threading.Event, name: str) -> None:
    """Run ``produce`` in a thread of its own, putting its items on ``queue``."""

    def put(item: Any) -> bool:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while True:
            try:
                future.result(timeout=0.5)
                return True
            except concurrent.futures.TimeoutError:
                if stopped.is_set():
                    future.cancel()
                    return False
            except (concurrent.futures.CancelledError, RuntimeError):
                return False

    def run() -> None:
        try:
            for item in produce():
                if stopped.is_set() or not put(item):
                    return
        except BaseException as exc:  # handed to the event loop, which reports it
            if not stopped.is_set():
                put(_Done(exc))
            return
        put(_Done())

    threading.Thread(target=run, name=name, daemon=True).start()


@dataclass(frozen=True)
class TerminalSize:
    rows: int
    cols: int


class ExecSession:
    """One command started in a container: write stdin, resize, read output, exit code."""

    def __init__(self, *, api: Any, exec_id: str, sock: Any, tty: bool, stdin: bool) -> None:
        self._api = api
        self.exec_id = exec_id
        self._sock = sock
        # The socket under docker-py's wrapper: written to, and shut down to stop.
        self._raw: socket.socket = getattr(sock, "_sock", sock)
        self.tty = tty
        self.stdin = stdin
        self._stopped = threading.Event()
        self._stdin_closed = False
        self._write_lock = asyncio.Lock()

    async def write(self, data: bytes) -> None:
        if not self.stdin or self._stdin_closed or not data:
            return
        async with self._write_lock:
            try:
                await anyio.to_thread.run_sync(self._raw.sendall, data)
            except OSError as exc:  # the command closed its stdin or exited
                log.debug("exec %s: stdin write failed: %s", self.exec_id[:12], exc)
                self._stdin_closed = True

    async def close_stdin(self) -> None:
        if not self.stdin or self._stdin_closed:
            return
        self._stdin_closed = True
        async with self._write_lock:
            with contextlib.suppress(OSError):
                self._raw.shutdown(socket.SHUT_WR)

    async def resize(self, size: TerminalSize) -> None:
        if not self.tty or size.rows <= 0 or size.cols <= 0:
            return
        try:
            await anyio.to_thread.run_sync(
                lambda: self._api.exec_resize(self.exec_id, height=size.rows, width=size.cols)
            )
        except (docker.errors.APIError, requests.RequestException) as exc:
            # The command may have exited between the input and the resize.
            log.debug("exec %s: resize failed: %s", self.exec_id[:12], _explain(exc))

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """(STDOUT or STDERR, bytes) until the command's output ends."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=_QUEUED)

        def frames() -> Iterator[tuple[int, bytes]]:
            for stream, data in docker.utils.socket.frames_iter(self._sock, self.tty):
                if data:
                    yield stream, data

        _pump(frames, loop=loop, queue=queue, stopped=self._stopped,
              name=f"exec-{self.exec_id[:12]}")
        while True:
            item = await queue.get()
            if isinstance(item, _Done):
                if item.error is not None and not isinstance(item.error, OSError):
                    raise StreamError(f"exec output: {_explain(item.error)}",  # type: ignore[arg-type]
                                      kind="unavailable") from item.error
                return
            yield item

    async def exit_code(self) -> int:
        """The command's exit code, once Docker counts it as exited."""
        deadline = asyncio.get_running_loop().time() + _EXIT_WAIT
        while True:
            try:
                info = await anyio.to_thread.run_sync(self._api.exec_inspect, self.exec_id)
            except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
                raise StreamError(f"exec {self.exec_id[:12]}: no exit code from Docker: "
                                  f"{_explain(exc)}", kind="unavailable") from exc
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if asyncio.get_running_loop().time() > deadline:
                raise StreamError(f"exec {self.exec_id[:12]}: its output ended but Docker "
                                  "still counts it as running", kind="unavailable")
            await asyncio.sleep(0.02)

    def close(self) -> None:
        """Stop reading and drop the connection (the command gets EOF / hang-up)."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._raw.shutdown(socket.SHUT_RDWR)
        for closeable in (self._sock, self._raw, getattr(self._sock, "_response", None)):
            with contextlib.suppress(Exception):
                if closeable is not None:
                    closeable.close()


class DockerStreams:
    """Logs and exec of the node's Docker containers, for ``dora.agent.streams``."""

    def __init__(self, *, node: str, host: str) -> None:
        self.node = node
        self.host = host
        self._lock = threading.Lock()
        self._api: Any = None

    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                if self.host.startswith("unix://") and not os.path.exists(
                    self.host[len("unix://"):]
                ):
                    raise StreamError(f"cannot reach the Docker engine at {self.host}: "
                                      "no such socket", kind="unavailable")
                self._api = docker.APIClient(base_url=self.host, version="auto", timeout=None)
            return self._api

    async def _call(self, fn: Callable[[], Any]) -> Any:
        def guarded() -> Any:
            try:
                return fn()
            except StreamError:
                raise
            except docker.errors.NotFound as exc:
                raise StreamError(_explain(exc), kind="not-found") from exc
            except docker.errors.APIError as exc:
                kind = "not-running" if exc.status_code == 409 else "unavailable"
                raise StreamError(_explain(exc), kind=kind) from exc
            except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
                raise StreamError(f"Docker engine at {self.host}: {_explain(exc)}",
                                  kind="unavailable") from exc

        return await anyio.to_thread.run_sync(guarded)

    async def owned(self, docker_id: str) -> dict[str, Any]:
        """``docker inspect`` of ``docker_id`` if it is one of this node's containers."""
        if not docker_id:
            raise StreamError("docker_id: empty", kind="invalid")
        try:
            attrs: dict[str, Any] = await self._call(
                lambda: self._client().inspect_container(docker_id)
            )
        except StreamError as exc:
            if exc.kind == "not-found":
                raise StreamError(f"docker container {docker_id[:12]} is not on this node",
                                  kind="not-found") from None
            raise
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        if labels.get(dockerspec.LABEL_NODE) != self.node:
            # Not ours (another agent's, or nobody's): to the caller it does not exist.
            log.warning("refused a stream of docker container %s: not labelled %s=%s",
                        docker_id[:12], dockerspec.LABEL_NODE, self.node)
            raise StreamError(f"docker container {docker_id[:12]} is not on this node",
                              kind="not-found")
        return attrs

    async def logs(self, docker_id: str, *, follow: bool, tail: int | None,
                   timestamps: bool) -> AsyncIterator[bytes]:
        attrs = await self.owned(docker_id)
        full_id = str(attrs["Id"])
        stream = await self._call(lambda: self._client().logs(
            full_id, stream=True, follow=follow, timestamps=timestamps,
            tail="all" if tail is None else max(tail, 0),
        ))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=_QUEUED)
        stopped = threading.Event()
        _pump(lambda: iter(stream), loop=loop, queue=queue, stopped=stopped,
              name=f"logs-{full_id[:12]}")
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Done):
                    if item.error is not None:
                        raise StreamError(f"logs of {full_id[:12]}: {_explain(item.error)}",  # type: ignore[arg-type]
                                          kind="unavailable") from item.error
                    return
                yield item
        finally:
            stopped.set()
            with contextlib.suppress(Exception):
                stream.close()  # wakes the reading thread, which then ends

    async def exec(self, docker_id: str, command: list[str], *, tty: bool, stdin: bool,
                   size: TerminalSize | None) -> ExecSession:
        attrs = await self.owned(docker_id)
        full_id = str(attrs["Id"])
        if not (attrs.get("State") or {}).get("Running"):
            raise StreamError(f"docker container {full_id[:12]} is not running",
                              kind="not-running")
        api = await self._call(self._client)  # the first one asks Docker its API version
        created = await self._call(lambda: api.exec_create(
            full_id, command, stdin=stdin, stdout=True, stderr=True, tty=tty,
        ))
        exec_id = str(created["Id"])
        sock = await self._call(lambda: api.exec_start(exec_id, tty=tty, socket=True))
        session = ExecSession(api=api, exec_id=exec_id, sock=sock, tty=tty, stdin=stdin)
        if size is not None:
            await session.resize(size)
        log.info("exec %s in %s: %s%s", exec_id[:12], full_id[:12], command[0],
                 " (tty)" if tty else "")
        return session

    def close(self) -> None:
        with self._lock:
            api, self._api = self._api, None
        if api is not None:
            api.close()
