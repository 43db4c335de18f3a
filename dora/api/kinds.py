"""The table of Dora kinds.

Every layer asks this table what a kind is called (``Workload``, ``workloads``,
``wk``), whether it lives in a zone and a workspace, and which field of the
``Object`` oneof holds it. Adding a kind is a message in ``object.proto`` and a
row here.
"""

from __future__ import annotations

from dataclasses import dataclass

from dora.api import errors

# The kind names, for code: ``kinds.CONTAINER`` fails at import when misspelt, a
# string literal only when the object reaches the apiserver.
ZONE = "Zone"
WORKSPACE = "Workspace"
USER = "User"
ROLE = "Role"
STORAGE = "Storage"
NODE = "Node"
RESOURCECREDIT = "Resourcecredit"
USERCREDIT = "Usercredit"
WORKLOAD = "Workload"
CONTAINER = "Container"
VOLUME = "Volume"
LEASE = "Lease"
EVENT = "Event"
WORKLOADVERSION = "Workloadversion"
TASK = "Task"
QUOTA = "Quota"


@dataclass(frozen=True)
class Kind:
    name: str
    plural: str
    zoned: bool
    workspaced: bool
    has_status: bool
    aliases: tuple[str, ...] = ()

    @property
    def field(self) -> str:
        """The name of the kind's field in the ``Object.body`` oneof."""
        return self.name.lower()

    def names(self) -> tuple[str, ...]:
        return (self.name.lower(), self.plural, *self.aliases)


KINDS: tuple[Kind, ...] = (
    Kind(ZONE, "zones", zoned=False, workspaced=False, has_status=False, aliases=("z",)),
    Kind(
        WORKSPACE, "workspaces", zoned=False, workspaced=False, has_status=False,
        aliases=("ws", "group", "groups", "project", "projects"),
    ),
    Kind(USER, "users", zoned=False, workspaced=False, has_status=False, aliases=("u",)),
    Kind(ROLE, "roles", zoned=False, workspaced=False, has_status=False),
    Kind(STORAGE, "storages", zoned=True, workspaced=False, has_status=False, aliases=("st",)),
    Kind(NODE, "nodes", zoned=True, workspaced=False, has_status=True, aliases=("n", "no")),
    Kind(
        RESOURCECREDIT, "resourcecredits", zoned=True, workspaced=False, has_status=False,
        aliases=("rc", "credit", "credits"),
    ),
    Kind(USERCREDIT, "usercredits", zoned=True, workspaced=False, has_status=True,
         aliases=("uc",)),
    Kind(WORKLOAD, "workloads", zoned=True, workspaced=True, has_status=True,
         aliases=("wk", "wl")),
    Kind(CONTAINER, "containers", zoned=True, workspaced=True, has_status=True,
         aliases=("c", "ct")),
    Kind(VOLUME, "volumes", zoned=True, workspaced=True, has_status=True,
         aliases=("vol", "v")),
    Kind(LEASE, "leases", zoned=True, workspaced=False, has_status=False),
    Kind(EVENT, "events", zoned=True, workspaced=True, has_status=False, aliases=("ev",)),
    Kind(WORKLOADVERSION, "workloadversions", zoned=True, workspaced=True, has_status=False,
         aliases=("wv", "version", "versions")),
    Kind(TASK, "tasks", zoned=True, workspaced=True, has_status=True, aliases=("tk",)),
    Kind(QUOTA, "quotas", zoned=True, workspaced=False, has_status=False,
         aliases=("quo",)),
)

_BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
_BY_ALIAS: dict[str, Kind] = {alias: k for k in KINDS for alias in k.names()}


def get(name: str) -> Kind:
    """The kind called exactly ``name`` (``Workload``), as written in an object."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise errors.Invalid(
            f"unknown kind {name!r}; known kinds: {', '.join(_BY_NAME)}", field="kind"
        ) from None


def lookup(word: str) -> Kind:
    """The kind a user means by ``word``: its name, plural or a short alias, any case."""
    kind = _BY_NAME.get(word) or _BY_ALIAS.get(word.lower())
    if kind is None:
        raise errors.Invalid(f"unknown resource type {word!r}", field="kind")
    return kind
