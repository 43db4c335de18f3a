"""The Docker engine, through docker-py, off the event loop.

docker-py blocks, so every call runs in the driver's own small thread pool (a
slow image pull never takes the threads the rest of the agent uses), and the
event loop only awaits. The engine is pinned to ``--docker-host`` (default
``unix:///var/run/docker.sock``) rather than whatever ``DOCKER_HOST`` says, and
the API version is negotiated (``auto``), so a new docker-py works with an old
engine. Pulls use a second client without a read timeout: a large layer can take
minutes.

Nothing outside this module sees docker-py: calls return ``Summary`` and
``dockerspec.Observed`` and raise ``EngineError`` (and its ``EngineUnavailable``
and ``ImageNotFound``), whose message is Docker's own explanation.

``Engine`` is the seam: the agent takes any object with these methods, and this
module's ``DockerDriver`` is the real one, tested against the real engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import docker
import docker.errors
import docker.types
import requests

from dora.agent import dockerspec
from dora.agent.dockerspec import DockerVolume, Observed, RunSpec
from dora.api.objects import Ref
from dora.observability import metrics

DEFAULT_HOST = "unix:///var/run/docker.sock"

T = TypeVar("T")


class EngineError(Exception):
    """Docker refused or failed a call; the message is Docker's explanation."""


class EngineUnavailable(EngineError):
    """The engine cannot be reached at all."""


class ImageNotFound(EngineError):
    """The image is not on the node (inspect, create) or not in its registry (pull)."""


@dataclass(frozen=True)
class Summary:
    """One line of ``docker ps -a``: enough to notice that something changed."""

    id: str
    labels: dict[str, str]
    state: str

    @property
    def key(self) -> Ref | None:
        return dockerspec.key_of(self.labels)

    @property
    def uid(self) -> str:
        return self.labels.get(dockerspec.LABEL_UID, "")


class Engine(Protocol):
    async def version(self) -> str: ...

    async def engine_id(self) -> str: ...

    async def list(self, *, node: str, key: Ref | None = None) -> list[Summary]: ...

    async def inspect(self, docker_id: str) -> Observed | None: ...

    async def image_present(self, image: str) -> bool: ...

    async def pull(self, image: str) -> None: ...

    async def ensure_volume(self, volume: DockerVolume) -> None: ...

    async def create(self, spec: RunSpec) -> str: ...

    async def start(self, docker_id: str) -> None: ...

    async def remove(self, docker_id: str, *, stop_timeout: float) -> None: ...

    async def pause(self, docker_id: str, *, paused: bool) -> None: ...

    async def close(self) -> None: ...


def _explain(exc: Exception) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc) or type(exc).__name__


class DockerDriver:
    def __init__(self, *, host: str = DEFAULT_HOST, timeout: float = 60.0,
                 workers: int = 8) -> None:
        self.host = host
        self.timeout = timeout
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="docker"
        )
        self._lock = threading.Lock()
        self._client: Any = None
        self._pull_client: Any = None

    # -- plumbing ---------------------------------------------------------------

    def _connect(self, *, timeout: float | None) -> Any:
        if self.host.startswith("unix://") and not os.path.exists(self.host[len("unix://"):]):
            # Also spares docker-py's connect, which leaks its socket when it fails.
            raise EngineUnavailable(f"cannot reach the Docker engine at {self.host}: "
                                    "no such socket (is dockerd running?)")
        try:
            return docker.DockerClient(base_url=self.host, version="auto", timeout=timeout)
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise EngineUnavailable(
                f"cannot reach the Docker engine at {self.host}: {_explain(exc)}"
            ) from exc

    def _docker(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect(timeout=self.timeout)
            return self._client

    def _docker_for_pulls(self) -> Any:
        with self._lock:
            if self._pull_client is None:
                self._pull_client = self._connect(timeout=None)
            return self._pull_client

    async def _run(self, call: str, fn: Callable[[], T]) -> T:
        """``fn`` (docker-py, which blocks) on the engine's threads, timed as ``call``."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            return await loop.run_in_executor(self._executor,
                                              functools.partial(self._guard, fn))
        finally:
            metrics.DOCKER_SECONDS.labels(call).observe(time.monotonic() - started)

    def _guard(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except EngineError:
            raise
        except docker.errors.ImageNotFound as exc:
            raise ImageNotFound(_explain(exc)) from exc
        except docker.errors.APIError as exc:
            raise EngineError(_explain(exc)) from exc
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise EngineUnavailable(
                f"Docker engine at {self.host}: {_explain(exc)}"
            ) from exc

    # -- the engine ---------------------------------------------------------------

    async def version(self) -> str:
        return await self._run("version",
                               lambda: str(self._docker().version().get("Version", "")))

    async def engine_id(self) -> str:
        """The engine's own ID (``docker info``): the same across dockerd restarts."""
        return await self._run("engine_id", lambda: str(self._docker().info().get("ID", "")))

    async def list(self, *, node: str, key: Ref | None = None) -> list[Summary]:
        """Every Docker container (running or not) labelled for ``node``, or for one key."""
        wanted = [f"{dockerspec.LABEL_NODE}={node}"]
        if key is not None:
            wanted += [f"{dockerspec.LABEL_ZONE}={key.zone}",
                       f"{dockerspec.LABEL_WORKSPACE}={key.workspace}",
                       f"{dockerspec.LABEL_CONTAINER}={key.name}"]

        def call() -> list[Summary]:
            rows = self._docker().api.containers(all=True, filters={"label": wanted})
            return [
                Summary(id=str(r["Id"]), labels=dict(r.get("Labels") or {}),
                        state=str(r.get("State", "")))
                for r in rows
            ]

        return await self._run("list", call)

    async def inspect(self, docker_id: str) -> Observed | None:
        def call() -> Observed | None:
            try:
                attrs = self._docker().api.inspect_container(docker_id)
            except docker.errors.NotFound:
                return None
            return dockerspec.observed_from_inspect(attrs)

        return await self._run("inspect", call)

    async def image_present(self, image: str) -> bool:
        def call() -> bool:
            try:
                self._docker().api.inspect_image(image)
            except docker.errors.NotFound:
                return False
            return True

        return await self._run("image_present", call)

    async def pull(self, image: str) -> None:
        def call() -> None:
            repository, tag = docker.utils.parse_repository_tag(image)
            try:
                self._docker_for_pulls().images.pull(repository, tag=tag or "latest")
            except docker.errors.NotFound as exc:
                raise ImageNotFound(_explain(exc)) from exc

        await self._run("pull", call)

    async def ensure_volume(self, volume: DockerVolume) -> None:
        """Create the named volume (``local`` driver) unless it exists. Its name carries
        a digest of its options, so one that exists has the options asked for."""

        def call() -> None:
            api = self._docker().api
            try:
                api.inspect_volume(volume.name)
                return
            except docker.errors.NotFound:
                pass
            api.create_volume(name=volume.name, driver="local",
                              driver_opts=volume.options, labels=volume.labels)

        await self._run("ensure_volume", call)

    async def create(self, spec: RunSpec) -> str:
        """Create (not start) the container; an existing one of the same incarnation
        (same name and uid: a create whose answer was lost) is returned instead."""

        def call() -> str:
            client = self._docker()
            options: dict[str, Any] = {
                "image": spec.image, "name": spec.name, "labels": spec.labels,
                "command": spec.command, "network_mode": spec.network_mode,
                # docker-init as PID 1: signals reach the command, zombies are reaped.
                "init": True,
                "tty": spec.tty, "stdin_open": spec.stdin_open,
            }
            if spec.environment:
                options["environment"] = [f"{k}={v}" for k, v in spec.environment.items()]
            if spec.shm_size:
                options["shm_size"] = spec.shm_size
            if spec.nano_cpus:
                options["nano_cpus"] = spec.nano_cpus
            if spec.mem_limit:
                options["mem_limit"] = spec.mem_limit
            if spec.ports:
                options["ports"] = spec.ports
            if spec.gpu_uuids:
                options["device_requests"] = [docker.types.DeviceRequest(
                    driver="nvidia", device_ids=list(spec.gpu_uuids), capabilities=[["gpu"]],
                )]
            if spec.volumes:
                options["volumes"] = {
                    name: {"bind": target, "mode": "ro" if read_only else "rw"}
                    for name, (target, read_only) in spec.volumes.items()
                }
            try:
                return str(client.containers.create(**options).id)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                existing = client.api.inspect_container(spec.name)
                labels = existing.get("Config", {}).get("Labels") or {}
                if labels.get(dockerspec.LABEL_UID) != spec.labels[dockerspec.LABEL_UID]:
                    raise
                return str(existing["Id"])

        return await self._run("create", call)

    async def start(self, docker_id: str) -> None:
        await self._run("start", lambda: self._docker().api.start(docker_id))

    async def remove(self, docker_id: str, *, stop_timeout: float) -> None:
        """Stop (SIGTERM, then SIGKILL after ``stop_timeout``) and remove; gone is fine."""

        def call() -> None:
            api = self._docker().api
            try:
                api.stop(docker_id, timeout=max(0, math.ceil(stop_timeout)))
            except docker.errors.NotFound:
                return
            except docker.errors.APIError:
                pass  # already stopped or being removed: the removal below decides
            try:
                api.remove_container(docker_id, force=True)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: a removal is already in progress
                    raise

        await self._run("remove", call)

    async def pause(self, docker_id: str, *, paused: bool) -> None:
        """``docker pause`` (freeze every process: the cgroup freezer) or ``unpause``;
        already in that state is fine."""

        def call() -> None:
            api = self._docker().api
            try:
                (api.pause if paused else api.unpause)(docker_id)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                state = api.inspect_container(docker_id).get("State") or {}
                if bool(state.get("Paused")) != paused:
                    raise  # 409 for another reason: not running, say

        await self._run("pause", call)

    async def close(self) -> None:
        with self._lock:
            clients = [c for c in (self._client, self._pull_client) if c is not None]
            self._client = self._pull_client = None
        for client in clients:
            client.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
