"""NodeRestriction (Kubernetes' admission plugin of that name): a node agent acts
on its own node and nothing else, whatever its roles grant.

A caller is a node when its token is bound to a Node (``doractl token create
node node agent-node1 --node node1``: ``Principal.node``), or when all its User
is granted is seed 004's ``Node: [report]`` (the shared ``node`` user). A node
may only

- read and report (``UpdateStatus``) its own Node;
- read, report and release (``Finalize``) the Containers bound to it: those whose
  ``dora.io/node`` or ``dora.io/placement`` label names it, which only the
  scheduler writes (the ``Bind`` verb);
- hold its own Lease object (``node.<name>``), and keep alive and revoke only
  the etcd leases it was granted (``LeasesService``);
- read Volumes and Storages, to mount what its Containers use.

Reads of several objects (List, Watch) are filtered to those; a single object
outside them is refused. A node user whose token is bound to no node (seed 004's
shared token, made before tokens were bound) may only read Nodes; anything more
is refused with how to make a token per node. One token per node means one
stolen token reaches one node's work, not the whole cluster's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dora.api import conventions, errors

# What a node may do, kind by kind (the verbs node-rep's ``Node: report`` implies).
NODE_VERBS: dict[str, frozenset[str]] = {
    "Node": frozenset({"Get", "UpdateStatus"}),
    "Container": frozenset({"Get", "UpdateStatus", "Finalize"}),
    "Lease": frozenset({"Get", "Apply", "Delete"}),
    "Volume": frozenset({"Get"}),
    "Storage": frozenset({"Get"}),
}
# A node user's token bound to no node: it may read Nodes, nothing more.
UNBOUND_VERBS: dict[str, frozenset[str]] = {"Node": frozenset({"Get"})}

# Whether a node may see an object of some kind: (name, labels, previous labels).
Visible = Callable[[str, Mapping[str, str], Mapping[str, str] | None], bool]


def verb_allowed(node: str, verb: str, kind: str) -> bool:
    """Whether a node (``""``: a node user's token bound to none) may ever do
    ``verb`` on ``kind``."""
    table = NODE_VERBS if node else UNBOUND_VERBS
    return verb in table.get(kind, frozenset())


def bound_to(labels: Mapping[str, str], node: str) -> bool:
    """Whether a Container with these labels is bound (or being bound) to ``node``."""
    return (labels.get(conventions.NODE_LABEL) == node
            or labels.get(conventions.PLACEMENT_LABEL) == node)


def visible(node: str, kind: str) -> Visible:
    """The objects of ``kind`` a node may read; for Containers, one that was bound to
    it in its previous version is seen too (its unbinding or deletion)."""
    if not node:
        return lambda name, labels, prev: kind == "Node"
    if kind == "Node":
        return lambda name, labels, prev: name == node
    if kind == "Lease":
        lease = conventions.node_lease_name(node)
        return lambda name, labels, prev: name == lease
    if kind == "Container":
        return lambda name, labels, prev: bound_to(labels, node) or (
            prev is not None and bound_to(prev, node))
    return lambda name, labels, prev: True


def check(node: str, user: str, verb: str, kind: str, name: str,
          labels: Mapping[str, str] | None) -> None:
    """Raise ``errors.Forbidden`` unless the node may do ``verb`` on this object
    (``labels``: the object's as stored; None when it does not exist)."""
    if not node:
        if verb_allowed(node, verb, kind):
            return
        raise unbound(user)
    if not verb_allowed(node, verb, kind):
        raise errors.Forbidden(f"node {node!r} may not {verb} {kind}")
    if kind == "Container" and (labels is None or not bound_to(labels, node)):
        raise errors.Forbidden(
            f"node {node!r} may only {verb} Containers bound to it; {name!r} is not")
    if not visible(node, kind)(name, labels or {}, None):
        what = "its own Node" if kind == "Node" else \
            f"its own Lease {conventions.node_lease_name(node)!r}"
        raise errors.Forbidden(f"node {node!r} may only {verb} {what}, not {name!r}")


def unbound(user: str) -> errors.Forbidden:
    return errors.Forbidden(
        f"this token of node user {user!r} is bound to no node, so it may only read "
        f"Nodes; give each agent a token of its own node: doractl token create {user} "
        f"{user} agent-NODE --node NODE")
