"""Small helpers over the ``Object`` envelope: scope, references, the typed body."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import message

from dora.api import kinds
from dora.api.v1 import object_pb2, resources_pb2


@dataclass(frozen=True, order=True)
class Ref:
    """Where an object lives: kind, zone, workspace and name (empty when not scoped)."""

    kind: str
    zone: str
    workspace: str
    name: str

    def __str__(self) -> str:
        scope = "/".join(p for p in (self.zone, self.workspace) if p)
        where = f" in {scope}" if scope else ""
        return f"{self.kind.lower()}/{self.name}{where}"

    def to_proto(self) -> resources_pb2.ObjectRef:
        return resources_pb2.ObjectRef(
            kind=self.kind, zone=self.zone, workspace=self.workspace, name=self.name
        )

    @classmethod
    def from_proto(cls, ref: resources_pb2.ObjectRef) -> Ref:
        return cls(ref.kind, ref.zone, ref.workspace, ref.name)


def ref_of(obj: object_pb2.Object) -> Ref:
    meta = obj.metadata
    return Ref(obj.kind, meta.zone, meta.workspace, meta.name)


def body(obj: object_pb2.Object) -> message.Message:
    """The typed kind message inside the envelope (``obj.workload`` for a Workload)."""
    return getattr(obj, kinds.get(obj.kind).field)  # type: ignore[no-any-return]


def new(kind: str, name: str, *, zone: str = "", workspace: str = "") -> object_pb2.Object:
    """An empty object of ``kind``, its body set, ready to fill."""
    obj = object_pb2.Object(api_version="v1", kind=kinds.get(kind).name)
    obj.metadata.name = name
    obj.metadata.zone = zone
    obj.metadata.workspace = workspace
    body(obj).SetInParent()
    return obj
