"""Objects for the controllers' unit tests."""

from __future__ import annotations

from dora.api import kinds, objects
from dora.api.v1 import object_pb2


def obj(kind: str, name: str, *, rv: int = 1, zone: str = "z", workspace: str = "w",
        uid: str = "", owner: str = "", node: str = "") -> object_pb2.Object:
    """An object as a cache holds it: scoped, versioned, with a uid."""
    kind_info = kinds.get(kind)
    made = objects.new(kind, name, zone=zone if kind_info.zoned else "",
                       workspace=workspace if kind_info.workspaced else "")
    made.metadata.resource_version = rv
    made.metadata.uid = uid or f"uid-{name}"
    if owner:
        made.metadata.owner_references.add(kind="Workload", name=owner, uid=f"uid-{owner}",
                                           controller=True)
    if node:
        made.container.spec.node_name = node
    return made
