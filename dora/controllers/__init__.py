"""Dora's controllers: level-triggered loops that make the cluster match its objects.

Each controller is a module that registers a ``ControllerSpec`` in
``dora.runtime.registry.REGISTRY`` (the framework lives in ``dora.runtime``):

- ``workload``: Workloads to Containers (scale, versions, rolling replacement,
  restart policy, status).
- ``scheduler``: binds pending Containers to nodes (filters, strategies, the
  binder that keeps GPUs exclusive).
- ``nodelifecycle``: nodes whose agent lease expired become NotReady; their
  containers are replaced.
- ``volume``, ``credit``, ``task``: Volumes, Usercredits, Tasks' jobs;
  ``payers``: the link from a spent Usercredit to what it pays for.
- ``gpuhealth``: a Warning Event on each container whose GPU its agent reports
  Unhealthy (the scheduler already gives that GPU nothing new).
- ``events``: Event objects for ``doractl describe``; ``conditions``: status
  conditions.
- ``main``: the ``dora-controllers`` command, built from the registry.

Reaches the cluster only through ``dora.api.client``; imports ``dora.api`` and
nothing of ``dora.apiserver``, ``dora.agent`` or ``dora.ctl``.
"""
