"""From a Container to Docker options and labels, and from Docker's state to a status."""

from __future__ import annotations

import datetime as dt

import pytest

from dora.agent import dockerspec
from dora.agent.containers import observed_status
from dora.agent.dockerspec import Observed
from dora.agent.inventory import read_memory
from dora.api import objects
from dora.api.objects import Ref
from dora.api.v1 import object_pb2, workloads_pb2


def container(**template: object) -> object_pb2.Object:
    obj = objects.new("Container", "web.0", zone="eu-1", workspace="team a")
    obj.metadata.uid = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
    spec = obj.container.spec
    spec.workload, spec.version, spec.node_name = "web", 3, "gpu-1"
    spec.template.image.image = "dora/busybox:latest"
    for name, value in template.items():
        section, _, field = name.partition("__")
        setattr(getattr(spec.template, section), field, value)
    return obj


def test_labels_name_the_node_the_incarnation_and_the_container() -> None:
    labels = dockerspec.labels_for(container(), node="gpu-1")
    assert labels == {
        "dora.node": "gpu-1", "dora.uid": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "dora.zone": "eu-1", "dora.workspace": "team a", "dora.container": "web.0",
        "dora.workload": "web", "dora.version": "3",
    }
    assert dockerspec.key_of(labels) == Ref("Container", "eu-1", "team a", "web.0")
    assert dockerspec.key_of({"dora.node": "gpu-1"}) is None


def test_docker_names_are_readable_valid_and_unique_per_incarnation() -> None:
    first = container()
    again = container()
    again.metadata.uid = "ffffffff-0000-0000-0000-000000000000"
    assert dockerspec.docker_name(first) == "dora-eu-1-team_a-web.0-0a1b2c3d"
    assert dockerspec.docker_name(again) == "dora-eu-1-team_a-web.0-ffffffff"


def test_run_options_come_from_the_template() -> None:
    obj = container(config__cmd="sh -c 'echo hi && sleep 1'", config__shm_size=2**30,
                    network__mode="bridge")
    obj.container.spec.cpu_millicores = 1500
    obj.container.spec.template.network.ports.add(node_port=25000, port=8008, protocol="tcp")
    obj.container.spec.template.network.ports.add(node_port=25001, port=53, protocol="udp")
    obj.container.spec.gpus.add(index=0, uuid="GPU-a", product_name="A100")
    obj.container.spec.gpus.add(index=3, uuid="GPU-d", product_name="A100")
    spec = dockerspec.run_spec(obj, node="gpu-1", simulated_gpus=False)
    assert spec.command == ["sh", "-c", "echo hi && sleep 1"]
    assert spec.shm_size == 2**30
    assert spec.nano_cpus == 1_500_000_000
    assert spec.gpu_uuids == ("GPU-a", "GPU-d")
    assert spec.network_mode == "bridge"
    assert spec.ports == {"8008/tcp": 25000, "53/udp": 25001}
    assert spec.labels["dora.uid"] == obj.metadata.uid


def test_cmd_is_split_into_shell_words_like_compose_command() -> None:
    obj = container(config__cmd='sh -c "i=0; while true; do echo tick-$i; i=$((i+1)); '
                                'sleep 1; done"')
    assert dockerspec.run_spec(obj, node="n", simulated_gpus=False).command == [
        "sh", "-c", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 1; done"]
    obj = container(config__cmd="python train.py --name 'two words' --x=1")
    assert dockerspec.run_spec(obj, node="n", simulated_gpus=False).command == [
        "python", "train.py", "--name", "two words", "--x=1"]


def test_a_container_of_a_version_stored_before_argv_keeps_its_shell_meaning() -> None:
    obj = container(config__cmd="echo $HOME && sleep 1")
    obj.container.spec.shell_cmd = True
    assert dockerspec.run_spec(obj, node="n", simulated_gpus=False).command == [
        "/bin/sh", "-c", "echo $HOME && sleep 1"]


def test_an_unbalanced_quote_is_refused_naming_the_field() -> None:
    with pytest.raises(dockerspec.Unsupported, match=r"spec\.template\.config\.cmd: No closing"):
        dockerspec.run_spec(container(config__cmd='sh -c "echo'), node="n",
                            simulated_gpus=False)


def test_containers_run_with_a_tty_and_open_stdin_like_docker_run_it() -> None:
    spec = dockerspec.run_spec(container(config__cmd="/bin/sh"), node="n",
                               simulated_gpus=False)
    assert (spec.command, spec.tty, spec.stdin_open) == (["/bin/sh"], True, True)


def test_the_environment_is_config_env_then_what_dora_tells_the_container() -> None:
    obj = container()
    obj.container.spec.template.config.env.add(name="MODE", value="fast")
    obj.container.spec.template.config.env.add(name="EMPTY", value="")
    obj.container.spec.replica_index, obj.container.spec.replicas = 2, 4
    obj.container.spec.gpus.add(index=0, uuid="GPU-a")
    obj.container.spec.gpus.add(index=3, uuid="GPU-d")
    env = dockerspec.run_spec(obj, node="gpu-1", simulated_gpus=True).environment
    assert env == {
        "MODE": "fast", "EMPTY": "",
        "DORA_WORKLOAD": "web", "DORA_CONTAINER": "web.0", "DORA_REPLICA_INDEX": "2",
        "DORA_REPLICAS": "4", "DORA_NODE": "gpu-1", "DORA_ZONE": "eu-1",
        "DORA_WORKSPACE": "team a",
        "NVIDIA_VISIBLE_DEVICES": "GPU-a,GPU-d", "CUDA_VISIBLE_DEVICES": "GPU-a,GPU-d",
    }


def test_a_container_without_gpus_sees_none_and_older_ones_take_the_index_from_the_name(
) -> None:
    obj = container()
    obj.metadata.name = "web.5"
    env = dockerspec.dora_environment(obj, node="n")
    assert env["DORA_REPLICA_INDEX"] == "5"
    assert (env["NVIDIA_VISIBLE_DEVICES"], env["CUDA_VISIBLE_DEVICES"]) == ("void", "")


def test_defaults_run_the_images_command_without_network_or_limits() -> None:
    spec = dockerspec.run_spec(container(), node="gpu-1", simulated_gpus=False)
    assert spec.command is None
    assert (spec.shm_size, spec.nano_cpus, spec.gpu_uuids) == (0, 0, ())
    assert spec.network_mode == "none"
    assert spec.ports == {}


def test_simulated_gpus_are_never_handed_to_docker() -> None:
    obj = container()
    obj.container.spec.gpus.add(index=0, uuid="GPU-sim")
    assert dockerspec.run_spec(obj, node="gpu-1", simulated_gpus=True).gpu_uuids == ()


def test_ports_mean_nothing_on_host_and_none_networks() -> None:
    obj = container(network__mode="host")
    obj.container.spec.template.network.ports.add(node_port=25000, port=8008)
    assert dockerspec.run_spec(obj, node="n", simulated_gpus=False).ports == {}


def test_a_volume_that_was_not_resolved_is_never_left_out() -> None:
    obj = container()
    obj.container.spec.template.volumes.add(name="home", target="/home")
    with pytest.raises(dockerspec.Unsupported, match="volumes \\(team a/home\\) were not "
                       "resolved"):
        dockerspec.run_spec(obj, node="n", simulated_gpus=False)


def test_docker_times_parse_to_the_microsecond_and_zero_is_none() -> None:
    parsed = dockerspec.parse_docker_time("2026-05-07T21:09:36.123456789Z")
    assert parsed == dt.datetime(2026, 5, 7, 21, 9, 36, 123456, tzinfo=dt.UTC)
    assert dockerspec.parse_docker_time("0001-01-01T00:00:00Z") is None
    assert dockerspec.parse_docker_time("2026-05-07T21:09:36Z") is not None


def inspect(status: str, **state: object) -> dict[str, object]:
    return {
        "Id": "abc123", "Name": "/dora-x",
        "Config": {"Labels": {"dora.uid": "u"}},
        "State": {"Status": status, "ExitCode": 0, "StartedAt": "2026-05-07T21:09:36.5Z",
                  "FinishedAt": "0001-01-01T00:00:00Z", "OOMKilled": False, "Error": "",
                  **state},
    }


def test_a_running_container_reports_running_with_its_start() -> None:
    observed = dockerspec.observed_from_inspect(inspect("running"))
    assert observed == Observed(
        id="abc123", name="dora-x", labels={"dora.uid": "u"}, state="running",
        started_at=dt.datetime(2026, 5, 7, 21, 9, 36, 500000, tzinfo=dt.UTC),
    )
    current = workloads_pb2.ContainerStatus(phase="Creating")
    current.conditions.add(type="Scheduled", status="True")
    status = observed_status(current, observed, node="gpu-1")
    assert (status.phase, status.docker_id, status.node_name) == ("Running", "abc123", "gpu-1")
    assert status.started_at.ToDatetime(dt.UTC) == observed.started_at
    assert [c.type for c in status.conditions] == ["Scheduled"], "kept: not the agent's"


@pytest.mark.parametrize(
    ("state", "phase", "exit_code", "reason"),
    [
        ({"ExitCode": 0}, "Exited", 0, "Completed"),
        ({"ExitCode": 3}, "Exited", 3, "Error"),
        ({"ExitCode": 137, "OOMKilled": True}, "Exited", 137, "OOMKilled"),
    ],
)
def test_an_exited_container_reports_its_exit_code(
    state: dict[str, object], phase: str, exit_code: int, reason: str
) -> None:
    attrs = inspect("exited", FinishedAt="2026-05-07T21:10:00Z", **state)
    observed = dockerspec.observed_from_inspect(attrs)
    status = observed_status(workloads_pb2.ContainerStatus(phase="Running"), observed, node="n")
    assert (status.phase, status.exit_code, status.reason) == (phase, exit_code, reason)
    assert status.finished_at.ToDatetime(dt.UTC) == dt.datetime(2026, 5, 7, 21, 10,
                                                                tzinfo=dt.UTC)


def test_a_paused_container_reports_paused_and_thawed_running_again() -> None:
    observed = dockerspec.observed_from_inspect(inspect("paused", Paused=True))
    status = observed_status(workloads_pb2.ContainerStatus(phase="Running"), observed,
                             node="gpu-1")
    assert (status.phase, status.reason) == ("Paused", "")
    running = dockerspec.observed_from_inspect(inspect("running"))
    assert observed_status(status, running, node="gpu-1").phase == "Running"


def test_a_task_job_runs_without_a_terminal_and_a_replica_with_one() -> None:
    replica = objects.new("Container", "w.0", zone="z", workspace="g")
    replica.metadata.owner_references.add(kind="Workload", name="w", uid="u1")
    job = objects.new("Container", "t.j0-0", zone="z", workspace="g")
    job.metadata.owner_references.add(kind="Task", name="t", uid="u2")
    assert dockerspec.interactive(replica) and not dockerspec.interactive(job)


def test_memory_comes_from_the_cpu_selector_else_the_gpu_selector() -> None:
    def run_spec(cpu: int | None, gpu: int | None) -> dockerspec.RunSpec:
        obj = container()
        selectors = obj.container.spec.template.selectors
        if cpu is not None:
            selectors.cpu.memory = cpu
        if gpu is not None:
            selectors.gpu.memory = gpu
        return dockerspec.run_spec(obj, node="gpu-1", simulated_gpus=False,
                                   node_memory=2**34)

    # None named: three quarters of the node's memory, never unlimited.
    assert run_spec(None, None).mem_limit == 3 * 2**32
    assert run_spec(0, None).mem_limit == 3 * 2**32
    assert run_spec(2**30, None).mem_limit == 2**30
    assert run_spec(None, 2**31).mem_limit == 2**31
    assert run_spec(2**30, 2**31).mem_limit == 2**30
    assert run_spec(0, 2**31).mem_limit == 2**31


def test_a_container_naming_no_memory_gets_a_share_of_this_machines() -> None:
    spec = dockerspec.run_spec(container(), node="n", simulated_gpus=False)
    assert spec.mem_limit == int(read_memory() * dockerspec.DEFAULT_MEMORY_FRACTION) > 0
