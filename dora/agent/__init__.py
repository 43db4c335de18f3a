"""The node agent, ``dora-agent``: one per node, the only component that touches Docker.

It tells the cluster what its node has, holds the node's Lease, and runs on
Docker exactly the Containers the scheduler bound to the node, reporting their
state. Modules, from the bottom up:

- ``inventory``: CPU, memory and GPUs; GPUs through an ``NVML`` protocol (the
  real one is ``pynvml``, tests hand in a fake, ``--simulate-gpus`` a simulation).
- ``dockerspec``: pure translation between a Container and a Docker container:
  name, labels, run options, and a Docker state read back.
- ``docker_driver``: the ``Engine`` protocol and ``DockerDriver``, docker-py off
  the event loop; with ``docker_streams``, the only modules that import ``docker``.
- ``lease``: the node's Lease, held through the apiserver (at most one agent per node).
- ``containers``: the reconcile of one Container key.
- ``nodestatus``: the Node status reporter.
- ``server``: the gRPC server on ``--listen`` that apiservers call (shared-secret
  check, a list of services); ``streams`` (``AgentStreams``: logs and exec) and
  ``docker_streams`` (Docker log streams and exec sessions, a thread per stream) are
  served on it.
- ``agent``: starts all of the above in order, and the agent's controller on
  ``dora.runtime`` (informers of its Containers and its Node, a work queue, the
  clock seam), with a poll of Docker as a second source of keys.
- ``main``: the ``dora-agent`` command.

It may import ``dora.api`` (the client, objects, errors), ``dora.runtime``,
``docker`` and ``pynvml``; never ``dora.apiserver``, ``dora.controllers`` or ``dora.ctl``.
"""
