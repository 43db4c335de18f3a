"""Dora: run AI workloads on GPU clusters, Kubernetes-style.

Packages, in dependency order:

- ``dora.api``: the typed resources (generated from ``proto/``), the YAML codec,
  the error tree and the client library. Every component depends on it.
- ``dora.apiserver``: the gRPC apiserver, the only process that talks to etcd.
- ``dora.ctl``: ``doractl``, the command line.
- ``dora.sdk``: the Python SDK; ``dora.Client``, ``dora.AsyncClient`` and
  ``dora.Workload``, ``dora.Task`` are its names here, imported when first used (so
  ``import dora`` stays free, and the daemons do not load the SDK).

Components never import each other; they meet through the API.
"""

from typing import Any

__version__ = "0.1.0"

_SDK = frozenset({"Client", "AsyncClient", "Workload", "Task", "Job", "Resource", "Applied",
                  "Synced", "Event", "ExecResult", "WaitTimeout", "errors"})


def __getattr__(name: str) -> Any:
    if name in _SDK:
        from dora import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SDK])
