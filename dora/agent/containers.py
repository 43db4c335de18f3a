"""Reconcile one Container key: make Docker match what is bound to this node, and
report back.

The reconcile is level-triggered. It reads the Container from the agent's store
(filled by an informer of the Containers labelled ``dora.io/node=<node>``) and the Docker
containers labelled with this node and that key, then takes one step:

- no Container, one bound elsewhere, or one being deleted: stop and remove its
  Docker containers; then, for one being deleted from this node, remove the
  ``dora.io/agent`` finalizer so the apiserver can let it go. (A Container the
  scheduler moved to another node keeps the finalizer: that node's agent owns it.)
- Docker containers of another incarnation (another uid under the same name)
  go, as do duplicates of this one (the oldest running one stays).
- the Docker container of this incarnation exists: it is *adopted*, never
  restarted, and its state is reported (Running, Exited with the exit code).
  One created but never started (the agent stopped in between) is started.
  A running one is frozen (``docker pause``) while ``spec.paused`` is true, and
  thawed when it is false again: phase Paused, then Running.
- none exists: if the Container never ran, it is started (Pulling, Creating,
  Running); if its status says it ran (a Docker id) or ended (Exited, Failed), it
  is not started again: a container that disappeared is reported Failed, and
  restarting is the workload controller's business (``restartPolicy``).

The status is written with the object's resourceVersion as a precondition, so a
concurrent writer (the scheduler) is never overwritten; on a conflict the
object is read again and the change applied to it. Before it creates anything
the reconcile reads the Container from the apiserver, not the cache, so a stale
cache can never start a container twice.
"""

from __future__ import annotations

from collections.abc import Callable

from dora.agent import dockerspec
from dora.agent import volumes as agent_volumes
from dora.agent.docker_driver import Engine, EngineError, EngineUnavailable, ImageNotFound
from dora.agent.dockerspec import Observed
from dora.api import conventions, errors, finalizers
from dora.api.client import Client
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, workloads_pb2
from dora.runtime import reconcile as runtime
from dora.runtime.cache import Store
from dora.runtime.reconcile import DONE, Result

log = runtime.logger(__name__)

FINALIZER = conventions.AGENT_FINALIZER
NODE_LABEL = conventions.NODE_LABEL
TERMINAL = ("Exited", "Failed")

Status = workloads_pb2.ContainerStatus


class Stale(Exception):
    """The Container changed under the reconcile (deleted, rebound, replaced): stop; the
    watch event for that change queues the key again."""


def key_of(obj: object_pb2.Object) -> Ref:
    meta = obj.metadata
    return Ref("Container", meta.zone, meta.workspace, meta.name)


def deleting(obj: object_pb2.Object) -> bool:
    return obj.metadata.HasField("deletion_timestamp")


def by_gpu(obj: object_pb2.Object) -> list[str]:
    """The store index of Containers by the UUIDs of their GPUs."""
    return [gpu.uuid for gpu in obj.container.spec.gpus if gpu.uuid]


def gpu_assignments(store: Store) -> dict[str, str]:
    """GPU UUID -> ``<workspace>/<name>`` of the Container it is assigned to (the store
    indexed ``by_gpu``)."""
    return {uuid: f"{obj.metadata.workspace}/{obj.metadata.name}"
            for uuid in store.index_values("gpu") for obj in store.by_index("gpu", uuid)}


def observed_status(current: Status, observed: Observed, *, node: str) -> Status:
    """The status that reports ``observed``, keeping what the agent does not own."""
    status = Status()
    status.CopyFrom(current)
    status.node_name = node
    status.docker_id = observed.id
    if observed.started_at is not None:
        status.started_at.FromDatetime(observed.started_at)
    if observed.state in ("running", "paused", "restarting"):
        status.phase = "Paused" if observed.state == "paused" else "Running"
        status.reason = ""
        status.message = ""
        status.exit_code = 0
        status.ClearField("finished_at")
    elif observed.state in ("exited", "dead"):
        status.phase = "Exited"
        status.exit_code = observed.exit_code
        if observed.oom_killed:
            status.reason = "OOMKilled"
        else:
            status.reason = "Completed" if observed.exit_code == 0 else "Error"
        status.message = observed.error
        if observed.finished_at is not None:
            status.finished_at.FromDatetime(observed.finished_at)
    elif observed.state == "created":
        status.phase = "Creating"
    return status


class Reconciler:
    def __init__(
        self,
        *,
        client: Client,
        engine: Engine,
        cache: Store,
        node: str,
        simulated_gpus: bool,
        stop_timeout: float,
        resolver: agent_volumes.Resolver | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.cache = cache
        self.node = node
        self.simulated_gpus = simulated_gpus
        self.stop_timeout = stop_timeout
        self.resolver = resolver or agent_volumes.Resolver(client=client)
        # Docker ids this agent stopped to fence itself (``agent.Agent.fence``), and why:
        # a Container still bound to one of them fails with that reason.
        self.fenced: dict[str, str] = {}

    def _mine(self, obj: object_pb2.Object | None) -> bool:
        return obj is not None and obj.container.spec.node_name == self.node

    async def reconcile(self, *, key: Ref) -> Result:
        try:
            await self._reconcile(key)
        except Stale as exc:
            log.info("%s changed while it was being reconciled (%s)", key, exc)
            return Result(requeue_after=0.5)
        return DONE

    async def _reconcile(self, key: Ref) -> None:
        obj = self.cache.get(key)
        wanted = obj if obj is not None and self._mine(obj) and not deleting(obj) else None
        dockers = await self.engine.list(node=self.node, key=key)
        for found in dockers:
            if wanted is None or found.uid != wanted.metadata.uid:
                why = ("its Container is gone" if obj is None else
                       "it is being deleted" if deleting(obj) else
                       "it is bound to another node" if not self._mine(obj) else
                       "it runs an older incarnation")
                log.info("removing Docker container %s of %s: %s",
                         found.id[:12], key, why)
                await self.engine.remove(found.id, stop_timeout=self.stop_timeout)
        if wanted is None:
            if obj is not None and deleting(obj) and self._mine(obj):
                await self._release(obj)
            return
        same = [d for d in dockers if d.uid == wanted.metadata.uid]
        same.sort(key=lambda d: d.state != "running")
        for extra in same[1:]:
            log.warning("removing duplicate Docker container %s of %s",
                        extra.id[:12], key)
            await self.engine.remove(extra.id, stop_timeout=self.stop_timeout)
        if same:
            await self._follow(wanted, same[0].id)
        else:
            await self._start(key)

    async def _follow(self, obj: object_pb2.Object, docker_id: str) -> None:
        observed = await self.engine.inspect(docker_id)
        if observed is None:
            raise Stale("its Docker container vanished")
        if observed.state == "created":
            obj = await self._fresh(key_of(obj), obj.metadata.uid)
            if obj.container.status.phase in TERMINAL:
                return  # it failed to start: nothing more to report, nothing to retry
            log.info("starting Docker container %s of %s (created, never started)",
                     docker_id[:12], key_of(obj))
            await self._run(obj, docker_id)
            return
        await self._report(obj, await self._match_pause(obj, observed))

    async def _match_pause(self, obj: object_pb2.Object, observed: Observed) -> Observed:
        """Freeze or thaw the Docker container as ``spec.paused`` says; what it is then."""
        wanted = obj.container.spec.paused
        if observed.state not in ("running", "paused") or (observed.state == "paused") == wanted:
            return observed
        log.info("%s Docker container %s of %s", "pausing" if wanted else "resuming",
                 observed.id[:12], key_of(obj))
        try:
            await self.engine.pause(observed.id, paused=wanted)
        except EngineUnavailable:
            raise
        except EngineError as exc:
            log.warning("%s: docker %s failed: %s", key_of(obj),
                        "pause" if wanted else "unpause", exc)
            return observed
        return await self.engine.inspect(observed.id) or observed

    async def _report(self, obj: object_pb2.Object, observed: Observed) -> None:
        def change(status: Status) -> None:
            status.CopyFrom(observed_status(status, observed, node=self.node))

        await self._write(obj, change)

    async def _fresh(self, key: Ref, uid: str = "") -> object_pb2.Object:
        """The Container as the apiserver has it now; ``Stale`` if it is no longer ours."""
        try:
            obj = await self.client.get("Container", key.name, zone=key.zone,
                                        workspace=key.workspace)
        except errors.NotFound:
            raise Stale("deleted") from None
        if uid and obj.metadata.uid != uid:
            raise Stale("replaced by a new incarnation")
        if not self._mine(obj):
            raise Stale("bound to another node")
        if deleting(obj):
            raise Stale("being deleted")
        return obj

    async def _start(self, key: Ref) -> None:
        obj = await self._fresh(key)
        status = obj.container.status
        if status.phase in TERMINAL:
            return
        if status.docker_id in self.fenced:
            await self._fail(obj, f"Fenced: {self.fenced[status.docker_id]}")
            return
        if status.docker_id:
            await self._fail(obj, f"its Docker container {status.docker_id[:12]} is gone "
                                  "(removed outside Dora?)")
            return
        try:
            mounts = await self.resolver.mounts(obj)
        except agent_volumes.NotReady as exc:
            # Maybe the Volume is applied a moment later: wait, retried with backoff.
            await self._phase(obj, "Creating", reason="VolumeNotReady", message=str(exc))
            raise
        try:
            spec = dockerspec.run_spec(obj, node=self.node, simulated_gpus=self.simulated_gpus,
                                       mounts=mounts)
        except dockerspec.Unsupported as exc:
            await self._fail(obj, str(exc))
            return
        image = obj.container.spec.template.image
        policy = image.pull_policy or "IfNotPresent"
        present = await self.engine.image_present(spec.image)
        if policy == "Never" and not present:
            await self._fail(obj, f"image {spec.image} not present and pullPolicy is Never")
            return
        if policy == "Always" or not present:
            obj = await self._phase(obj, "Pulling", message=f"pulling image {spec.image}")
            try:
                await self.engine.pull(spec.image)
            except ImageNotFound as exc:
                await self._fail(obj, f"image {spec.image} not found: {exc}")
                return
            except EngineUnavailable:
                raise
            except EngineError as exc:
                # Maybe the registry is down for a moment: keep Pulling, retry with backoff.
                await self._phase(obj, "Pulling", reason="image pull failed", message=str(exc))
                raise
        obj = await self._phase(obj, "Creating")
        log.info("creating Docker container %s for %s", spec.name, key)
        try:
            for mount in mounts:
                await self.engine.ensure_volume(dockerspec.docker_volume(mount, zone=key.zone))
            docker_id = await self.engine.create(spec)
        except (EngineUnavailable, ImageNotFound):
            raise
        except EngineError as exc:
            await self._fail(obj, f"Docker could not create the container: {exc}")
            return
        await self._run(obj, docker_id)

    async def _run(self, obj: object_pb2.Object, docker_id: str) -> None:
        try:
            await self.engine.start(docker_id)
        except EngineUnavailable:
            raise
        except EngineError as exc:
            await self._fail(obj, f"Docker could not start the container: {exc}",
                             docker_id=docker_id)
            return
        observed = await self.engine.inspect(docker_id)
        if observed is None:
            raise Stale("its Docker container vanished")
        # A container of a paused workload is frozen as soon as it starts.
        await self._report(obj, await self._match_pause(obj, observed))

    async def _phase(self, obj: object_pb2.Object, phase: str, *, reason: str = "",
                     message: str = "") -> object_pb2.Object:
        def change(status: Status) -> None:
            status.phase, status.reason, status.message = phase, reason, message
            status.node_name = self.node

        return await self._write(obj, change)

    async def _fail(self, obj: object_pb2.Object, reason: str, *, docker_id: str = "") -> None:
        log.warning("%s failed: %s", key_of(obj), reason)

        def change(status: Status) -> None:
            status.phase, status.reason, status.message = "Failed", reason, ""
            status.node_name = self.node
            if docker_id:
                status.docker_id = docker_id

        await self._write(obj, change)

    async def write(self, obj: object_pb2.Object,
                    change: Callable[[Status], None]) -> object_pb2.Object:
        """Apply ``change`` (of a field the agent owns, such as ``usage``) to the status
        and write it if that changed anything; not a reconcile, so the observed
        generation stays as it is."""
        return await self._write(obj, change, observe=False)

    async def _write(self, obj: object_pb2.Object, change: Callable[[Status], None], *,
                     observe: bool = True) -> object_pb2.Object:
        """Apply ``change`` to the status and write it if that changed anything."""
        for _ in range(8):
            status = Status()
            status.CopyFrom(obj.container.status)
            change(status)
            if status.phase != "Running":
                status.ClearField("usage")  # a sample of a container no longer running
            if observe:
                status.observed_generation = obj.metadata.generation
            if status == obj.container.status:
                return obj
            request = object_pb2.Object(api_version="v1", kind="Container")
            request.metadata.name = obj.metadata.name
            request.metadata.zone = obj.metadata.zone
            request.metadata.workspace = obj.metadata.workspace
            request.metadata.resource_version = obj.metadata.resource_version
            request.container.status.CopyFrom(status)
            try:
                written = await self.client.update_status(request)
            except errors.Conflict:
                obj = await self._fresh(key_of(obj), obj.metadata.uid)
                continue
            except errors.NotFound:
                raise Stale("deleted") from None
            if written.container.status.phase != obj.container.status.phase:
                log.info("%s is %s%s", key_of(obj),
                         written.container.status.phase,
                         f" ({status.reason})" if status.reason else "")
            return written
        raise errors.Conflict(f"{key_of(obj)}: the status kept changing under the agent")

    async def _release(self, obj: object_pb2.Object) -> None:
        """Remove the agent's finalizer from a Container being deleted."""
        if FINALIZER not in obj.metadata.finalizers:
            return
        if await finalizers.change(self.client, obj, FINALIZER, add=False):
            log.info("%s: Docker container removed, finalizer %s released",
                     key_of(obj), FINALIZER)
