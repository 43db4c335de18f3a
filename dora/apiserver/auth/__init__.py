"""Who is calling, and what they may do.

- ``tokens``: bearer tokens, stored in etcd only as SHA-256 hashes.
- ``authorizer``: Role.spec.permission (kind -> verbs) bound to users by
  User.spec.resources (kind, zone, workspace, role), as the seeds define them.
- ``bootstrap``: the admin role, user and token made once, at the first start.
"""
