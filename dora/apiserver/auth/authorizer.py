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
``Describe`` allows what ``Get`` allows.

A Task takes Workload's verbs plus ``Kill`` and ``Retry``: an Apply that sets
``spec.killed`` or raises ``spec.retry`` needs them too (``service``), and
mounting a volume of another workspace for its data, configs or output needs
``Use`` on that Volume, as a workload's volumes do.

Two seed verbs are about one's own object rather than a kind in a place: the
``user`` role's ``Usercredit: [GetOne]`` and ``User: [Credits]`` let a user
read the Usercredit that bears their own name (their credits, in each zone the
binding covers), and no one else's. Checks that may meet them take the object's
name.

Decisions are made on the cached Users and Roles; a denial is checked once more
against etcd, so a role applied a moment ago is honoured at once. What a user's
cached bindings and roles come to is kept until the User or Role cache changes
at all (``KindCache.changes``), so a call does not rebuild it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dora.api import errors, kinds
from dora.api.objects import Ref
from dora.api.v1 import access_pb2, object_pb2
from dora.apiserver import registry
from dora.apiserver.watchcache import WatchCache

ALL = "All"
ANY_KIND = "*"

# (kind, verb) grants that let a caller read the Usercredit named after them.
OWN_CREDITS: frozenset[tuple[str, str]] = frozenset({("Usercredit", "getone"),
                                                     ("User", "credits")})

IMPLIED: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("Node", "report"): {
        "Node": ("Get", "UpdateStatus"),
        "Container": ("Get", "UpdateStatus", "Finalize"),
        "Lease": ("Get", "Apply", "Delete"),
        # To mount a Container's volumes the agent reads them and their Storage.
        "Volume": ("Get",),
        "Storage": ("Get",),
    },
}


_USER_PREFIX = registry.prefix(kinds.get("User"))


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and where their objects go by default."""

    user: str
    token_id: str = ""
    zone: str = ""
    workspace: str = ""


@dataclass(frozen=True)
class _Rules:
    bindings: tuple[access_pb2.ResourceBinding, ...]
    roles: dict[str, access_pb2.RoleSpec]


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

    def allows(self, principal: Principal, verb: str, kind: str, zone: str,
               workspace: str) -> bool:
        return self._allows(self._cached_rules(principal), verb, kind, zone, workspace)

    async def require(self, principal: Principal, verb: str, kind: str, zone: str,
                      workspace: str) -> None:
        """Raise ``errors.Forbidden`` naming verb, kind, zone and workspace if not allowed."""
        if self.allows(principal, verb, kind, zone, workspace):
            return
        if self._allows(await self._fresh_rules(principal), verb, kind, zone, workspace):
            return
        raise errors.Forbidden(_denied(principal, verb, kind, zone, workspace))

    async def require_somewhere(self, principal: Principal, verb: str, kind: str) -> None:
        """Raise unless the caller may do ``verb`` on ``kind`` in at least one place."""
        for rules in (self._cached_rules(principal), await self._fresh_rules(principal)):
            if any(_verb_ok(verb, v) for k, v in self._grants(rules) if k in (kind, ANY_KIND)):
                return
        raise errors.Forbidden(f"user {principal.user!r} may not {verb} {kind} anywhere")

    def permits(
        self, principal: Principal, verb: str, kind: str
    ) -> Callable[[str, str, str], bool]:
        """A check of (zone, workspace, name) for filtering lists and watch events."""
        own = verb == "Get" and kind == "Usercredit"
        # (zone, workspace) -> allowed, for the rules it was decided on: a list asks
        # for every object, mostly of a few places.
        decided: dict[tuple[str, str], bool] = {}
        decided_on: list[_Rules] = []

        def check(zone: str, workspace: str, name: str) -> bool:
            rules = self._cached_rules(principal)
            if not decided_on or decided_on[0] is not rules:
                decided.clear()
                decided_on[:] = [rules]
            allowed = decided.get((zone, workspace))
            if allowed is None:
                allowed = decided[zone, workspace] = self._allows(
                    rules, verb, kind, zone, workspace)
            return allowed or (own and self.allows_own(principal, kind, zone, name))

        return check

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
                        granted_kind == ANY_KIND and verb in ("getone", "credits")):
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
        kind = kinds.get(kind_name)
        for binding in rules.bindings:
            if kind.zoned and binding.zone not in (ALL, zone):
                continue
            if kind.workspaced and binding.workspace not in (ALL, workspace):
                continue
            for granted_kind, granted_verb in self._binding_grants(binding, rules):
                if granted_kind in (kind.name, ANY_KIND) and _verb_ok(verb, granted_verb):
                    return True
        return False

    def _grants(self, rules: _Rules) -> Iterator[tuple[str, str]]:
        for binding in rules.bindings:
            yield from self._binding_grants(binding, rules)

    def _binding_grants(
        self, binding: access_pb2.ResourceBinding, rules: _Rules
    ) -> Iterator[tuple[str, str]]:
        role = rules.roles.get(binding.role)
        if role is None:
            return
        for permitted_kind, verbs in role.permission.items():
            if permitted_kind == ALL:
                kind = ANY_KIND if binding.kind == ALL else binding.kind
            elif binding.kind in (ALL, permitted_kind):
                kind = permitted_kind
            else:
                continue
            for verb in verbs.verbs:
                yield kind, verb
                for implied_kind, implied_verbs in IMPLIED.get((kind, verb), {}).items():
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
