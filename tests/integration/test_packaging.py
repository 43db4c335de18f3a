"""The dora-gpu distribution: a client install by default, the daemons with [server].

Builds the wheel from a copy of the sources, installs it into a fresh virtual
environment from the package index (pip's cache makes that quick on a machine that
installed the project before), and checks what a laptop gets: ``doractl`` and the
SDK work, Docker's and etcd's clients are absent, and a daemon's entry point says
to install the extra. Then it adds ``[server]`` and the daemons start. The sizes and
times are printed (``-s``) for the README.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_ctl_support import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          check=check, timeout=600)


def size_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def test_the_client_install_lacks_the_server_and_the_extra_adds_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "dora", src / "dora",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--wheel-dir", dist, src)
    (wheel,) = dist.glob("dora_gpu-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    bin_ = venv / "bin"
    before = size_mib(venv)
    started = time.monotonic()
    run(bin_ / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        wheel)
    client_seconds = time.monotonic() - started
    client_mib = size_mib(venv) - before

    assert "Usage: doractl" in run(bin_ / "doractl", "--help").stdout
    assert run(bin_ / "doractl", "version", "--client").stdout.startswith("Client Version: ")
    assert run(bin_ / "dora", "--version").stdout.startswith("doractl ")
    sdk = run(bin_ / "python", "-c", "import dora; print(dora.Client.__name__, "
              "dora.Workload('x', image='i').to_dict()['kind'])")
    assert sdk.stdout.split() == ["Client", "Workload"]
    for module in ("docker", "aetcd", "pynvml", "anyio", "grpc_health"):
        absent = run(bin_ / "python", "-c", f"import {module}", check=False)
        assert absent.returncode != 0 and "ModuleNotFoundError" in absent.stderr, module
    for daemon in ("dora-apiserver", "dora-controllers", "dora-agent"):
        refused = run(bin_ / daemon, "--help", check=False)
        assert refused.returncode == 1, daemon
        assert "pip install 'dora-gpu[server]'" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr

    middle = size_mib(venv)
    started = time.monotonic()
    run(bin_ / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        f"{wheel}[server]")
    server_seconds = time.monotonic() - started
    server_mib = size_mib(venv) - middle
    for daemon in ("dora-apiserver", "dora-controllers", "dora-agent"):
        assert "usage:" in run(bin_ / daemon, "--help").stdout, daemon
    run(bin_ / "python", "-c", "import docker, aetcd, pynvml")
    print(f"\nclient install: {client_mib:.1f} MiB in {client_seconds:.1f} s; "
          f"[server] adds {server_mib:.1f} MiB in {server_seconds:.1f} s")
