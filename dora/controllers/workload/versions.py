"""Numbered versions of a Workload's spec (``Workloadversion`` objects).

Every spec a workload has had is kept as ``<workload>.v<n>``, owned by the
workload, so it goes with it. What makes a version is the spec without
``replica`` (but ``replica.gang``), ``stopped`` and ``paused``: scaling, stopping and
pausing are not new versions; making the replicas a gang is.

A version made now says ``cmdArgv``: its ``config.cmd`` is split into shell words.
One stored before that change lacks it, and its containers keep running their cmd
as ``/bin/sh -c CMD`` (``ContainerSpec.shellCmd``), the meaning it was written
with, also after a restart or a rollback to it.

The current version is the one whose template equals the spec, so restoring
version N (``doractl rollback``: apply N's template, see
``dora.api.conventions.rollback``) makes N current again rather than adding a
copy; a spec never seen before becomes version max+1.

At most ``history`` versions are kept (``dora-controllers --version-history``,
default 50): when a new one is made, the oldest beyond that are deleted, never the
current one. A rollback reaches only the versions kept.
"""

from __future__ import annotations

import contextlib

from dora.api import conventions, errors, kinds, objects
from dora.api.client import ResourceClient
from dora.api.v1 import object_pb2, workloads_pb2
from dora.controllers.events import label_value_ok
from dora.runtime.cache import Store

# Versions kept per workload.
HISTORY = 50


def template_of(spec: workloads_pb2.WorkloadSpec) -> workloads_pb2.WorkloadSpec:
    """The part of a spec that makes a version."""
    template = workloads_pb2.WorkloadSpec()
    template.CopyFrom(spec)
    template.ClearField("replica")
    if spec.replica.gang:  # how the replicas run together (their env, their restarts)
        template.replica.gang = True
    template.ClearField("stopped")
    template.ClearField("paused")
    return template


def owned_by(obj: object_pb2.Object, workload: object_pb2.Object) -> bool:
    return any(o.uid == workload.metadata.uid for o in obj.metadata.owner_references)


def find(store: Store, workload: object_pb2.Object) -> list[object_pb2.Object]:
    """The workload's versions, oldest first."""
    found = store.by_index("owner", workload.metadata.uid)
    return sorted(found, key=lambda v: v.workloadversion.spec.version)


def matching(versions: list[object_pb2.Object], template: workloads_pb2.WorkloadSpec
             ) -> object_pb2.Object | None:
    for version in versions:
        if template_of(version.workloadversion.spec.template) == template:
            return version
    return None


def new_version(workload: object_pb2.Object, number: int,
                template: workloads_pb2.WorkloadSpec) -> object_pb2.Object:
    meta = workload.metadata
    name = conventions.version_name(meta.name, number)
    version = objects.new(kinds.WORKLOADVERSION, name, zone=meta.zone, workspace=meta.workspace)
    version.metadata.owner_references.add(kind=kinds.WORKLOAD, name=meta.name, uid=meta.uid,
                                          controller=True)
    if label_value_ok(meta.name):
        version.metadata.labels[conventions.WORKLOAD_LABEL] = meta.name
    spec = version.workloadversion.spec
    spec.workload = meta.name
    spec.version = number
    spec.template.CopyFrom(template)
    spec.cmd_argv = True
    return version


async def ensure(client: ResourceClient, store: Store, workload: object_pb2.Object, *,
                 history: int = HISTORY) -> tuple[object_pb2.Object, bool]:
    """The Workloadversion of the workload's spec, created if new (the oldest beyond
    ``history`` then pruned); and whether it was."""
    template = template_of(workload.workload.spec)
    versions = find(store, workload)
    found = matching(versions, template)
    if found is not None:
        return found, False
    number = max((v.workloadversion.spec.version for v in versions), default=0) + 1
    candidate = new_version(workload, number, template)
    try:
        created, _ = await client.apply(candidate, create_only=True)
    except errors.AlreadyExists:
        existing = await client.get(kinds.WORKLOADVERSION, candidate.metadata.name,
                                    zone=workload.metadata.zone,
                                    workspace=workload.metadata.workspace)
        if owned_by(existing, workload) and (
            template_of(existing.workloadversion.spec.template) == template
        ):
            return existing, False
        raise errors.Conflict(
            f"version {number} of workload {workload.metadata.name} exists and differs; "
            "the cache is behind"
        ) from None
    await prune(client, [*versions, created], history=history)
    return created, True


async def prune(client: ResourceClient, versions: list[object_pb2.Object], *, history: int) -> None:
    """Delete the oldest of ``versions`` (oldest first; the last is the current one)
    so that at most ``history`` remain."""
    for old in versions[:max(0, len(versions) - max(history, 1))]:
        with contextlib.suppress(errors.NotFound):
            await client.delete(kinds.WORKLOADVERSION, old.metadata.name, zone=old.metadata.zone,
                                workspace=old.metadata.workspace)
