"""The Workload status the controller reports.

- ``desiredReplicas``: the count wanted (0 when stopped);
- ``currentReplicas``: containers that count (not dead, not being deleted);
- ``updatedReplicas``: those of the current version;
- ``readyReplicas``: those of the current version that are Running;
- ``observedGeneration``, ``currentVersion``;
- conditions: ``Available`` and ``Progressing`` always; ``Unschedulable`` (with
  the scheduler's reason, e.g. ``no node has 2 free GPUs of [...]``) and
  ``Exited`` (containers that ended under restartPolicy Never) while true;
  ``CreditsExhausted`` while the user who pays for it has no credit left (it runs
  nothing meanwhile; the workload controller alone sets and removes it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from dora.api import conventions
from dora.api.v1 import object_pb2, workloads_pb2
from dora.controllers import conditions
from dora.controllers.workload.plan import FAILED_PHASES, PAUSED, RUNNING, Plan

AVAILABLE, PROGRESSING, UNSCHEDULABLE, EXITED = (
    "Available", "Progressing", "Unschedulable", "Exited",
)


def build(
    *,
    workload: object_pb2.Object,
    desired: int,
    version: int,
    plan: Plan,
    unschedulable: Sequence[tuple[str, str]],
    now: dt.datetime,
    held: str = "",
) -> workloads_pb2.WorkloadStatus:
    """The status for what the controller sees; ``unschedulable`` is (name, message)
    of the containers the scheduler cannot place, ``held`` why its payer's spent
    credit holds it ("" when it does not)."""
    status = workloads_pb2.WorkloadStatus()
    status.CopyFrom(workload.workload.status)
    spec = workload.workload.spec
    ready = sum(1 for r in plan.current if r.phase == RUNNING)
    status.desired_replicas = desired
    status.current_replicas = len(plan.current) + len(plan.old)
    status.updated_replicas = len(plan.current)
    status.ready_replicas = ready
    status.observed_generation = workload.metadata.generation
    status.current_version = version
    conds = status.conditions
    # This controller runs in the workload's zone: the zone is served.
    conditions.remove(conds, conventions.ZONE_UNSERVED_CONDITION)

    if held:
        conditions.set_condition(conds, type=conventions.CREDITS_EXHAUSTED_CONDITION,
                                 status="True", reason="CreditsExhausted", message=held,
                                 now=now)
    else:
        conditions.remove(conds, conventions.CREDITS_EXHAUSTED_CONDITION)

    if desired == 0:
        reason = ("Stopped" if spec.stopped else "CreditsExhausted" if held
                  else "ScaledToZero")
        conditions.set_condition(conds, type=AVAILABLE, status="True", reason=reason,
                                 message="no containers are wanted", now=now)
    elif spec.paused:
        paused = sum(1 for r in plan.current if r.phase == PAUSED)
        conditions.set_condition(conds, type=AVAILABLE, status="False", reason="Paused",
                                 message=f"{paused} of {desired} containers paused "
                                         "(doractl resume)", now=now)
    elif ready >= desired:
        conditions.set_condition(conds, type=AVAILABLE, status="True", reason="ReplicasReady",
                                 message=f"{ready} of {desired} containers running", now=now)
    else:
        conditions.set_condition(conds, type=AVAILABLE, status="False",
                                 reason="ReplicasNotReady",
                                 message=f"{ready} of {desired} containers running", now=now)

    if plan.rolling:
        conditions.set_condition(
            conds, type=PROGRESSING, status="True", reason="RollingOut",
            message=f"replacing {len(plan.old)} container(s) with version {version}", now=now,
        )
    elif plan.delete or plan.create or len(plan.current) != desired:
        conditions.set_condition(
            conds, type=PROGRESSING, status="True", reason="Scaling",
            message=f"{len(plan.current)} container(s), {desired} wanted", now=now,
        )
    else:
        conditions.set_condition(conds, type=PROGRESSING, status="False", reason="Complete",
                                 message=f"version {version} is rolled out", now=now)

    if unschedulable:
        name, message = unschedulable[0]
        more = f" (and {len(unschedulable) - 1} more)" if len(unschedulable) > 1 else ""
        conditions.set_condition(conds, type=UNSCHEDULABLE, status="True",
                                 reason="Unschedulable", message=f"{name}{more}: {message}",
                                 now=now)
    else:
        conditions.remove(conds, UNSCHEDULABLE)

    exited = [r for r in (*plan.current, *plan.old) if r.phase in FAILED_PHASES]
    if exited:
        names = ", ".join(r.name for r in exited)
        conditions.set_condition(
            conds, type=EXITED, status="True", reason="ContainersExited",
            message=f"{names} ended and restartPolicy is Never; delete to run again", now=now,
        )
    else:
        conditions.remove(conds, EXITED)
    return status
