"""A private etcd and a ``dora-apiserver`` process for one benchmark run.

The apiserver runs as its own process, as in production, so the load generator
and the server do not share an interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from dora.api import client as dora_client
from dora.apiserver.storage import Etcd
from tests.integration.etcd import EtcdProcess, free_port


@dataclass
class Cluster:
    etcd_endpoint: str
    target: str
    token: str
    token_file: Path
    # What the apiserver and the agents share to call each other (bench.tasks serves
    # a node's files in-process with it).
    agent_secret: str
    # The processes, for their CPU time and memory (``/proc``).
    apiserver_pid: int = 0
    etcd_pid: int = 0


@contextlib.asynccontextmanager
async def running(*, watch_window: int = 10_000, etcd: EtcdProcess | None = None,
                  token_file: Path | None = None) -> AsyncIterator[Cluster]:
    """etcd and an apiserver; with ``etcd`` (and the ``token_file`` of an apiserver that
    ran on it before), a fresh apiserver on that etcd, which is left running."""
    own_etcd = etcd is None
    if etcd is None:
        etcd = EtcdProcess()
        etcd.start()
    token_file = token_file or Path(tempfile.mkdtemp(prefix="dora-bench-")) / "admin.token"
    agent_secret = secrets.token_hex(32)
    secret_file = token_file.parent / "agent.secret"
    secret_file.write_text(agent_secret + "\n")
    secret_file.chmod(0o600)
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dora.apiserver.main", "--etcd-endpoints", etcd.endpoint,
        "--listen", f"127.0.0.1:{port}", "--admin-token-file", str(token_file),
        "--watch-window", str(watch_window), "--agent-secret-file", str(secret_file),
        "--log-level", "WARNING",
        # The figures create tens of thousands of objects in one workspace: no quota.
        "--max-objects-per-workspace", "100000000", "--max-workloads-per-user", "100000000",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        target = f"127.0.0.1:{port}"
        async with asyncio.timeout(30):
            while True:
                token = token_file.read_text().strip() if token_file.exists() else ""
                if token:
                    break
                await asyncio.sleep(0.05)
            async with dora_client.Client(target, token=token) as probe:
                while True:
                    try:
                        await probe.whoami()
                        break
                    except Exception:
                        await asyncio.sleep(0.05)
        yield Cluster(etcd_endpoint=etcd.endpoint, target=target, token=token,
                      token_file=token_file, agent_secret=agent_secret,
                      apiserver_pid=process.pid,
                      etcd_pid=etcd.process.pid if etcd.process is not None else 0)
    finally:
        process.terminate()
        await process.wait()
        if own_etcd:
            etcd.cleanup()
            shutil.rmtree(token_file.parent, ignore_errors=True)


@contextlib.asynccontextmanager
async def raw_etcd(endpoint: str) -> AsyncIterator[Etcd]:
    """The same aetcd-based client the apiserver uses, straight to etcd."""
    etcd = Etcd([endpoint])
    await etcd.connect()
    try:
        yield etcd
    finally:
        await etcd.close()
