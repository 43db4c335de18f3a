"""The daemons' entry points: ``dora-apiserver``, ``dora-controllers``, ``dora-agent``,
``dora-web``.

The ``dora-gpu`` distribution installs the client by default (``doractl``, the
SDK); the daemons' own dependencies (etcd's client, Docker's, NVML, anyio, the
health and reflection services) come with the ``[server]`` extra. A daemon
started without them would die on an ``ImportError`` deep in its imports; these
entry points look for what the daemon needs first, and say what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

EXTRA = "pip install 'dora-gpu[server]'"

# The modules each daemon imports from the [server] extra.
NEEDS: dict[str, tuple[str, ...]] = {
    "apiserver": ("aetcd", "grpc_health", "grpc_reflection", "prometheus_client"),
    "controllers": ("anyio", "prometheus_client"),
    "agent": ("anyio", "docker", "pynvml"),
    "web": ("starlette", "uvicorn", "sse_starlette"),
}


def missing(component: str) -> list[str]:
    return [m for m in NEEDS[component] if importlib.util.find_spec(m) is None]


def _run(component: str) -> None:
    lacking = missing(component)
    if lacking:
        print(f"dora-{component} needs Dora's server side, which this install lacks "
              f"(no module {', '.join(lacking)}): {EXTRA}", file=sys.stderr)
        sys.exit(1)
    importlib.import_module(f"dora.{component}.main").main()


def apiserver() -> None:
    _run("apiserver")


def controllers() -> None:
    _run("controllers")


def agent() -> None:
    _run("agent")


def web() -> None:
    _run("web")


def desktop() -> None:
    """``dora-desktop`` (``doractl ui``): the web app on this machine, with its
    dependencies."""
    lacking = missing("web")
    if lacking:
        print(f"dora-desktop needs the web app's server side (no module "
              f"{', '.join(lacking)}): {EXTRA}", file=sys.stderr)
        sys.exit(1)
    importlib.import_module("dora.web.desktop").main()
