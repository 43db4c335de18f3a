"""What the daemons tell their operators: Prometheus metrics, health endpoints, logs.

- ``logs``: ``--log-format text|json`` for every daemon (stdlib logging; a JSON line
  per record, with the reconcile or request id when there is one).
- ``endpoint``: a small HTTP server for ``--metrics-listen``: ``/metrics`` (the
  process's Prometheus registry), ``/healthz`` and ``/readyz`` answered by checks
  the daemon hands in.
- ``metrics``: the metric families each component updates, declared once here so
  their names and labels are documented in one place (``docs`` in the README).

It imports nothing of Dora's: the apiserver, the controllers and the agent all use
it, and none of them may import another.
"""
