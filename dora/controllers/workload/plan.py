"""The workload controller's decision, as a pure function of what it sees.

Given the replica count wanted, the current version and the workload's
containers, ``plan`` says which containers to delete (and why) and how many
new ones of the current version to create, for one step. The reconciler does
the step; the events of its own writes bring the next reconcile.

- Dead containers go: Lost ones always (their node is gone), Exited or Failed
  ones when ``restartPolicy`` is Always. With Never they stay, and count. A
  container that ran less than ``restart_delay`` seconds is a crash loop in the
  making: it is replaced only ``restart_delay`` seconds after it ended.
- Containers being deleted do not count (a replacement starts at once; the
  scheduler still counts their resources until they are gone).
- No container of an old version: create the missing ones, or delete the
  surplus (``victims`` order: the ones the user named with the
  ``dora.io/scale-down`` annotation, then those not scheduled, not running,
  and the highest index).
- Old versions present (a rollout, one at a time): a new container is created
  while none is unsettled, and an old one is deleted each time a new one
  *settles*: it runs, it failed, it cannot be scheduled (on a full cluster
  the old one must make room), or it waited unscheduled for
  ``rollout_timeout``. At most ``desired + 1`` containers exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

RUNNING = "Running"
# Paused (docker pause) is a running container frozen: it ran, and it holds its slot.
PAUSED = "Paused"
PENDING_PHASES = frozenset({"", "Pending"})
FAILED_PHASES = frozenset({"Exited", "Failed"})
LOST = "Lost"

LOST_REASON = "its node was lost"
RESTART_REASON = "it exited and restartPolicy is Always"
STOPPED_REASON = "the workload is stopped"
ZERO_REASON = "replica count is 0"
SCALE_DOWN_REASON = "scale down"


@dataclass(frozen=True)
class Replica:
    """One container of the workload, as far as planning goes."""

    name: str
    index: int
    version: int
    phase: str = ""
    terminating: bool = False
    bound: bool = False
    unschedulable: bool = False
    # Seconds since it was created.
    age: float = 0.0
    # For an ended container, when known: how long it ran, and since when it is over.
    ran: float | None = None
    ended: float | None = None
    # Exited with code 0 (reason Completed).
    succeeded: bool = False
    # The replica count when it was made (a gang's world size); 0: unknown.
    world: int = 0


@dataclass(frozen=True)
class Plan:
    delete: tuple[tuple[str, str], ...] = ()
    create: int = 0
    # Look again after this many seconds (a rollout timeout will be due), 0: no need.
    requeue_after: float = 0.0
    rolling: bool = False
    # Containers counted as replicas (not dead, not being deleted), by version.
    current: tuple[Replica, ...] = field(default=())
    old: tuple[Replica, ...] = field(default=())


def settled(replica: Replica, *, rollout_timeout: float) -> bool:
    """Whether a new container has had its chance, so that an old one may go."""
    if replica.phase in (RUNNING, PAUSED) or replica.phase in FAILED_PHASES:
        return True
    if replica.phase in PENDING_PHASES and not replica.bound:
        return replica.unschedulable or replica.age >= rollout_timeout
    return False


def victims(
    replicas: Sequence[Replica], count: int, *, prefer: Sequence[str] = ()
) -> list[Replica]:
    """The ``count`` replicas to remove first."""
    def rank(r: Replica) -> tuple[int, int, int]:
        state = 2 if r.phase in (RUNNING, PAUSED) else 1 if r.bound else 0
        return (0 if r.name in prefer else 1, state, -r.index)

    return sorted(replicas, key=rank)[:max(0, count)]


def gang_plan(*, desired: int, version: int, replicas: Sequence[Replica],
              restart_always: bool) -> Plan | None:
    """A gang (``replica.gang``) lives and dies together; None when nothing of that
    applies (then ``plan`` goes on as for any workload).

    - A replica ended (restartPolicy Always: any end; Never: a failure, or its node
      lost): Always deletes every replica of the gang (they are made again, and
      placed all at once); Never deletes the ones still running or pending, and
      nothing is made again (the ended ones stay, with their status).
    - Old versions: they all go at once and the new version is made whole (a gang
      does not roll one replica at a time).
    - Scaled: the world size each replica was told is wrong; the gang restarts whole.
    """
    live = [r for r in replicas if not r.terminating]
    current = [r for r in live if r.version == version]
    ended = sorted((r for r in current if r.phase in FAILED_PHASES or r.phase == LOST
                    if restart_always or not r.succeeded), key=lambda r: r.index)
    if ended:
        first = ended[0]
        what = f"replica {first.name} {'was lost' if first.phase == LOST else 'ended'}"
        if restart_always:
            why = f"the gang restarts together: {what}"
            return Plan(delete=tuple((r.name, why) for r in current), current=tuple(current))
        why = f"the gang fails together: {what}"
        return Plan(delete=tuple((r.name, why) for r in current
                                 if r.phase not in FAILED_PHASES and r.phase != LOST),
                    current=tuple(current))
    if any(r.phase in FAILED_PHASES for r in current):
        return Plan(current=tuple(current))  # Never: ended, none failed: nothing to make
    if any(r.world and r.world != desired for r in current):
        why = f"the gang's size changed to {desired}: it restarts whole"
        return Plan(delete=tuple((r.name, why) for r in current), current=tuple(current))
    old = [r for r in live if r.version != version]
    if old:
        why = f"replaced by version {version} (a gang is replaced whole)"
        return Plan(delete=tuple((r.name, why) for r in old),
                    create=max(0, desired - len(current)), rolling=True,
                    current=tuple(current), old=tuple(old))
    return None


def plan(
    *,
    desired: int,
    version: int,
    replicas: Sequence[Replica],
    restart_always: bool,
    stopped: bool = False,
    prefer: Sequence[str] = (),
    rollout_timeout: float = 60.0,
    restart_delay: float = 10.0,
    gang: bool = False,
) -> Plan:
    if gang and desired > 0:
        together = gang_plan(desired=desired, version=version, replicas=replicas,
                             restart_always=restart_always)
        if together is not None:
            return together
    deletes: list[tuple[str, str]] = []
    active: list[Replica] = []
    waits: list[float] = []
    for replica in replicas:
        if replica.terminating:
            continue
        if replica.phase == LOST:
            deletes.append((replica.name, LOST_REASON))
        elif replica.phase in FAILED_PHASES and restart_always:
            crashed = replica.ran is not None and replica.ran < restart_delay
            if crashed and replica.ended is not None and replica.ended < restart_delay:
                waits.append(restart_delay - replica.ended)
                active.append(replica)
            else:
                deletes.append((replica.name, RESTART_REASON))
        else:
            active.append(replica)
    current = tuple(r for r in active if r.version == version)
    old = tuple(r for r in active if r.version != version)
    create = 0
    if desired <= 0:
        reason = STOPPED_REASON if stopped else ZERO_REASON
        deletes.extend((r.name, reason) for r in active)
    elif not old:
        if len(current) < desired:
            create = desired - len(current)
        else:
            surplus = victims(current, len(current) - desired, prefer=prefer)
            deletes.extend((r.name, SCALE_DOWN_REASON) for r in surplus)
    else:
        unsettled = [r for r in current if not settled(r, rollout_timeout=rollout_timeout)]
        keep_old = max(0, desired - (len(current) - len(unsettled)))
        if len(old) > keep_old:
            replaced = victims(old, len(old) - keep_old, prefer=prefer)
            deletes.extend((r.name, f"replaced by version {version}") for r in replaced)
        elif not unsettled and len(current) < desired:
            create = 1
        waits.extend(rollout_timeout - r.age for r in unsettled
                     if r.phase in PENDING_PHASES and not r.bound and not r.unschedulable)
    requeue_after = max(0.1, min(waits)) if waits else 0.0
    return Plan(delete=tuple(deletes), create=create, requeue_after=requeue_after,
                rolling=bool(old), current=current, old=old)
