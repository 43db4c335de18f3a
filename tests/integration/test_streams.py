"""Logs and exec end to end: client → apiserver → agent's stream server → real dockerd.

Real etcd, the real apiserver in-process, a real agent (running the Containers on
the real Docker engine) and its gRPC stream server on a free port, which the
Node's ``spec.endpoint`` names. The test plays the scheduler (``agent_harness``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from dora.agent.docker_streams import DockerStreams
from dora.agent.server import AgentServer
from dora.agent.streams import AgentStreamsService
from dora.api import agentauth, errors, objects
from dora.api.client import Client
from dora.api.v1 import streams_pb2, streams_pb2_grpc
from dora.apiserver.server import APIServer, Config
from tests.integration import agent_harness as h
from tests.integration.test_ctl_support import ROOT, Ctl

pytestmark = pytest.mark.usefixtures("default_scope")

SECRET = "test-secret-0123456789abcdef"
COUNTER = "sh -c 'i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done'"


@pytest.fixture
def apiserver_config(apiserver_config: Config) -> Config:
    return dataclasses.replace(apiserver_config, agent_secret=SECRET)


@pytest.fixture
def node(docker: Any) -> Iterator[str]:
    name = h.new_node_name()
    with h.cleaned(docker, name):
        yield name


@contextlib.asynccontextmanager
async def agent_server(node: str, *, secret: str | None = SECRET) -> AsyncIterator[AgentServer]:
    streams = DockerStreams(node=node, host="unix:///var/run/docker.sock")
    server = AgentServer(listen="127.0.0.1:0", secret=secret,
                         handlers=[AgentStreamsService(docker=streams).handler()])
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)
        streams.close()


async def declare(client: Client, node: str, endpoint: str) -> None:
    obj = objects.new("Node", node, zone=h.ZONE)
    obj.node.spec.endpoint = endpoint
    obj.node.spec.allow.extend(["CPUWorkload"])
    await client.apply(obj)


@dataclasses.dataclass
class Cluster:
    client: Client
    node: str
    server: AgentServer


@pytest.fixture
async def cluster(client: Client, node: str) -> AsyncIterator[Cluster]:
    """The Node declared at the agent's stream server, and the agent running."""
    async with agent_server(node) as server:
        await declare(client, node, f"http://127.0.0.1:{server.port}")
        async with h.running_agent(client, node):
            yield Cluster(client, node, server)


async def running(client: Client, name: str, node: str, cmd: str = "sleep 600",
                  workload: str = "web") -> None:
    await client.apply(h.bound(name, node, cmd=cmd, workload=workload))
    await h.phase_of(client, name, "Running")


async def read_until(stream: AsyncIterator[bytes], pattern: bytes, *,
                     within: float = 10.0) -> bytes:
    seen = b""
    async with asyncio.timeout(within):
        async for data in stream:
            seen += data
            if re.search(pattern, seen):
                return seen
    raise AssertionError(f"stream ended before {pattern!r}; saw {seen!r}")


# -- logs -------------------------------------------------------------------------------


async def test_logs_follow_shows_lines_as_the_container_prints_them(cluster: Cluster) -> None:
    await running(cluster.client, "counter", cluster.node, COUNTER)
    stream = cluster.client.logs("counter", follow=True)
    first = await read_until(stream, rb"line \d+\r\n")
    last = max(int(n) for n in re.findall(rb"line (\d+)\r\n", first))
    loop = asyncio.get_running_loop()
    started = loop.time()
    # Lines the container prints only after the stream was opened arrive one by one.
    later = await read_until(stream, rf"line {last + 3}\r\n".encode())
    assert loop.time() - started >= 0.4  # three more lines take 0.6 s to be printed
    numbers = [int(n) for n in re.findall(rb"line (\d+)\r\n", first + later)]
    assert numbers == list(range(numbers[0], last + 4))
    await stream.aclose()  # type: ignore[attr-defined]


async def test_logs_tail_and_no_follow_end(cluster: Cluster) -> None:
    await running(cluster.client, "printer", cluster.node,
                  "sh -c 'for i in 1 2 3 4 5; do echo n$i; done; sleep 600'")

    async def tail() -> bytes:
        return b"".join([c async for c in cluster.client.logs("printer", tail_lines=2)])

    async def printed() -> bool:
        return (await tail()).endswith(b"n5\r\n")

    await h.eventually(printed, what="the five lines")
    # A TTY's output: lines end in \r\n (as docker logs shows a `docker run -t`).
    assert await tail() == b"n4\r\nn5\r\n"
    everything = b"".join([c async for c in cluster.client.logs("printer")])
    assert everything == b"n1\r\nn2\r\nn3\r\nn4\r\nn5\r\n"


# -- exec -------------------------------------------------------------------------------


async def test_exec_returns_output_and_the_remote_exit_code(cluster: Cluster) -> None:
    await running(cluster.client, "box", cluster.node)
    async with cluster.client.exec("box", ["sh", "-c", "echo out; echo err >&2; exit 7"]) as s:
        out, err, code = await s.wait()
    assert (out, err, code) == (b"out\n", b"err\n", 7)
    async with cluster.client.exec("box", ["true"]) as s:
        assert (await s.wait())[2] == 0
    async with cluster.client.exec("box", ["no-such-command"]) as s:
        out, err, code = await s.wait()
    assert code in (126, 127) and b"no-such-command" in out + err


async def test_exec_pipes_stdin_until_it_is_closed(cluster: Cluster) -> None:
    await running(cluster.client, "box", cluster.node)
    async with cluster.client.exec("box", ["sh", "-c", "wc -c; exit 4"], stdin=True) as s:
        await s.send(b"hello ")
        await s.send(b"world\n")
        await s.close_stdin()
        out, _, code = await s.wait()
    assert (out.strip(), code) == (b"12", 4)


async def test_exec_with_a_tty_is_interactive_and_resizes(cluster: Cluster) -> None:
    await running(cluster.client, "box", cluster.node)
    async with cluster.client.exec("box", ["sh"], tty=True, stdin=True,
                                   rows=30, cols=100) as s:
        output = (data async for _, data in s.output())
        await s.send(b"stty size\n")
        await read_until(output, rb"30 100\r\n")
        await s.resize(rows=33, cols=111)
        await s.send(b"stty size; echo h''i\n")
        await read_until(output, rb"33 111\r\nhi\r\n")
        await s.send(b"exit 3\n")
        async for _ in output:
            pass
        assert s.exit_code == 3


async def test_exec_of_a_container_not_running_is_a_failed_precondition(
    cluster: Cluster,
) -> None:
    pending = h.bound("pending", cluster.node)
    pending.container.spec.node_name = ""
    del pending.metadata.labels["dora.io/node"]
    await cluster.client.apply(pending)
    with pytest.raises(errors.DoraError) as caught:
        async with cluster.client.exec("pending", ["true"]) as s:
            await s.wait()
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "container default/pending is Pending: not running on a node yet" in str(caught.value)
    with pytest.raises(errors.DoraError, match="not running on a node yet"):
        [c async for c in cluster.client.logs("pending")]
    with pytest.raises(errors.NotFound):
        [c async for c in cluster.client.logs("nope")]


# -- who may, and who is trusted ---------------------------------------------------------


async def test_a_token_without_log_or_shell_is_denied(cluster: Cluster,
                                                      apiserver: APIServer) -> None:
    await running(cluster.client, "box", cluster.node)
    viewer = objects.new("Role", "viewer")
    viewer.role.spec.permission["Container"].verbs.extend(["Get", "Describe"])
    await cluster.client.apply(viewer)
    user = objects.new("User", "bob")
    binding = user.user.spec.resources.add()
    binding.kind, binding.zone, binding.workspace, binding.role = "All", "All", "All", "viewer"
    await cluster.client.apply(user)
    token, _ = await cluster.client.create_token("bob", "default", "1")
    async with Client(f"127.0.0.1:{apiserver.port}", token=token) as bob:
        await bob.get("Container", "box")  # may read it...
        with pytest.raises(errors.Forbidden, match="may not Log Container"):
            [c async for c in bob.logs("box")]
        with pytest.raises(errors.Forbidden, match="may not Shell Container"):
            async with bob.exec("box", ["true"]) as s:
                await s.wait()


async def test_the_client_names_no_node_and_the_agent_serves_only_its_own(
    cluster: Cluster, docker: Any,
) -> None:
    # What the client sends cannot name a node, an endpoint or a Docker id.
    for message in (streams_pb2.LogsRequest, streams_pb2.ExecStart):
        assert sorted(message.DESCRIPTOR.fields_by_name) == sorted(
            {"zone", "workspace", "name", "follow", "tail_lines", "timestamps", "command",
             "tty", "stdin", "size"} & set(message.DESCRIPTOR.fields_by_name))
        assert not {"node", "node_name", "docker_id", "endpoint"} & set(
            message.DESCRIPTOR.fields_by_name)
    # Even a forged status pointing at another node's Docker container gets nothing:
    # the agent serves only containers labelled with its own node name.
    other = docker.containers.run(h.BUSYBOX, ["sleep", "600"], detach=True,
                                  labels={"dora.node": cluster.node + "-other"})
    try:
        await running(cluster.client, "box", cluster.node)
        # The agent repairs a forged status as soon as it sees it: forge again until a
        # call lands while the forgery stands (whatever else came back was box's own).
        refused = None
        for _ in range(20):
            box = await cluster.client.get("Container", "box")
            box.container.status.docker_id = other.id
            try:
                await cluster.client.update_status(box)
            except errors.Conflict:
                continue  # the agent wrote first
            try:
                [c async for c in cluster.client.logs("box")]
            except errors.NotFound as exc:
                refused = exc
                break
        assert refused is not None and "is not on this node" in str(refused)
    finally:
        other.remove(force=True)


async def test_the_agent_refuses_calls_without_the_right_secret(cluster: Cluster) -> None:
    await running(cluster.client, "box", cluster.node)
    box = await cluster.client.get("Container", "box")
    request = streams_pb2.AgentLogsRequest(docker_id=box.container.status.docker_id)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cluster.server.port}") as channel:
        stub = streams_pb2_grpc.AgentStreamsStub(channel)
        for metadata in ((), ((agentauth.METADATA_KEY, "wrong-secret-0123456789"),)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                [c async for c in stub.Logs(request, metadata=metadata)]
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        exec_call = stub.Exec(iter([streams_pb2.AgentExecInput(
            start=streams_pb2.AgentExecStart(docker_id=box.container.status.docker_id,
                                             command=["touch", "/pwned"]))]))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [c async for c in exec_call]
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # The right secret works.
        good = ((agentauth.METADATA_KEY, SECRET),)
        assert [c async for c in stub.Logs(request, metadata=good)] == []
    async with cluster.client.exec("box", ["test", "-e", "/pwned"]) as s:
        assert (await s.wait())[2] == 1


async def test_an_agent_without_a_secret_refuses_everything(client: Client, node: str) -> None:
    async with agent_server(node, secret=None) as server:
        await declare(client, node, f"127.0.0.1:{server.port}")
        async with h.running_agent(client, node):
            await running(client, "box", node)
            with pytest.raises(errors.DoraError, match="no --agent-secret-file") as caught:
                [c async for c in client.logs("box")]
            assert caught.value.code == grpc.StatusCode.INTERNAL


async def test_a_dropped_exec_stream_is_an_error_not_success(cluster: Cluster) -> None:
    await running(cluster.client, "box", cluster.node)
    async with cluster.client.exec("box", ["sh", "-c", "echo started; sleep 30"]) as s:
        output = (data async for _, data in s.output())
        await read_until(output, b"started\n")
        await cluster.server.stop(0)  # the agent goes away mid-stream
        with pytest.raises(errors.DoraError):
            async for _ in output:
                pass
        assert s.exit_code is None


class _EndsWithoutExit:
    """A stream server that sends some output and then ends cleanly without ``exit``: what
    a broken agent (or apiserver) might do. Nothing downstream may call that success."""

    def __init__(self, service: str, request: Any) -> None:
        self.service, self.request = service, request

    async def Exec(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        await anext(aiter(requests))
        yield streams_pb2.ExecOutput(stdout=b"partial")

    def handler(self) -> Any:
        return grpc.method_handlers_generic_handler(self.service, {
            "Exec": grpc.stream_stream_rpc_method_handler(
                self.Exec, request_deserializer=self.request.FromString,
                response_serializer=streams_pb2.ExecOutput.SerializeToString),
        })


async def test_an_agent_stream_ending_without_exit_fails_the_call(client: Client,
                                                                   node: str) -> None:
    broken = _EndsWithoutExit("dora.api.v1.AgentStreams", streams_pb2.AgentExecInput)
    server = AgentServer(listen="127.0.0.1:0", secret=SECRET, handlers=[broken.handler()])
    await server.start()
    try:
        await declare(client, node, f"127.0.0.1:{server.port}")
        box, _ = await client.apply(h.bound("box", node))
        box.container.status.phase = "Running"
        box.container.status.docker_id = "0123456789ab"
        box.container.status.node_name = node
        await client.update_status(box)
        async with client.exec("box", ["true"]) as s:
            with pytest.raises(errors.Unavailable, match="ended without an exit code"):
                await s.wait()
        assert s.exit_code is None
    finally:
        await server.stop(0)


async def test_the_client_does_not_take_a_stream_without_exit_for_success() -> None:
    broken = _EndsWithoutExit("dora.api.v1.Streams", streams_pb2.ExecInput)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((broken.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with (Client(f"127.0.0.1:{port}") as c, c.exec("box", ["true"]) as s):
            output = [data async for _, data in _until_error(s.output())]
        assert output == [b"partial"]
        assert s.exit_code is None
    finally:
        await server.stop(0)


async def _until_error(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    with pytest.raises(errors.Unavailable, match="without the command's exit code"):
        async for item in stream:
            yield item


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl for this test."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_an_https_endpoint_is_verified_with_the_agent_ca(
    client: Client, node: str, apiserver_config: Config, admin_token: str,
    self_signed: tuple[Path, Path],
) -> None:
    cert, key = self_signed
    streams = DockerStreams(node=node, host="unix:///var/run/docker.sock")
    server = AgentServer(listen="127.0.0.1:0", secret=SECRET,
                         handlers=[AgentStreamsService(docker=streams).handler()],
                         tls_cert=cert.read_bytes(), tls_key=key.read_bytes())
    await server.start()
    second = APIServer(dataclasses.replace(apiserver_config, agent_ca=cert.read_bytes()))
    try:
        await declare(client, node, f"https://127.0.0.1:{server.port}")
        async with h.running_agent(client, node):
            await running(client, "box", node)
            # Without the CA (system roots only) the agent's certificate is not trusted.
            with pytest.raises(errors.Unavailable,
                               match=f"the agent of node '{node}' is unreachable"):
                [c async for c in client.logs("box")]
            with pytest.raises(errors.Unavailable,
                               match=f"the agent of node '{node}' is unreachable"):
                async with client.exec("box", ["true"]) as s:
                    await s.wait()
            await second.start()
            async with (Client(f"127.0.0.1:{second.port}", token=admin_token) as trusted,
                        trusted.exec("box", ["echo", "over tls"]) as s):
                assert await s.wait() == (b"over tls\n", b"", 0)
    finally:
        await second.stop(grace=0)
        await server.stop(0)
        streams.close()


async def test_any_apiserver_replica_serves_any_container(
    cluster: Cluster, apiserver_config: Config, admin_token: str,
) -> None:
    await running(cluster.client, "box", cluster.node)
    second = APIServer(apiserver_config)
    await second.start()
    try:
        async with (Client(f"127.0.0.1:{second.port}", token=admin_token) as other,
                    other.exec("box", ["sh", "-c", "echo $((6*7))"]) as s):
            assert await s.wait() == (b"42\n", b"", 0)
    finally:
        await second.stop(grace=0)


# -- doractl ----------------------------------------------------------------------------


@pytest.fixture
def ctl(apiserver: APIServer, admin_token: str, tmp_path: Path) -> Ctl:
    return Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token, home=tmp_path)


async def test_doractl_exec_exits_with_the_remote_exit_code(cluster: Cluster, ctl: Ctl) -> None:
    await running(cluster.client, "box", cluster.node)
    result = await ctl("exec", "box", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (result.code, result.out, result.err) == (7, "out\n", "err\n")
    assert (await ctl("exec", "container/box", "--", "true")).code == 0
    piped = await ctl("exec", "-i", "box", "--", "tr", "a-z", "A-Z", input="shout\n")
    assert (piped.code, piped.out) == (0, "SHOUT\n")
    # -it without a terminal on stdin: a note, then stdin piped as it is.
    degraded = await ctl("exec", "-it", "box", "--", "cat", input="as is\n")
    assert (degraded.code, degraded.out) == (0, "as is\n")
    assert "stdin is not a terminal" in degraded.err
    missing = await ctl("exec", "nope", "--", "true")
    assert missing.code == 1 and "error: container/nope in default/default not found" in missing.err


async def test_doractl_exec_reports_a_dropped_stream_as_an_error(cluster: Cluster,
                                                                 ctl: Ctl) -> None:
    await running(cluster.client, "box", cluster.node)
    started = await ctl.start("exec", "box", "--", "sh", "-c", "echo started; sleep 30")
    assert await started.line() == "started"
    await cluster.server.stop(0)  # the agent's stream server goes away
    result = await started.finish()
    assert result.code == 1, result
    assert "error: the stream through" in result.err and "broke" in result.err


async def test_doractl_logs_follow_tail_and_workload(cluster: Cluster, ctl: Ctl) -> None:
    await running(cluster.client, "counter", cluster.node, COUNTER, workload="tick")
    follow = await ctl.start("logs", "-f", "counter")
    first = await follow.line()
    number = int(first.removeprefix("line ").rstrip("\r"))
    # Containers have a TTY: their lines end in \r\n, as in `docker logs`.
    assert [await follow.line() for _ in range(3)] == [
        f"line {number + i}\r" for i in (1, 2, 3)]
    follow.interrupt()
    assert (await follow.finish()).code == 130

    missing = await ctl("logs", "workload/web")
    assert missing.code == 1 and "workload/web in default/default not found" in missing.err
    await cluster.client.apply(workload("web"))
    for name in ("web.0", "web.1"):
        await running(cluster.client, name, cluster.node,
                      f"sh -c 'echo one from {name}; echo two from {name}; sleep 600'")

    async def printed() -> bool:
        result = await ctl("logs", "workload/web")
        return result.out.count("two from") == 2

    await h.eventually(printed, what="both containers' lines")
    result = await ctl.ok("logs", "wk/web", "--tail", "1")
    assert sorted(result.lines) == ["[web.0] two from web.0", "[web.1] two from web.1"]
    assert (await ctl.ok("logs", "web.1", "--tail", "1")).out == "two from web.1\r\n"
    await cluster.client.apply(workload("idle"))
    none = await ctl("logs", "workload/idle")
    assert none.code == 1 and "has no containers" in none.err


def workload(name: str) -> Any:
    """A stopped Workload (no controller runs here: the test makes its Containers)."""
    obj = objects.new("Workload", name, zone=h.ZONE, workspace=h.WORKSPACE)
    obj.workload.spec.image.image = h.BUSYBOX
    obj.workload.spec.stopped = True
    return obj


class Pty:
    """doractl on a pseudo-terminal, as a person at a terminal runs it."""

    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        self.process = process
        self.master = master
        self.seen = b""

    @classmethod
    async def start(cls, ctl: Ctl, *args: str, rows: int = 24, cols: int = 80) -> Pty:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dora.ctl", *args, cwd=ROOT, env=ctl.env,
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        )
        os.close(slave)
        os.set_blocking(master, False)
        return cls(process, master)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.process.send_signal(signal.SIGWINCH)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    async def expect(self, pattern: bytes, *, within: float = 15.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not re.search(pattern, self.seen):
            if loop.time() > deadline:
                raise AssertionError(f"no {pattern!r} on the terminal; saw {self.seen!r}")
            try:
                self.seen += os.read(self.master, 4096)
            except BlockingIOError:
                await asyncio.sleep(0.02)
            except OSError:  # EIO: the process closed the terminal
                await asyncio.sleep(0.02)
                if self.process.returncode is not None:
                    raise AssertionError(f"exited before {pattern!r}; saw {self.seen!r}"
                                         ) from None

    async def exit_code(self) -> int:
        code = await asyncio.wait_for(self.process.wait(), 30)
        os.close(self.master)
        return code


async def test_doractl_exec_it_is_an_interactive_terminal(cluster: Cluster, ctl: Ctl) -> None:
    await running(cluster.client, "box", cluster.node)
    term = await Pty.start(ctl, "exec", "-it", "box", "--", "sh", rows=31, cols=97)
    await term.expect(rb"[#$] ")
    term.type("echo h''i\r")
    await term.expect(rb"\r\nhi\r\n")
    term.type("stty size\r")
    await term.expect(rb"31 97\r\n")
    term.resize(40, 132)  # the window changes: SIGWINCH, then the remote's resize

    async def resized() -> bool:
        term.type("stty size\r")
        try:
            await term.expect(rb"40 132\r\n", within=0.5)
        except AssertionError:
            return False
        return True

    await h.eventually(resized, what="the remote terminal at 40x132", within=15)
    term.type("exit 3\r")
    assert await term.exit_code() == 3


async def test_doractl_shell_is_exec_it_with_bin_sh(cluster: Cluster, ctl: Ctl) -> None:
    await running(cluster.client, "box", cluster.node)
    term = await Pty.start(ctl, "shell", "box")
    await term.expect(rb"[#$] ")
    term.type("echo $((40+2)) $0\r")
    await term.expect(rb"42 /bin/sh\r\n")
    term.type("\x04")  # Ctrl-D: end of input for the remote shell
    assert await term.exit_code() == 0


async def test_an_apiserver_without_the_secret_says_so(
    cluster: Cluster, apiserver_config: Config, admin_token: str,
) -> None:
    await running(cluster.client, "box", cluster.node)
    unconfigured = APIServer(dataclasses.replace(apiserver_config, agent_secret=None))
    await unconfigured.start()
    try:
        async with Client(f"127.0.0.1:{unconfigured.port}", token=admin_token) as other:
            with pytest.raises(errors.DoraError, match="no --agent-secret-file, so it cannot "
                                                       "reach node agents"):
                [c async for c in other.logs("box")]
    finally:
        await unconfigured.stop(grace=0)

