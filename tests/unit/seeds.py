"""The seed documents' YAML examples (``tests/data/seeds``), for parametrized tests.

The files are copied verbatim from the product documents, so two of them are
not valid as they stand: the complete Workload indented with tabs (001 and 002
print the same one) and 002's Resourcecredit, whose ``priceUnit`` value was
lost when 002 was rendered as text.
"""

from __future__ import annotations

from pathlib import Path

from dora.api import codec, kinds
from dora.api.v1 import object_pb2

DIR = Path(__file__).resolve().parent.parent / "data" / "seeds"

TABS = ("001-02-workload-complete-tabs.yaml", "002-02-workload-complete-tabs.yaml")

# The kinds each file holds, in order: also proves the extraction missed nothing.
KINDS: dict[str, list[str]] = {
    "001-01-workload-simple.yaml": ["Workload"],
    "001-02-workload-complete.yaml": ["Workload"],
    "001-03-storage.yaml": ["Storage"],
    "001-04-volume.yaml": ["Volume"],
    "001-05-node.yaml": ["Node"],
    "001-06-workspace.yaml": ["Workspace"],
    "001-07-zone.yaml": ["Zone"],
    "001-08-role.yaml": ["Role"],
    "001-09-user.yaml": ["User"],
    "001-10-resourcecredit.yaml": ["Resourcecredit"],
    "002-01-workload-simple.yaml": ["Workload"],
    "002-03-storage.yaml": ["Storage"],
    "002-04-volume.yaml": ["Volume"],
    "002-05-volume-localpath.yaml": ["Volume"],
    "002-06-node.yaml": ["Node"],
    "002-07-workspace.yaml": ["Workspace"],
    "002-08-zone.yaml": ["Zone"],
    "002-09-role.yaml": ["Role"],
    "002-10-user.yaml": ["User"],
    "002-11-resourcecredit.yaml": ["Resourcecredit"],
    "004-01-zone-and-storage.yaml": ["Zone", "Storage"],
    "004-02-node-role.yaml": ["Role", "User"],
    "004-03-nodes.yaml": ["Node", "Node"],
    "004-04-role.yaml": ["Role"],
    "004-05-workspace-and-user.yaml": ["Workspace", "User"],
    "004-06-volume.yaml": ["Volume"],
    "004-07-resourcecredit.yaml": ["Resourcecredit"],
}


# The default scope the apiserver fills in when the YAML leaves zone/workspace out.
ZONE = "default"
WORKSPACE = "default"


def names() -> list[str]:
    """Every seed file that should decode (the tabs ones excluded)."""
    return sorted(KINDS)


def params() -> list[object]:
    """``names()`` for ``parametrize``."""
    return list(names())


def text(name: str) -> str:
    return (DIR / name).read_text(encoding="utf-8")


def decode(name: str) -> list[object_pb2.Object]:
    return codec.decode_yaml(text(name), source=name)


def one(name: str) -> object_pb2.Object:
    (obj,) = decode(name)
    return obj


def scoped(obj: object_pb2.Object) -> object_pb2.Object:
    """``obj`` with the default zone and workspace where its kind has them and it has none."""
    kind = kinds.get(obj.kind)
    if kind.zoned and not obj.metadata.zone:
        obj.metadata.zone = ZONE
    if kind.workspaced and not obj.metadata.workspace:
        obj.metadata.workspace = WORKSPACE
    return obj
