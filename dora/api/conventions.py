"""The names components agree on: labels, finalizers, annotations, lease names.

The controllers, the node agent and ``doractl`` cannot import each other, so
the words they share live here, with the two small recipes a client needs to
ask the workload controller for something (``scale_down``, ``rollback``).

- A Workload's containers are named ``<workload>.<n>``; they carry the label
  ``dora.io/workload=<workload>`` and an owner reference to the Workload.
- The scheduler binds a container by setting ``spec.nodeName``/``gpus``/
  ``cpuMillicores``, the label ``dora.io/node=<node>`` (what the agent watches)
  and the finalizer ``dora.io/agent`` (the agent removes it once the Docker
  container is gone). ``dora.io/placement=<node>`` marks a container reserved
  for a node before that (see ``dora.controllers.scheduler``).
- A node's agent holds a Lease ``node.<node>`` in the node's zone; the active
  controller replica of a zone holds the Lease ``controllers``.
"""

from __future__ import annotations

from dora.api.v1 import object_pb2

WORKLOAD_LABEL = "dora.io/workload"
NODE_LABEL = "dora.io/node"
PLACEMENT_LABEL = "dora.io/placement"
AGENT_FINALIZER = "dora.io/agent"
# On a Workload: container names to remove first when replica.count goes down.
SCALE_DOWN_ANNOTATION = "dora.io/scale-down"
CONTROLLERS_LEASE = "controllers"
NODE_LEASE_PREFIX = "node."

# Environment variables the agent sets in every container (DORA_WORKLOAD, ...,
# and the GPUs given): a Workload's config.env may not name them.
RESERVED_ENV_PREFIX = "DORA_"
RESERVED_ENV = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
# config.env: what one value and all of them together may hold (bytes, UTF-8).
MAX_ENV_VALUE_BYTES = 32 * 1024
MAX_ENV_TOTAL_BYTES = 256 * 1024
_SCALE_DOWN_KEPT = 16


# The Workload condition the credit controller sets while its user's credit is
# spent; the workload controller runs no container of a workload that bears it.
CREDITS_EXHAUSTED_CONDITION = "CreditsExhausted"

# The Workload condition a dora-controllers sets while no dora-controllers leads
# the workload's zone (dora.controllers.zones); the zone's own controller clears it.
ZONE_UNSERVED_CONDITION = "ZoneUnserved"


def node_lease_name(node: str) -> str:
    return f"{NODE_LEASE_PREFIX}{node}"


def container_name(workload: str, index: int) -> str:
    return f"{workload}.{index}"


def version_name(workload: str, version: int) -> str:
    return f"{workload}.v{version}"


def scale_down(workload: object_pb2.Object, container: str) -> object_pb2.Object:
    """The Workload to apply to remove ``container`` and lower ``replica.count`` by one.

    One conditional write (it keeps ``metadata.resourceVersion``: on a conflict, get
    the workload again and retry), so the controller never sees the lower count
    without knowing which container to remove.
    """
    updated = object_pb2.Object()
    updated.CopyFrom(workload)
    spec = updated.workload.spec
    spec.replica.count = max(0, spec.replica.count - 1)
    names = [n for n in updated.metadata.annotations.get(SCALE_DOWN_ANNOTATION, "").split(",")
             if n and n != container]
    # Only the most recent names matter: older ones name containers long gone.
    names = [*names, container][-_SCALE_DOWN_KEPT:]
    updated.metadata.annotations[SCALE_DOWN_ANNOTATION] = ",".join(names)
    updated.workload.ClearField("status")
    return updated


def rollback(workload: object_pb2.Object, version: object_pb2.Object) -> object_pb2.Object:
    """The Workload to apply to go back to ``version`` (a Workloadversion).

    The spec becomes the version's template; replica count and stopped stay as
    they are. The workload controller recognises the spec as that version and
    replaces the containers with containers of it.
    """
    updated = object_pb2.Object()
    updated.CopyFrom(workload)
    spec = updated.workload.spec
    replica, stopped = spec.replica.count, spec.stopped
    spec.CopyFrom(version.workloadversion.spec.template)
    spec.replica.count = replica
    spec.stopped = stopped
    updated.workload.ClearField("status")
    return updated
