"""Dora: run AI workloads on GPU clusters, Kubernetes-style.

Packages, in dependency order:

- ``dora.api``: the typed resources (generated from ``proto/``), the YAML codec,
  the error tree and the client library. Every component depends on it.
- ``dora.apiserver``: the gRPC apiserver, the only process that talks to etcd.
- ``dora.ctl``: ``doractl``, the command line.

Components never import each other; they meet through the API.
"""

__version__ = "0.1.0"
