"""The apiserver's gRPC services, one module each: ``resources`` (Apply, Get, List,
Watch, UpdateStatus, Delete), ``leases``, ``tokens``, ``workspaces``, ``devices``,
``pausing``, ``streams`` (logs, exec) and ``volumefiles``.

A service authorizes and then asks the registry, the watch cache or an agent. It
never authenticates: the gate (``dora.apiserver.gate``) did that before the
request was read, and the service reads the caller with ``rpc.caller()``.
"""
