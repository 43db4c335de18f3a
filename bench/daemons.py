"""A real ``dora-agent`` and ``dora-controllers`` as processes, for the benchmarks that
need a node: the way ``hack/up.sh`` and ``hack/bootstrap.sh`` start them.

The node is declared the bootstrap's way (``hack/local-cluster.yaml``: the node-rep
role, the node user, the Node) and the agent logs in with a node token. Each
benchmark run gets a node name of its own; every Docker container labelled with it
is removed when the agent is stopped, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench.cluster import Cluster
from dora.api import codec, conventions, errors, objects
from dora.api.client import Client
from dora.api.v1 import object_pb2
from tests.integration.etcd import free_port

ROOT = Path(__file__).parent.parent
LOCAL_CLUSTER = ROOT / "hack" / "local-cluster.yaml"
BIN = Path(sys.executable).parent
ZONE = "default"
IMAGE = os.environ.get("DORA_BUSYBOX_IMAGE", "dora/busybox:latest")


@dataclass
class Daemon:
    name: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.returncode is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def new_node_name() -> str:
    return f"bench-{uuid.uuid4().hex[:8]}"


def local_cluster_objects(*, node: str, agent_addr: str, storage: Path,
                          zone: str = ZONE) -> list[object_pb2.Object]:
    """``hack/local-cluster.yaml`` with its variables filled, as bootstrap.sh applies it,
    its zoned objects moved to ``zone``."""
    text = LOCAL_CLUSTER.read_text()
    for key, value in (("DORA_STORAGE_PATH", str(storage)), ("DORA_NODE_NAME", node),
                       ("DORA_AGENT_ADDR", agent_addr)):
        text = text.replace(f"${key}", value)
    found = codec.decode_yaml(text, source=str(LOCAL_CLUSTER))
    for obj in found:
        if obj.metadata.zone:
            obj.metadata.zone = zone
    return found


async def declare_node(client: Client, *, node: str, workdir: Path,
                       zone: str = ZONE) -> tuple[str, Path]:
    """Declare ``node`` in ``zone`` (made if need be) and make its token; the agent's
    listen address and token file."""
    agent_addr = f"127.0.0.1:{free_port()}"
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    await client.apply(objects.new("Zone", zone))
    for obj in local_cluster_objects(node=node, agent_addr=agent_addr, storage=storage,
                                     zone=zone):
        await client.apply(obj)
    token, _ = await client.create_token("node", "node", node, node=node)
    token_file = workdir / f"{node}.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return agent_addr, token_file


async def _start(name: str, args: list[str], workdir: Path) -> Daemon:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            str(BIN / name), *args, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Daemon(name=name, process=process, log=log)


async def _until(daemon: Daemon, check: object, *, within: float, what: str) -> None:
    try:
        async with asyncio.timeout(within):
            while True:
                if not daemon.alive():
                    raise RuntimeError(f"{daemon.name} exited ({daemon.process.returncode}) "
                                       f"before {what}:\n{daemon.log_tail()}")
                with contextlib.suppress(errors.NotFound):
                    if await check():  # type: ignore[operator]
                        return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise RuntimeError(f"{what}: not within {within}s; {daemon.name} log:\n"
                           f"{daemon.log_tail()}") from None


def _remove_docker_containers(node: str) -> None:
    """Every Docker container labelled for ``node``, gone (the CLI: no SDK needed here)."""
    found = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=dora.node={node}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()
    if found:
        subprocess.run(["docker", "rm", "-f", *found], capture_output=True, check=False)


@contextlib.asynccontextmanager
async def agent(cluster: Cluster, client: Client, *, node: str,
                zone: str = ZONE) -> AsyncIterator[Daemon]:
    """A ``dora-agent`` process for a freshly declared ``node`` of ``zone`` on the local
    Docker engine, once its Node is Ready and it holds its Lease."""
    workdir = Path(tempfile.mkdtemp(prefix="dora-bench-agent-"))
    agent_addr, token_file = await declare_node(client, node=node, workdir=workdir, zone=zone)
    daemon = await _start("dora-agent", [
        "--server", cluster.target, "--token-file", str(token_file), "--node-name", node,
        "--zone", zone, "--listen", agent_addr, "--stop-timeout", "1",
        "--log-level", "WARNING",
    ], workdir)
    try:
        async def ready() -> bool:
            obj = await client.get("Node", node, zone=zone)
            await client.get("Lease", conventions.node_lease_name(node), zone=zone)
            return obj.node.status.phase == "Ready"

        await _until(daemon, ready, within=30, what=f"node {node} Ready")
        yield daemon
    finally:
        await daemon.stop()
        await asyncio.to_thread(_remove_docker_containers, node)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def controllers(cluster: Cluster, client: Client, *, zone: str = ZONE,
                      which: str = "workload,scheduler,gc") -> AsyncIterator[Daemon]:
    """A ``dora-controllers`` process (by default workload, scheduler and the garbage
    collector: deleting a workload deletes its containers) leading ``zone``."""
    workdir = Path(tempfile.mkdtemp(prefix="dora-bench-controllers-"))
    daemon = await _start("dora-controllers", [
        "--server", cluster.target, "--token-file", str(cluster.token_file), "--zone", zone,
        "--controllers", which, "--log-level", "WARNING",
    ], workdir)
    try:
        async def leading() -> bool:
            lease = await client.get("Lease", conventions.CONTROLLERS_LEASE, zone=zone)
            return bool(lease.lease.spec.holder)

        await _until(daemon, leading, within=30, what="the controllers to lead")
        yield daemon
    finally:
        await daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
