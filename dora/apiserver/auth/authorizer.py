"""Authorization, exactly as the seeds define it.

A Role maps kinds to verbs (``Workload: [Apply, Get, ...]``; ``All`` stands for
every kind or every verb). A User binds roles to (kind or All, zone or All,
workspace or All). A caller may do VERB on an object of KIND in ZONE/WORKSPACE
when one of their bindings matches the object and its role grants the verb on
the kind. A binding's zone does not restrict kinds that have no zone, nor its
workspace kinds that have no workspace: a user of a workspace may read the
zone's Storages and Nodes when their role says so.

Some verbs imply others, because the seeds' roles are written in the product's
words: seed 004's ``node-rep`` role only says ``Node: [report]``, and a node
must also read and report the Containers bound to it, hold its Lease, and read
the Volumes and Storages those Containers mount.
``Describe`` allows what ``Get`` allows. The seed ``user`` role's other words mean
what a user of the seeds expects: ``Workload: [Event]`` and ``Container: [Event]``
read the Events of that workspace (the Events are about its Workloads and
Containers), ``Workload: [Version]`` reads the workload's Workloadversions
(restoring one is an Apply of the Workload), and ``Project`` is the seeds' word
for a Workspace.

A Workspace has no workspace of its own, so its name stands for one: a binding to
workspace ``amedeo.setti`` covers the Workspace object ``amedeo.setti`` (the user
may get, apply, clone or delete it when the role says so) and no other. Zones and
Workspaces are also readable wherever the caller has any binding at all, whatever
its role: that is what the zone and workspace menus offer (``visible_place``).

A Task takes Workload's verbs plus ``Kill`` and ``Retry``: an Apply that sets
``spec.killed`` or raises ``spec.retry`` needs them too (``services.resources``), and
mounting a volume of another workspace for its data, configs or output needs
``Use`` on that Volume, as a workload's volumes do.

Two seed verbs are about one's own object rather than a kind in a place: the
``user`` role's ``Usercredit: [GetOne]`` and ``User: [Credits]`` let a user
read the Usercredit that bears their own name (their credits, in each zone the
binding covers), and no one else's. Checks that may meet them take the object's
name.

Usercredits are personal and in no workspace, so a binding to one workspace
(the seed user's ``kind: All, workspace: amedeo.setti``) cannot reach other
users' credits whatever its role says: its Get, Describe or All on Usercredit
reads the caller's own Usercredit only (in Get, Describe, List and Watch alike).
Reading everyone's takes a binding with ``workspace: All``.

A node (a token bound to a Node, or a user granted only ``Node: report``) is
held to ``noderestriction`` on top of its roles: ``node_of`` says which node,
the verbs it may use are checked here, and which objects, by the service.

Decisions are made on the cached Users and Roles; a denial is checked once more
against etcd, so a role applied a moment ago is honoured at once. What a user's
cached bindings and roles come to is kept until the User or Role cache changes
at all (``KindCache.changes``), so a call does not rebuild it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dora.api import errors, kinds
from dora.api.objects import Ref
from dora.api.v1 import access_pb2, object_pb2
from dora.apiserver import registry
from dora.apiserver.auth import noderestriction
from dora.apiserver.watchcache import WatchCache

ALL = "All"
ANY_KIND = "*"

# (kind, verb) grants that let a caller read the Usercredit named after them.
OWN_CREDITS: frozenset[tuple[str, str]] = frozenset({("Usercredit", "getone"),
                                                     ("User", "credits")})
# Verbs on Usercredit (or on every kind) that read one's own Usercredit at least.
_READS = frozenset({"getone", "get", "describe", "all"})
# Kinds whose objects belong to one user and no workspace: a binding to one
# workspace grants on the caller's own only.
PERSONAL = frozenset({"Usercredit"})

IMPLIED: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("Node", "report"): {
        "Node": ("Get", "UpdateStatus"),
        "Container": ("Get", "UpdateStatus", "Finalize"),
        "Lease": ("Get", "Apply", "Delete"),
        # To mount a Container's volumes the agent reads them and their Storage.
        "Volume": ("Get",),
        "Storage": ("Get",),
    },
    ("Workload", "event"): {"Event": ("Get",)},
    ("Container", "event"): {"Event": ("Get",)},
    ("Workload", "version"): {"Workloadversion": ("Get",)},
}

# The seeds' words for kinds that Dora names otherwise.
KIND_ALIASES: dict[str, str] = {"Project": "Workspace"}

# Words of the seed roles that name no stored kind but what the nodes hold: a
# binding's zone restricts them, its workspace does not.
DEVICE_KINDS = frozenset({"CPU", "GPU"})

# Kinds a binding names by the object's own name (a Workspace is its own workspace).
PLACE_KINDS = frozenset({"Zone", "Workspace"})


_USER_PREFIX = registry.prefix(kinds.get("User"))


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and where their objects go by default."""

    user: str
    token_id: str = ""
    zone: str = ""
    workspace: str = ""
    # The Node the token is bound to: the caller acts as that node's agent.
    node: str = ""


@dataclass(frozen=True)
class _Rules:
    bindings: tuple[access_pb2.ResourceBinding, ...]
    roles: dict[str, access_pb2.RoleSpec]

    @functools.cached_property
    def node_only(self) -> bool:
        """Whether all these rules grant is ``Node: report`` (a node user's)."""
        grants = {(kind, verb.lower())
                  for binding in self.bindings
                  for kind, verb in _direct_grants(binding, self.roles.get(binding.role))}
        return grants == {("Node", "report")}


def _direct_grants(binding: access_pb2.ResourceBinding,
                   role: access_pb2.RoleSpec | None) -> Iterator[tuple[str, str]]:
    if role is None:
        return
    for permitted_kind, verbs in role.permission.items():
        if binding.kind not in (ALL, permitted_kind) and permitted_kind != ALL:
            continue
        for verb in verbs.verbs:
            yield permitted_kind, verb


class Authorizer:
    def __init__(self, *, cache: WatchCache, registry: registry.Registry) -> None:
        self._cache = cache
        self._registry = registry
        self._users = cache["User"]
        self._roles = cache["Role"]
        # user -> their cached rules, valid while (User, Role) changes are _stamp.
        self._rules: dict[str, _Rules] = {}
        self._stamp = (-1, -1)

    def user(self, name: str) -> object_pb2.Object | None:
        return self._users.get(_USER_PREFIX + name.encode())

    def node_of(self, principal: Principal) -> str | None:
        """The node the caller acts as (``noderestriction``): its token's node; ``""``
        for a node user whose token is bound to none; None when it is no node."""
        if principal.node:
            return principal.node
        return "" if self._cached_rules(principal).node_only else None

    def _node_allows(self, principal: Principal, verb: str, kind: str) -> bool:
        node = self.node_of(principal)
        return node is None or noderestriction.verb_allowed(node, verb, kind)

    def allows(self, principal: Principal, verb: str, kind: str, zone: str,
               workspace: str) -> bool:
        return self._node_allows(principal, verb, kind) and self._allows(
            self._cached_rules(principal), verb, kind, zone, workspace)

    async def require(self, principal: Principal, verb: str, kind: str, zone: str,
                      workspace: str) -> None:
        """Raise ``errors.Forbidden`` naming verb, kind, zone and workspace if not allowed."""
        if not self._node_allows(principal, verb, kind):
            node = self.node_of(principal)
            if node == "":
                raise noderestriction.unbound(principal.user)
            raise errors.Forbidden(f"node {node!r} may not {verb} {kind}")
        if self.allows(principal, verb, kind, zone, workspace):
            return
        if self._allows(await self._fresh_rules(principal), verb, kind, zone, workspace):
            return
        raise errors.Forbidden(_denied(principal, verb, kind, zone, workspace))

    async def require_somewhere(self, principal: Principal, verb: str, kind: str) -> None:
        """Raise unless the caller may do ``verb`` on ``kind`` in at least one place."""
        if not self._node_allows(principal, verb, kind):
            if self.node_of(principal) == "":
                raise noderestriction.unbound(principal.user)
            raise errors.Forbidden(f"node {principal.node!r} may not {verb} {kind}")
        for rules in (self._cached_rules(principal), await self._fresh_rules(principal)):
            if any(_verb_ok(verb, v) for k, v in self._grants(rules) if k in (kind, ANY_KIND)):
                return
        raise errors.Forbidden(f"user {principal.user!r} may not {verb} {kind} anywhere")

    def permits(
        self, principal: Principal, verb: str, kind: str
    ) -> Callable[[str, str, str], bool]:
        """A check of (zone, workspace, name) for filtering lists and watch events."""
        own = verb == "Get" and kind == "Usercredit"
        if not self._node_allows(principal, verb, kind):
            return lambda zone, workspace, name: False
        # (zone, workspace) -> allowed, for the rules it was decided on: a list asks
        # for every object, mostly of a few places.
        decided: dict[tuple[str, str], bool] = {}
        decided_on: list[_Rules] = []

        def check(zone: str, workspace: str, name: str) -> bool:
            rules = self._cached_rules(principal)
            if not decided_on or decided_on[0] is not rules:
                decided.clear()
                decided_on[:] = [rules]
            if kind in PLACE_KINDS:
                return self._allows_place(rules, verb, kind, name)
            allowed = decided.get((zone, workspace))
            if allowed is None:
                allowed = decided[zone, workspace] = self._allows(
                    rules, verb, kind, zone, workspace)
            return allowed or (own and self.allows_own(principal, kind, zone, name))

        return check

    def allows_place(self, principal: Principal, verb: str, kind: str, name: str) -> bool:
        """Whether the caller may do ``verb`` on the Zone or Workspace called ``name``."""
        return self._allows_place(self._cached_rules(principal), verb, kind, name)

    async def require_place(self, principal: Principal, verb: str, kind: str,
                            name: str) -> None:
        """``require`` for a Zone or Workspace, which a binding names by its name."""
        if self.allows_place(principal, verb, kind, name):
            return
        if self._allows_place(await self._fresh_rules(principal), verb, kind, name):
            return
        raise errors.Forbidden(f"user {principal.user!r} may not {verb} {kind} {name!r}")

    def _allows_place(self, rules: _Rules, verb: str, kind: str, name: str) -> bool:
        field = "zone" if kind == "Zone" else "workspace"
        for binding in rules.bindings:
            if getattr(binding, field) not in (ALL, name):
                continue
            if verb == "Get":
                return True  # any binding there makes the place visible
            if self._binding_allows(binding, rules, verb, kind):
                return True
        return False

    def allows_own(self, principal: Principal, kind: str, zone: str, name: str) -> bool:
        """Whether the caller may read ``kind/name`` in ``zone`` as their own object."""
        if kind != "Usercredit" or name != principal.user:
            return False
        return self.grants_own_credits(principal, zone=zone)

    def grants_own_credits(self, principal: Principal, *, zone: str | None = None) -> bool:
        """Whether a binding (in ``zone``, or anywhere) grants reading one's own credits."""
        rules = self._cached_rules(principal)
        for binding in rules.bindings:
            if zone is not None and binding.zone not in (ALL, zone):
                continue
            for granted_kind, granted_verb in self._binding_grants(binding, rules):
                verb = granted_verb.lower()
                if (granted_kind, verb) in OWN_CREDITS or (
                        granted_kind in ("Usercredit", ANY_KIND) and verb in _READS) or (
                        granted_kind == ANY_KIND and verb == "credits"):
                    return True
        return False

    def _cached_rules(self, principal: Principal) -> _Rules:
        stamp = (self._users.changes, self._roles.changes)
        if stamp != self._stamp:
            self._rules.clear()
            self._stamp = stamp
        rules = self._rules.get(principal.user)
        if rules is None:
            rules = self._rules[principal.user] = self._rules_of(principal.user)
        return rules

    def _rules_of(self, name: str) -> _Rules:
        user = self.user(name)
        if user is None:
            return _Rules((), {})
        roles = {}
        for binding in user.user.spec.resources:
            role = self._roles.get(registry.key(Ref("Role", "", "", binding.role)))
            if role is not None:
                roles[binding.role] = role.role.spec
        return _Rules(tuple(user.user.spec.resources), roles)

    async def _fresh_rules(self, principal: Principal) -> _Rules:
        try:
            user = await self._registry.get(Ref("User", "", "", principal.user))
        except errors.NotFound:
            return _Rules((), {})
        roles = {}
        for binding in user.user.spec.resources:
            try:
                role = await self._registry.get(Ref("Role", "", "", binding.role))
            except errors.NotFound:
                continue
            roles[binding.role] = role.role.spec
        return _Rules(tuple(user.user.spec.resources), roles)

    def _allows(self, rules: _Rules, verb: str, kind_name: str, zone: str,
                workspace: str) -> bool:
        if kind_name in DEVICE_KINDS:
            zoned, workspaced = True, False
        else:
            kind = kinds.get(kind_name)
            kind_name, zoned, workspaced = kind.name, kind.zoned, kind.workspaced
        for binding in rules.bindings:
            if zoned and binding.zone not in (ALL, zone):
                continue
            if workspaced and binding.workspace not in (ALL, workspace):
                continue
            if kind_name in PERSONAL and binding.workspace != ALL:
                continue  # only the caller's own: ``allows_own``
            if self._binding_allows(binding, rules, verb, kind_name):
                return True
        return False

    def _binding_allows(self, binding: access_pb2.ResourceBinding, rules: _Rules,
                        verb: str, kind_name: str) -> bool:
        """Whether one binding's role grants ``verb`` on ``kind_name`` (its scope aside)."""
        return any(granted_kind in (kind_name, ANY_KIND) and _verb_ok(verb, granted_verb)
                   for granted_kind, granted_verb in self._binding_grants(binding, rules))

    def _grants(self, rules: _Rules) -> Iterator[tuple[str, str]]:
        for binding in rules.bindings:
            yield from self._binding_grants(binding, rules)

    def _binding_grants(
        self, binding: access_pb2.ResourceBinding, rules: _Rules
    ) -> Iterator[tuple[str, str]]:
        role = rules.roles.get(binding.role)
        if role is None:
            return
        for permitted, verbs in role.permission.items():
            permitted_kind = KIND_ALIASES.get(permitted, permitted)
            if permitted_kind == ALL:
                kind = ANY_KIND if binding.kind == ALL else binding.kind
            elif binding.kind in (ALL, permitted, permitted_kind):
                kind = permitted_kind
            else:
                continue
            for verb in verbs.verbs:
                yield kind, verb
                implied_by = IMPLIED.get((kind, verb), IMPLIED.get((kind, verb.lower()), {}))
                for implied_kind, implied_verbs in implied_by.items():
                    for implied in implied_verbs:
                        yield implied_kind, implied


def _verb_ok(wanted: str, granted: str) -> bool:
    if granted == ALL or granted.lower() == wanted.lower():
        return True
    return wanted == "Get" and granted == "Describe"


def _denied(principal: Principal, verb: str, kind: str, zone: str, workspace: str) -> str:
    where = []
    if zone:
        where.append(f"zone {zone!r}")
    if workspace:
        where.append(f"workspace {workspace!r}")
    place = f" in {', '.join(where)}" if where else ""
    return f"user {principal.user!r} may not {verb} {kind}{place}"
