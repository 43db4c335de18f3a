"""``Client``: the SDK for scripts and notebooks, the ``AsyncClient``'s methods
without ``await``.

The async client runs on a private event loop in a daemon thread of its own;
each call is handed to that loop and waited for. So a call works the same in a
plain script and in a thread whose own loop is running (Jupyter, an async web
handler calling a library), where ``asyncio.run`` would refuse. Iterators
(``watch``, ``logs(follow=True)``) fetch one item at a time from the loop;
leaving the loop over them (``break``, an exception) closes the stream.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

from dora.api import profiles
from dora.api.v1 import object_pb2, tokens_pb2
from dora.sdk import resources
from dora.sdk.aio import TASK_ENDS, AsyncClient, connection_from_profile
from dora.sdk.resources import Applied, Event, ExecResult, Job, Manifest, Resource, Synced

T = TypeVar("T")


class Client:
    """A connection to Dora. ``Client(server="host:3000", token=...)`` or
    ``Client.from_profile()`` (doractl's profile); ``with Client(...) as c`` or
    ``close()``. ``.aio`` is the ``AsyncClient`` underneath."""

    def __init__(self, server: str | None = None, *, token: str | None = None,
                 zone: str = "", workspace: str = "", ca: str = "", timeout: float = 30.0,
                 connection: profiles.Connection | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="dora-client", daemon=True)
        self._thread.start()

        async def make() -> AsyncClient:
            return AsyncClient(server, token=token, zone=zone, workspace=workspace, ca=ca,
                               timeout=timeout, connection=connection)

        try:
            self.aio = self._run(make())
        except BaseException:
            self._stop_loop()
            raise
        self._closed = False

    @classmethod
    def from_profile(cls, context: str | None = None, *, config: str | Path | None = None,
                     zone: str | None = None, workspace: str | None = None,
                     timeout: float = 30.0) -> Client:
        """A client for ``context`` of doractl's profile file (``$DORA_CONFIG`` or
        ``~/.dora/config.yaml``; default: ``$DORA_CONTEXT`` or the current context),
        with ``$DORA_SERVER`` and ``$DORA_TOKEN`` taking precedence as for doractl."""
        return cls(connection=connection_from_profile(context, config=config, zone=zone,
                                                      workspace=workspace),
                   timeout=timeout)

    @property
    def connection(self) -> profiles.Connection:
        return self.aio.connection

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a dora.Client call from inside its own event loop; "
                               "use client.aio there")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C (or any exit) while waiting: the call must not go on by itself.
            future.cancel()
            raise

    def _iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> T:
            return await anext(iterator)

        try:
            while True:
                try:
                    yield self._run(step())
                except StopAsyncIteration:
                    return
        finally:
            close: Callable[[], Coroutine[Any, Any, None]] | None = getattr(
                iterator, "aclose", None)
            if close is not None and not self._loop.is_closed():
                # A step cancelled by Ctrl-C may still be unwinding: then the stream
                # closes with it.
                with contextlib.suppress(RuntimeError):
                    self._run(close())

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        try:
            self._run(self.aio.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<dora.Client {self.connection.endpoint}>"

    # The AsyncClient's methods, one for one; their docstrings say what they do.

    @overload
    def apply(self, manifest: str, *, dry_run: bool = False) -> builtins.list[Applied]: ...

    @overload
    def apply(self, manifest: resources.Workload | resources.Task | Resource
              | object_pb2.Object | dict[str, Any], *, dry_run: bool = False) -> Applied: ...

    def apply(self, manifest: Manifest, *,
              dry_run: bool = False) -> Applied | builtins.list[Applied]:
        """Create or update: YAML text (every document; a list back), or one object
        (a dict, a ``Workload``, a ``Resource``, an ``Object``)."""
        return self._run(self.aio.apply(manifest, dry_run=dry_run))  # type: ignore[arg-type]

    def get(self, kind: str, name: str, *, zone: str | None = None,
            workspace: str | None = None) -> Resource:
        return self._run(self.aio.get(kind, name, zone=zone, workspace=workspace))

    def list(self, kind: str, selector: str = "", *, zone: str | None = None,
             workspace: str | None = None, all_scopes: bool = False) -> builtins.list[Resource]:
        return self._run(self.aio.list(kind, selector, zone=zone, workspace=workspace,
                                       all_scopes=all_scopes))

    def delete(self, kind: str, name: str, *, zone: str | None = None,
               workspace: str | None = None, wait: bool = True,
               timeout: float | None = 60.0) -> None:
        self._run(self.aio.delete(kind, name, zone=zone, workspace=workspace, wait=wait,
                                  timeout=timeout))

    def watch(self, kind: str, selector: str = "", *, name: str | None = None,
              zone: str | None = None, workspace: str | None = None,
              resource_version: int = 0) -> Iterator[Event]:
        return self._iterate(self.aio.watch(kind, selector, name=name, zone=zone,
                                            workspace=workspace,
                                            resource_version=resource_version))

    def wait(self, kind: str, name: str, for_: str = "phase=Running", *,
             zone: str | None = None, workspace: str | None = None,
             timeout: float | None = 60.0) -> Resource | None:
        return self._run(self.aio.wait(kind, name, for_, zone=zone, workspace=workspace,
                                       timeout=timeout))

    def scale(self, workload: str, replicas: int, *, zone: str | None = None,
              workspace: str | None = None) -> Resource:
        return self._run(self.aio.scale(workload, replicas, zone=zone, workspace=workspace))

    def stop(self, workload: str, *, zone: str | None = None,
             workspace: str | None = None) -> Resource:
        return self._run(self.aio.stop(workload, zone=zone, workspace=workspace))

    def start(self, workload: str, *, zone: str | None = None,
              workspace: str | None = None) -> Resource:
        return self._run(self.aio.start(workload, zone=zone, workspace=workspace))

    def submit_task(self, task: resources.Task | Resource | object_pb2.Object
                    | dict[str, Any], *, dry_run: bool = False) -> Resource:
        return self._run(self.aio.submit_task(task, dry_run=dry_run))

    def wait_task(self, name: str, state: str | Sequence[str] = TASK_ENDS, *,
                  zone: str | None = None, workspace: str | None = None,
                  timeout: float | None = None) -> Resource:
        return self._run(self.aio.wait_task(name, state, zone=zone, workspace=workspace,
                                            timeout=timeout))

    def jobs(self, task: str | Resource, *, zone: str | None = None,
             workspace: str | None = None) -> builtins.list[Job]:
        return self._run(self.aio.jobs(task, zone=zone, workspace=workspace))

    def exec(self, container: str, argv: Sequence[str], *, stdin: bytes | str | None = None,
             zone: str | None = None, workspace: str | None = None) -> ExecResult:
        return self._run(self.aio.exec(container, argv, stdin=stdin, zone=zone,
                                       workspace=workspace))

    def logs(self, container: str, *, follow: bool = False, tail: int | None = None,
             zone: str | None = None, workspace: str | None = None) -> Iterator[str]:
        return self._iterate(self.aio.logs(container, follow=follow, tail=tail, zone=zone,
                                           workspace=workspace))

    def upload(self, volume: str, local: str | Path, path: str = "", *,
               zone: str | None = None, workspace: str | None = None,
               progress: Callable[[int], None] | None = None) -> builtins.list[str]:
        return self._run(self.aio.upload(volume, local, path, zone=zone, workspace=workspace,
                                         progress=progress))

    def download(self, volume: str, path: str, local: str | Path, *, zone: str | None = None,
                 workspace: str | None = None) -> Path:
        return self._run(self.aio.download(volume, path, local, zone=zone,
                                           workspace=workspace))

    def files(self, volume: str, path: str = "", *, zone: str | None = None,
              workspace: str | None = None) -> builtins.list[str]:
        return self._run(self.aio.files(volume, path, zone=zone, workspace=workspace))

    def sync(self, local: str | Path, volume: str, path: str = "", *, prune: bool = False,
             follow: bool = False, interval: float = 0.5, zone: str | None = None,
             workspace: str | None = None,
             on_change: Callable[[Synced], None] | None = None) -> Synced:
        return self._run(self.aio.sync(local, volume, path, prune=prune, follow=follow,
                                       interval=interval, zone=zone, workspace=workspace,
                                       on_change=on_change))

    def whoami(self) -> tokens_pb2.WhoAmIResponse:
        return self._run(self.aio.whoami())
