"""The first start: an admin who can do everything, and the default scope.

On an empty etcd the apiserver writes, in one transaction guarded by
``/dora/bootstrap``, the ``admin`` Role (``All: [All]``), the ``admin`` User bound
to it everywhere, an admin token, and the default Zone and Workspace. The token
is returned once, to be printed and written to ``--admin-token-file``; every
later start finds the guard and creates nothing.
"""

from __future__ import annotations

from dora.api import objects
from dora.apiserver.auth.tokens import TokenStore
from dora.apiserver.registry import Registry

GUARD = b"/dora/bootstrap"
ADMIN = "admin"


async def bootstrap(*, registry: Registry, tokens: TokenStore) -> str | None:
    """The admin token if this start initialised the cluster, else None."""
    scope = registry.scope
    role = objects.new("Role", ADMIN)
    role.role.spec.permission["All"].verbs.append("All")
    user = objects.new("User", ADMIN)
    user.user.spec.defaults.zone = scope.zone
    user.user.spec.defaults.workspace = scope.workspace
    binding = user.user.spec.resources.add()
    binding.kind = binding.zone = binding.workspace = "All"
    binding.role = ADMIN
    zone = objects.new("Zone", scope.zone)
    workspace = objects.new("Workspace", scope.workspace)
    token, _, token_items = tokens.records(
        user=ADMIN, workspace=scope.workspace, token_id=ADMIN
    )
    items = [(GUARD, b"initialised")]
    items += [registry.record(obj) for obj in (zone, workspace, role, user)]
    items += token_items
    if await registry.etcd.put_all_unless(GUARD, items):
        return token
    return None
