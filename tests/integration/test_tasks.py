"""Tasks end to end: seed 003's tutorial on real etcd, the apiserver, the controllers
(scheduler, volume, task) and a real agent running busybox jobs on dockerd.

The storage is a Local one in the test's temporary folder; the tutorial's files
(a data file, config files and the job script) are put there as an upload
would, and the jobs' outputs are read back from it. Each job appends a line to
``runs.log`` in its output folder, so counting lines counts the runs: exactly
once means one line per Completed job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import dora
from dora.agent.docker_streams import DockerStreams
from dora.agent.server import AgentServer
from dora.agent.streams import AgentStreamsService
from dora.agent.volumefiles import AgentVolumeFilesService
from dora.agent.volumes import Resolver
from dora.api import errors, objects, tasks
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
from dora.apiserver.server import APIServer, Config
from tests.integration import agent_harness as h
from tests.integration.controllers_harness import (
    Controllers,
    TaskGroup,
    admin_client,
    eventually,
    group,
)
from tests.integration.test_ctl_support import Ctl
from tests.integration.test_volume_files import SECRET, node_token

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group"]

CONTROLLERS = ("scheduler", "nodelifecycle", "volume", "task", "gc")
FILES = f"/task/{h.WORKSPACE}/files"
# Seed 003's job script, for busybox: -d data -c config -o output folder.
JOB_SCRIPT = """\
while getopts d:c:o: opt; do
  case $opt in d) DATA=$OPTARG;; c) CONF=$OPTARG;; o) OUT=$OPTARG;; esac
done
echo run >> "${OUT}runs.log"
grep -q fail "$CONF" && exit 3
grep -q flaky "$CONF" && [ "$(wc -l < "${OUT}runs.log")" -lt 3 ] && exit 4
sleep "$(cat "$CONF" | cut -d' ' -f2)"
echo "$(cut -d' ' -f1 "$CONF") $(cat "$DATA")" > "${OUT}result.txt"
echo "job $CONF done"
"""
EXEC = f"sh {FILES}/job_tuning.sh -d %DATA -c %IN -o %OUT"


@pytest.fixture
def apiserver_config(apiserver_config: Config) -> Config:
    return dataclasses.replace(apiserver_config, agent_secret=SECRET)


@pytest.fixture
def node(docker: Any, tmp_path: Path) -> Iterator[str]:
    name = h.new_node_name()
    with h.volumes_removed(docker, tmp_path), h.cleaned(docker, name):
        yield name


@dataclasses.dataclass
class Cluster:
    client: Client
    apiserver: APIServer
    admin_token: str
    node: str
    storage: Path
    home: Path

    @property
    def files(self) -> Path:
        return self.storage / h.WORKSPACE / "files"

    def tutorial(self, count: int, *, fail: tuple[int, ...] = (), flaky: tuple[int, ...] = (),
                 sleep: float = 0) -> None:
        """Seed 003's files: a data file, ``count`` configs and the job script."""
        configs = self.files / "my_config_files"
        configs.mkdir(parents=True)
        (self.files / "my_data_file.pic").write_text("data-v1")
        (self.files / "job_tuning.sh").write_text(JOB_SCRIPT)
        for index in range(count):
            word = ("fail" if index in fail else f"flaky{index:02d}" if index in flaky
                    else f"config{index:02d}")
            (configs / f"config_{index:02d}.txt").write_text(f"{word} {sleep}")

    def output(self, task: str = "tutorial") -> Path:
        return self.files / "tasks" / task

    def ctl(self) -> Ctl:
        return Ctl(server=f"127.0.0.1:{self.apiserver.port}", token=self.admin_token,
                   home=self.home)


@pytest.fixture
def agent_options() -> dict[str, Any]:
    """Overrides of the agent's test config (``agent_harness.config``)."""
    return {}


@pytest.fixture
async def cluster(client: Client, apiserver: APIServer, admin_token: str, node: str,
                  tmp_path: Path, agent_options: dict[str, Any]) -> AsyncIterator[Cluster]:
    """Storage, the Volume ``files``, a real agent (with its file and log server)."""
    storage = tmp_path / "storage"
    (storage / h.WORKSPACE / "files").mkdir(parents=True)
    obj = objects.new("Storage", "local", zone=h.ZONE)
    obj.storage.spec.kind, obj.storage.spec.mountpath = "Local", str(storage)
    await client.apply(obj)
    volume = objects.new("Volume", "files", zone=h.ZONE, workspace=h.WORKSPACE)
    volume.volume.spec.storage = "local"
    await client.apply(volume)
    token = await node_token(client, node)
    streams = DockerStreams(node=node, host="unix:///var/run/docker.sock")
    async with Client(f"127.0.0.1:{apiserver.port}", token=token, timeout=10) as as_node:
        server = AgentServer(listen="127.0.0.1:0", secret=SECRET, handlers=[
            AgentStreamsService(docker=streams).handler(),
            AgentVolumeFilesService(resolver=Resolver(client=as_node)).handler(),
        ])
        await server.start()
        try:
            declared = objects.new("Node", node, zone=h.ZONE)
            declared.node.spec.endpoint = f"http://127.0.0.1:{server.port}"
            declared.node.spec.allow.append("CPUWorkload")
            await client.apply(declared)
            async with h.running_agent(as_node, node, **agent_options):
                home = tmp_path / "home"
                home.mkdir()
                yield Cluster(client, apiserver, admin_token, node, storage, home)
        finally:
            await server.stop(0)
            streams.close()


@contextlib.asynccontextmanager
async def controllers(cluster: Cluster, group: TaskGroup, *,
                      identity: str = "one") -> AsyncIterator[Controllers]:
    """The controllers on a client of their own (``kill`` closes it, as a crash would)."""
    async with admin_client(cluster.apiserver, cluster.admin_token) as own:
        running = Controllers(own, identity=identity, controllers=CONTROLLERS,
                              task_backoff=0.2)
        running.start(group)
        try:
            yield running
        finally:
            # Gone before its client closes: a call in flight on a closed client would
            # fail the test group's teardown (it did, now and then, under load).
            await running.kill()


def task(name: str = "tutorial", *, parallelism: int | None = 2, test_jobs: int = 2,
         retries: int = 0, exec_: str = EXEC) -> object_pb2.Object:
    """Seed 003's task, as its YAML would say it."""
    obj = objects.new("Task", name, zone=h.ZONE, workspace=h.WORKSPACE)
    spec = obj.task.spec
    spec.image.image = h.BUSYBOX
    spec.exec = exec_
    spec.data.volume, spec.data.path = "files", "my_data_file.pic"
    spec.configs.volume, spec.configs.path = "files", "my_config_files/"
    spec.output.volume, spec.output.path = "files", f"tasks/{name}/"
    spec.selectors.cpu.millicores = 100
    if parallelism is not None:
        spec.parallelism = parallelism
    spec.test_jobs = test_jobs
    spec.retries = retries
    return obj


async def get_task(client: Client, name: str = "tutorial") -> object_pb2.Object:
    return await client.get("Task", name, zone=h.ZONE, workspace=h.WORKSPACE)


async def state_is(client: Client, state: str, name: str = "tutorial", *,
                   within: float = 60.0) -> object_pb2.Object:
    async def probe() -> object_pb2.Object | None:
        got = await get_task(client, name)
        return got if got.task.status.state == state else None

    found: object_pb2.Object = await eventually(probe, within=within,
                                                what=f"task {name} to be {state}")
    return found


async def job_containers(client: Client, name: str = "tutorial") -> list[object_pb2.Object]:
    items, _ = await client.list("Container", zone=h.ZONE, workspace=h.WORKSPACE,
                                 label_selector=f"{tasks.TASK_LABEL}={name}")
    return sorted(items, key=lambda c: c.metadata.name)


async def volume_ready(client: Client) -> None:
    async def ready() -> bool:
        got = await client.get("Volume", "files", zone=h.ZONE, workspace=h.WORKSPACE)
        return got.volume.status.phase == "Ready"

    await eventually(ready, within=20, what="volume files Ready")


class Watcher:
    """Every Container event of a task, from before it starts: what ran, and whether
    any job ever had two live containers at once."""

    def __init__(self, client: Client, name: str = "tutorial") -> None:
        self.client = client
        self.name = name
        self.created: list[str] = []
        self.live: dict[str, set[str]] = {}
        self.overlaps: list[tuple[str, set[str]]] = []
        self.peak = 0  # the most job containers alive at once

    async def run(self) -> None:
        async for event in self.client.watch("Container", zone=h.ZONE,
                                             label_selector=f"{tasks.TASK_LABEL}={self.name}"):
            if event.type not in (WatchEvent.ADDED, WatchEvent.MODIFIED, WatchEvent.DELETED):
                continue
            obj = event.object
            job = obj.metadata.labels[tasks.JOB_LABEL]
            live = self.live.setdefault(job, set())
            if event.type == WatchEvent.ADDED and obj.metadata.name not in self.created:
                self.created.append(obj.metadata.name)
            ended = obj.container.status.phase in ("Exited", "Failed", "Lost")
            if event.type == WatchEvent.DELETED or ended:
                live.discard(obj.metadata.name)
            else:
                live.add(obj.metadata.name)
                if len(live) > 1:
                    self.overlaps.append((job, set(live)))
                self.peak = max(self.peak, sum(len(v) for v in self.live.values()))

    def jobs_started(self) -> set[int]:
        return {tasks.attempt_of(self.name, n)[0] for n in self.created  # type: ignore[index]
                if tasks.attempt_of(self.name, n) is not None}


def runs(cluster: Cluster, task_name: str = "tutorial") -> dict[str, int]:
    """Output folder -> how many times its job ran."""
    out = cluster.output(task_name)
    return {p.parent.name: len(p.read_text().splitlines())
            for p in sorted(out.glob("*/runs.log"))}


async def test_seed_003_tutorial_runs_every_job_once(cluster: Cluster,
                                                     group: TaskGroup) -> None:
    cluster.tutorial(8)
    watcher = Watcher(cluster.client)
    group.start_soon(watcher.run)
    async with controllers(cluster, group):
        await cluster.client.apply(task())
        done = await state_is(cluster.client, tasks.COMPLETED)
    status = done.task.status
    assert (status.total, status.completed, status.failed, status.running) == (8, 8, 0, 0)
    assert status.jobs == "C" * 8 and list(status.attempts) == [1] * 8
    assert tasks.unpack_files(status.files) == [f"config_{i:02d}.txt" for i in range(8)]
    for index in range(8):
        result = cluster.output() / f"config_{index:02d}" / "result.txt"
        assert result.read_text() == f"config{index:02d} data-v1\n"
    assert runs(cluster) == {f"config_{i:02d}": 1 for i in range(8)}
    # Test jobs first: jobs 2.. were created only after 0 and 1.
    assert set(watcher.created[:2]) == {"tutorial.j0-0", "tutorial.j1-0"}
    assert watcher.overlaps == []
    # The attempts stay as the record of each job: node, exit code, times.
    records = await job_containers(cluster.client)
    assert len(records) == 8
    assert {(c.container.status.phase, c.container.status.exit_code,
             c.container.spec.node_name) for c in records} == {("Exited", 0, cluster.node)}

    ctl = cluster.ctl()
    listed = await ctl.ok("get", "tasks")
    assert listed.lines[0].split() == ["NAME", "STATE", "DONE/TOTAL", "FAILED", "RUNNING",
                                       "AGE"]
    assert listed.lines[1].split()[:5] == ["tutorial", "Completed", "8/8", "0", "0"]
    described = await ctl.ok("describe", "task", "tutorial")
    assert "8/8 completed, 0 failed, 0 running" in described.out
    assert [line.split()[:4] for line in described.lines if "(test)" in line] == [
        ["0", "config_00.txt", "Completed", "(test)"], ["1", "config_01.txt", "Completed",
                                                         "(test)"]]
    logs = await ctl.ok("logs", "task/tutorial", "--job", "3")
    assert logs.out == f"job {FILES}/my_config_files/config_03.txt done\n"
    await ctl.ok("delete", "task", "tutorial")

    async def records_gone() -> bool:
        return not await job_containers(cluster.client)

    async def events_gone() -> bool:
        events, _ = await cluster.client.list("Event", zone=h.ZONE, workspace=h.WORKSPACE)
        return not [e for e in events
                    if e.event.spec.involved_object.name.startswith("tutorial.j")]

    # The garbage collector deletes what the task owned, after it.
    async with controllers(cluster, group):
        await eventually(records_gone, within=30,
                         what="the jobs' containers to go with the task")
        await eventually(events_gone, within=30, what="the jobs' events to go with the task")
    assert (cluster.output() / "config_00" / "result.txt").is_file()  # outputs stay


async def test_seed_003_tutorial_at_its_size_24_jobs_2_tests_parallelism_4(
        cluster: Cluster, group: TaskGroup) -> None:
    """The issue's tutorial as a user types it: ``task create``, ``wait``, ``get``."""
    cluster.tutorial(24)
    watcher = Watcher(cluster.client)
    group.start_soon(watcher.run)
    ctl = cluster.ctl()
    async with controllers(cluster, group):
        await volume_ready(cluster.client)
        created = await ctl.ok("task", "create", "-c", "files:my_config_files/",
                               "-d", "files:my_data_file.pic", "-o", "files:tasks/tutorial/",
                               "-t", "tutorial", "--image", h.BUSYBOX, "--exec", EXEC,
                               "--test-jobs", "2", "--parallelism", "4", "--cpus", "1")
        assert created.out == "task/tutorial created: 24 jobs, 2 of them test jobs\n"
        waited = await ctl.ok("wait", "task/tutorial", "--for=state=Completed",
                              "--timeout=240s")
        assert waited.out == "task/tutorial condition met\n"
        listed = await ctl.ok("get", "tasks")
    assert listed.lines[1].split()[:5] == ["tutorial", "Completed", "24/24", "0", "0"]
    for index in range(24):
        result = cluster.output() / f"config_{index:02d}" / "result.txt"
        assert result.read_text() == f"config{index:02d} data-v1\n"
    assert runs(cluster) == {f"config_{i:02d}": 1 for i in range(24)}
    assert set(watcher.created[:2]) == {"tutorial.j0-0", "tutorial.j1-0"}
    assert len(watcher.created) == 24 and watcher.overlaps == []
    assert 1 < watcher.peak <= 4, watcher.peak


async def test_the_sdk_submits_a_task_waits_for_it_and_reads_its_jobs(
        cluster: Cluster, group: TaskGroup) -> None:
    cluster.tutorial(4, fail=(3,))
    sweep = dora.Task("tutorial", image=h.BUSYBOX, exec=EXEC, data="files:my_data_file.pic",
                      configs="files:my_config_files/", output="files:tasks/tutorial/",
                      parallelism=2, test_jobs=1, retries=1)
    async with controllers(cluster, group), dora.AsyncClient(
            f"127.0.0.1:{cluster.apiserver.port}", token=cluster.admin_token, zone=h.ZONE,
            workspace=h.WORKSPACE) as sdk:
        await volume_ready(cluster.client)
        missing = dataclasses.replace(sweep, name="missing", configs="files:nothing/")
        with pytest.raises(errors.Invalid, match="nothing in volume default/files does not "
                                                 "exist") as refused:
            await sdk.submit_task(missing)
        assert str(refused.value).startswith("spec.configs.path: ")
        with pytest.raises(errors.Invalid, match=r"spec\.data\.path"):
            dataclasses.replace(sweep, data="files:../x").to_object()
        assert not (await cluster.client.list("Task", zone=h.ZONE))[0]

        submitted = await sdk.submit_task(sweep)
        assert submitted.spec["testJobs"] == 1 and submitted.spec["parallelism"] == 2
        with pytest.raises(dora.WaitTimeout, match="its state is"):
            await sdk.wait_task("tutorial", "Completed", timeout=0.2)
        done = await sdk.wait_task("tutorial", timeout=120)
        jobs = await sdk.jobs(done)
        with pytest.raises(errors.AlreadyExists):
            await sdk.submit_task(sweep)
    assert done.status["state"] == tasks.FAILED
    assert [(j.index, j.config, j.state, j.attempts, j.test) for j in jobs] == [
        (0, "config_00.txt", "Completed", 1, True), (1, "config_01.txt", "Completed", 1, False),
        (2, "config_02.txt", "Completed", 1, False), (3, "config_03.txt", "Failed", 2, False)]
    assert jobs[3].container == "tutorial.j3-1" and jobs[3].failures == 2
    record = await cluster.client.get("Container", jobs[3].container, zone=h.ZONE,
                                      workspace=h.WORKSPACE)
    assert record.container.status.exit_code == 3


async def test_a_failing_test_job_breaks_the_task_and_nothing_else_starts(
        cluster: Cluster, group: TaskGroup) -> None:
    cluster.tutorial(6, fail=(1,))
    watcher = Watcher(cluster.client)
    group.start_soon(watcher.run)
    async with controllers(cluster, group):
        await cluster.client.apply(task(parallelism=None))
        broken = await state_is(cluster.client, tasks.BROKEN)
        assert "test job 1 (config_01.txt) failed" in broken.task.status.message
        await asyncio.sleep(1.0)  # time to start what it should not
    assert watcher.jobs_started() == {0, 1}
    assert (await get_task(cluster.client)).task.status.jobs == "CFPPPP"


async def test_flaky_and_always_failing_jobs_retry_and_task_retry_reruns_the_failed(
        cluster: Cluster, group: TaskGroup) -> None:
    cluster.tutorial(5, fail=(3,), flaky=(1,))
    async with controllers(cluster, group):
        await cluster.client.apply(task(retries=2, test_jobs=1))
        failed = await state_is(cluster.client, tasks.FAILED)
        status = failed.task.status
        assert (status.completed, status.failed, status.jobs) == (4, 1, "CCCFC")
        # Job 1 failed twice, then succeeded: Completed with 3 attempts.
        assert list(status.attempts) == [1, 3, 1, 3, 1]
        assert (cluster.output() / "config_01" / "result.txt").read_text() == \
            "flaky01 data-v1\n"
        assert runs(cluster)["config_03"] == 3
        attempts = [c for c in await job_containers(cluster.client)
                    if c.metadata.labels[tasks.JOB_LABEL] == "3"]
        assert [(c.metadata.name, c.container.status.exit_code) for c in attempts] == [
            ("tutorial.j3-0", 3), ("tutorial.j3-1", 3), ("tutorial.j3-2", 3)]

        (cluster.files / "my_config_files" / "config_03.txt").write_text("config03 0")
        await cluster.ctl().ok("task", "retry", "tutorial")
        done = await state_is(cluster.client, tasks.COMPLETED)
    assert done.task.status.jobs == "CCCCC"
    assert list(done.task.status.attempts) == [1, 3, 1, 4, 1]
    assert runs(cluster) == {"config_00": 1, "config_01": 3, "config_02": 1,
                             "config_03": 4, "config_04": 1}
    ctl = cluster.ctl()
    refused = await ctl("delete", "volume", "files", "--purge-output")
    assert refused.code == 2 and "--purge-output is for tasks" in refused.err
    purged = await ctl.ok("delete", "task", "tutorial", "--purge-output")
    assert "output files:tasks/tutorial purged" in purged.out
    assert not cluster.output().exists()
    assert (cluster.files / "my_data_file.pic").is_file()


async def test_a_controller_restart_mid_task_reruns_no_completed_job(
        cluster: Cluster, group: TaskGroup) -> None:
    cluster.tutorial(8, sleep=0.5)
    watcher = Watcher(cluster.client)
    group.start_soon(watcher.run)
    async with controllers(cluster, group, identity="first") as first:
        await cluster.client.apply(task(test_jobs=0))

        async def some_done() -> bool:
            return (await get_task(cluster.client)).task.status.completed >= 3

        await eventually(some_done, within=60, what="three jobs completed")
        await first.kill()
    async with controllers(cluster, group, identity="second"):
        done = await state_is(cluster.client, tasks.COMPLETED, within=90)
    assert done.task.status.completed == 8
    assert list(done.task.status.attempts) == [1] * 8
    assert runs(cluster) == {f"config_{i:02d}": 1 for i in range(8)}
    assert sorted(watcher.created) == sorted(f"tutorial.j{i}-0" for i in range(8))
    assert watcher.overlaps == []


async def test_kill_stops_running_jobs_and_keeps_the_records(cluster: Cluster,
                                                             group: TaskGroup) -> None:
    cluster.tutorial(4, sleep=60)
    async with controllers(cluster, group):
        await cluster.client.apply(task(test_jobs=0))

        async def running() -> bool:
            return (await get_task(cluster.client)).task.status.running == 2

        await eventually(running, within=30, what="two jobs running")
        await cluster.ctl().ok("task", "kill", "tutorial")
        killed = await state_is(cluster.client, tasks.KILLED)
        assert killed.task.status.jobs == "KKKK" and killed.task.status.killed == 4

        async def stopped() -> bool:
            return not [c for c in await job_containers(cluster.client)
                        if c.container.status.phase == "Running"]

        await eventually(stopped, within=30, what="the running jobs stopped")


async def test_bad_tasks_are_refused_and_nothing_is_written(cluster: Cluster) -> None:
    client = cluster.client
    for obj, field in (
        (task(exec_="sh job.sh -d %DATA -o %OUT"), "spec.exec"),
        (task(parallelism=0), "spec.parallelism"),
        (task(parallelism=-4), "spec.parallelism"),
    ):
        with pytest.raises(errors.Invalid) as caught:
            await client.apply(obj)
        assert field in {v.field for v in caught.value.violations}, caught.value
    with pytest.raises(errors.Invalid, match=r"must contain %IN \(the config file"):
        await client.apply(task(exec_="x %DATA %OUT"))
    assert not (await client.list("Task", zone=h.ZONE))[0]


async def test_a_volume_of_another_workspace_needs_use(cluster: Cluster) -> None:
    client = cluster.client
    for name in ("lab", ):
        await client.apply(objects.new("Workspace", name))
    role = objects.new("Role", "tasker")
    for kind, verbs in (("Task", ["Apply", "Get", "Kill", "Retry"]), ("Volume", ["Get"])):
        role.role.spec.permission[kind].verbs.extend(verbs)
    await client.apply(role)
    user = objects.new("User", "jodafons")
    user.user.spec.resources.add(kind="All", zone="All", workspace="All", role="tasker")
    await client.apply(user)
    token, _ = await client.create_token("jodafons", h.WORKSPACE, "t")
    async with Client(f"127.0.0.1:{cluster.apiserver.port}", token=token,
                      timeout=10) as as_user:
        obj = task()
        obj.task.spec.data.workspace = "lab"
        with pytest.raises(errors.Forbidden, match="may not Use Volume in zone"):
            await as_user.apply(obj)
        assert not (await client.list("Task", zone=h.ZONE))[0]


async def test_a_missing_or_empty_configs_folder_breaks_the_task_with_the_reason(
        cluster: Cluster, group: TaskGroup) -> None:
    (cluster.files / "empty").mkdir()
    async with controllers(cluster, group):
        await cluster.client.apply(task("missing"))
        empty = task("empty")
        empty.task.spec.configs.path = "empty"
        await cluster.client.apply(empty)
        missing = await state_is(cluster.client, tasks.BROKEN, "missing")
        assert "my_config_files in volume default/files does not exist" in \
            missing.task.status.message
        nothing = await state_is(cluster.client, tasks.BROKEN, "empty")
        assert "holds no config file" in nothing.task.status.message
        assert not await job_containers(cluster.client, "missing")
        assert not await job_containers(cluster.client, "empty")
        # The files arrive; `task retry` lists the folder again and the task runs.
        cluster.tutorial(3)
        await cluster.ctl().ok("task", "retry", "missing")
        done = await state_is(cluster.client, tasks.COMPLETED, "missing")
        assert (done.task.status.total, done.task.status.completed) == (3, 3)


async def test_task_create_writes_what_the_yaml_says_and_refuses_bad_input(
        cluster: Cluster, group: TaskGroup) -> None:
    cluster.tutorial(4)
    ctl = cluster.ctl()
    async with controllers(cluster, group):
        await volume_ready(cluster.client)
        await _create_and_refuse(cluster, ctl)


async def _create_and_refuse(cluster: Cluster, ctl: Ctl) -> None:
    common = ("-d", "files:my_data_file.pic", "-o", "files:tasks/tutorial/",
              "--image", h.BUSYBOX)
    for args, said in (
        (("-c", "files:nothing/", "-t", "t1", "--exec", EXEC),
         "spec.configs.path: nothing in volume default/files does not exist"),
        (("-c", "files:my_config_files/", "-t", "t2", "--exec", "sh j -d %DATA -o %OUT"),
         "spec.exec: must contain %IN (the config file of each job)"),
        (("-c", "files:my_config_files/", "-t", "t3", "--exec", EXEC, "--parallelism", "0"),
         "spec.parallelism: must be >= 1"),
        (("-c", "files:my_config_files/../x", "-t", "t4", "--exec", EXEC),
         "must not contain '..'"),
    ):
        result = await ctl("task", "create", *common, *args)
        assert result.code != 0 and said in result.err, result
    (cluster.files / "empty").mkdir()
    result = await ctl("task", "create", *common, "-c", "files:empty", "-t", "t5", "--exec",
                       EXEC)
    assert result.code == 1 and "holds no config file" in result.err
    assert not (await cluster.client.list("Task", zone=h.ZONE))[0]

    yaml_text = f"""\
kind: Task
metadata: {{name: from-yaml}}
spec:
  image: {{image: {h.BUSYBOX}}}
  exec: {EXEC}
  data: {{volume: files, path: my_data_file.pic}}
  configs: {{volume: files, path: my_config_files/}}
  output: {{volume: files, path: tasks/tutorial/}}
  testJobs: 0
  parallelism: 3
"""
    await ctl.ok("apply", "-f", "-", input=yaml_text)
    created = await ctl.ok("task", "create", *common, "-c", "files:my_config_files/",
                           "-t", "tutorial", "--exec", EXEC, "--bypass",
                           "--parallelism", "3")
    assert created.out == "task/tutorial created: 4 jobs, 0 of them test jobs\n"
    done = await state_is(cluster.client, tasks.COMPLETED)
    await state_is(cluster.client, tasks.COMPLETED, "from-yaml")
    from_yaml = await get_task(cluster.client, "from-yaml")
    assert done.task.spec == from_yaml.task.spec
    again = await ctl("task", "create", *common, "-c", "files:my_config_files/", "-t",
                      "tutorial", "--exec", EXEC)
    assert again.code == 1 and "task/tutorial exists" in again.err


async def test_an_agent_killed_mid_task_its_jobs_complete_elsewhere_exactly_once(
        cluster: Cluster, group: TaskGroup, docker: Any) -> None:
    cluster.tutorial(6, sleep=4)
    other = h.new_node_name()
    watcher = Watcher(cluster.client)
    group.start_soon(watcher.run)
    with h.cleaned(docker, other):
        declared = objects.new("Node", other, zone=h.ZONE)
        declared.node.spec.endpoint = "127.0.0.1:9"
        declared.node.spec.allow.append("CPUWorkload")
        await cluster.client.apply(declared)
        async with controllers(cluster, group):
            async with h.running_agent(cluster.client, other):
                obj = task(parallelism=4, test_jobs=0)
                obj.task.spec.affinity = "Distribute"
                await cluster.client.apply(obj)

                async def running_there() -> list[str]:
                    return [c.metadata.name for c in await job_containers(cluster.client)
                            if c.container.spec.node_name == other
                            and c.container.status.phase == "Running"]

                lost = await eventually(running_there, within=30,
                                        what=f"jobs running on {other}")
            # The agent is dead; its machine goes with it.
            for container in h.node_containers(docker, other):
                container.remove(force=True)
            done = await state_is(cluster.client, tasks.COMPLETED, within=90)
    status = done.task.status
    assert (status.completed, status.jobs) == (6, "CCCCCC")
    # The jobs that were on the dead node ran a second attempt; no other job did.
    lost_jobs = {i for i, n in enumerate(status.attempts) if n == 2}
    assert {tasks.attempt_of("tutorial", n)[0] for n in lost} <= lost_jobs  # type: ignore[index]
    assert set(status.attempts) <= {1, 2}
    for index in range(6):
        result = cluster.output() / f"config_{index:02d}" / "result.txt"
        assert result.read_text() == f"config{index:02d} data-v1\n"
    counted = runs(cluster)
    assert all(counted[f"config_{i:02d}"] == 1 for i in range(6) if i not in lost_jobs)
    assert all(counted[f"config_{i:02d}"] == 2 for i in lost_jobs)
    assert watcher.overlaps == []
    assert len(watcher.created) == 6 + len(lost_jobs)
    records = await job_containers(cluster.client)
    assert {c.container.spec.node_name for c in records} == {cluster.node}


async def test_no_credit_stops_the_jobs_and_they_resume_when_it_is_back(
        cluster: Cluster, group: TaskGroup) -> None:
    cluster.tutorial(3, sleep=60)
    credit = objects.new("Usercredit", "jodafons", zone=h.ZONE)
    credit.usercredit.spec.user = "jodafons"
    await cluster.client.apply(credit)

    async def spent(exhausted: bool) -> None:
        status = objects.new("Usercredit", "jodafons", zone=h.ZONE)
        status.usercredit.status.exhausted = exhausted
        status.usercredit.status.workspaces.append(h.WORKSPACE)
        await cluster.client.update_status(status)

    async with controllers(cluster, group):
        await cluster.client.apply(task(test_jobs=0))

        async def started() -> bool:
            return len(runs(cluster)) == 2

        await eventually(started, within=30, what="two jobs started")
        await spent(True)

        async def stopped() -> object_pb2.Object | None:
            got = await get_task(cluster.client)
            live = [c for c in await job_containers(cluster.client)
                    if c.container.status.phase not in ("Exited", "Failed")]
            return got if not live and got.task.status.jobs == "PPP" else None

        held = await eventually(stopped, within=30, what="the jobs stopped")
        assert "credit of user jodafons in zone default is spent" in held.task.status.message
        for config in (cluster.files / "my_config_files").iterdir():
            config.write_text(config.read_text().replace(" 60", " 0"))
        await asyncio.sleep(0.5)  # measured: half a second on, nothing started
        assert not await job_containers(cluster.client)  # nothing started meanwhile
        await spent(False)
        done = await state_is(cluster.client, tasks.COMPLETED)
    assert list(done.task.status.attempts) == [2, 2, 1]
    assert list(done.task.status.failures) == [0, 0, 0]
    assert runs(cluster) == {"config_00": 2, "config_01": 2, "config_02": 1}


async def test_more_config_files_than_a_task_may_have_are_refused(
        cluster: Cluster, group: TaskGroup) -> None:
    many = cluster.files / "many"
    many.mkdir()
    for index in range(tasks.MAX_JOBS + 1):
        (many / f"c{index:06d}").touch()
    async with controllers(cluster, group):
        await volume_ready(cluster.client)
        result = await cluster.ctl()(
            "task", "create", "-c", "files:many", "-d", "files:d", "-o", "files:out",
            "-t", "huge", "--image", h.BUSYBOX, "--exec", EXEC)
        assert result.code == 1
        assert "many in volume default/files holds 100001 files; a task has at most " \
               "100000 jobs" in result.err
        assert not (await cluster.client.list("Task", zone=h.ZONE))[0]
        # Applied as YAML anyway: the controller refuses it the same way, and runs nothing.
        obj = task("huge")
        obj.task.spec.configs.path = "many"
        await cluster.client.apply(obj)
        broken = await state_is(cluster.client, tasks.BROKEN, "huge")
        assert "holds 100001 files" in broken.task.status.message
        assert not await job_containers(cluster.client, "huge")


async def test_kill_and_retry_need_their_verbs(cluster: Cluster) -> None:
    client = cluster.client
    role = objects.new("Role", "applier")
    role.role.spec.permission["Task"].verbs.extend(["Apply", "Get"])
    await client.apply(role)
    user = objects.new("User", "jodafons")
    user.user.spec.resources.add(kind="All", zone="All", workspace="All", role="applier")
    await client.apply(user)
    token, _ = await client.create_token("jodafons", h.WORKSPACE, "t")
    async with Client(f"127.0.0.1:{cluster.apiserver.port}", token=token,
                      timeout=10) as as_user:
        created, _ = await as_user.apply(task())
        for field, verb in (("killed", "Kill"), ("retry", "Retry")):
            changed = object_pb2.Object()
            changed.CopyFrom(created)
            setattr(changed.task.spec, field, 1 if field == "retry" else True)
            with pytest.raises(errors.Forbidden, match=f"may not {verb} Task"):
                await as_user.apply(changed)
        role.role.spec.permission["Task"].verbs.extend(["Kill", "Retry"])
        await client.apply(role)
        created.task.spec.killed = True
        killed, _ = await as_user.apply(created)
        assert killed.task.spec.killed
