"""The reconcile runtime: controller-runtime's contract, in anyio.

- ``clock``: the time seam (``RealClock``, ``FakeClock``).
- ``cache``: stores of objects with indexes, filled by informers.
- ``informer``: list + watch from a resourceVersion, relist when gone, resync.
- ``queue``: the work queue (dedup, one worker per key, backoff, delayed adds).
- ``reconcile``: ``Result``, ``TerminalError``, the ``Controller`` loop.
- ``leader``: leader election on a Lease bound to an etcd lease.
- ``manager``: wires informers, controllers and leader election together.
- ``handlers``: ``Watch`` (kind, predicate, key mapper) and ``Hook``; ``own_key``,
  ``owner_key(kind)``; predicates (``generation_changed``, ``labels_changed``...).
- ``registry``: ``ControllerSpec`` (one object declares a controller), ``Option``,
  ``REGISTRY``.
- ``status``: ``write_status``, the one conditional status writer.
- ``testing``: ``FakeClient`` and ``Harness`` for reconcilers' unit tests.

Knows no kind in particular; imports ``dora.api`` only.
"""
