"""The Dora apiserver: thin, stateless, the only process that talks to etcd.

In layers, each importing only those below it (an import-linter contract, see
``README.md`` here):

- ``main``: the ``dora-apiserver`` command; ``server``: the process (etcd, cache,
  gRPC with health and reflection).
- ``gate``: the server interceptor that authenticates every call once, bounds what
  each caller has in flight and puts the caller on the call; ``services``: one
  module per gRPC service (``resources``, ``leases``, ``tokens``, ``workspaces``,
  ``devices``, ``pausing``, ``streams``, ``volumefiles``), which authorize and
  then ask the registry, the cache or an agent.
- ``rpc``: the gRPC plumbing the services share (``unary``, ``abort``,
  ``Context``, ``caller``).
- ``auth``: tokens, the admin bootstrap, authentication and authorization;
  ``admission``: defaults and validation, pure functions of an object, handed to
  the registry.
- ``watchcache``: one etcd watch per kind, fanned out to every watcher.
- ``registry``: Kubernetes' object semantics (keys, apply, status, delete, lists).
- ``storage``: etcd through ``aetcd`` (the only importer of it).

May import ``dora.api``; never ``dora.ctl`` or other components.
"""
