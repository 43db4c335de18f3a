"""The Dora apiserver: thin, stateless, the only process that talks to etcd.

- ``storage``: etcd through ``aetcd`` (the only importer of it).
- ``registry``: Kubernetes' object semantics (keys, apply, status, delete, lists).
- ``admission``: defaults and validation, pure functions of an object.
- ``watchcache``: one etcd watch per kind, fanned out to every watcher.
- ``service``: the ``Resources`` gRPC service over registry and cache.
- ``leases``: the ``Leases`` gRPC service (etcd leases for liveness and election).
- ``auth``: tokens, the admin bootstrap, authentication and authorization.
- ``tokens_service``, ``workspaces``: the ``Tokens`` and ``Workspaces`` services.
- ``server``: the process: etcd, cache, gRPC with health and reflection.
- ``main``: the ``dora-apiserver`` command.

May import ``dora.api``; never ``dora.ctl`` or other components.
"""
