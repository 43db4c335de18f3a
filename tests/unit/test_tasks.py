"""The Task kind's pure parts: admission, tag substitution, names and the packed job list."""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

import pytest

from dora.api import codec, errors, tasks
from dora.api.v1 import object_pb2
from dora.apiserver import admission
from tests.unit import seeds

EXEC = "python3 /job_tuning.py -d %DATA -c %IN -o %OUT"


def task(**spec: Any) -> object_pb2.Object:
    body: dict[str, Any] = {
        "image": {"image": "jodafons/orchestra_tutorial"},
        "exec": EXEC,
        "data": {"volume": "files", "path": "my_data_file.pic"},
        "configs": {"volume": "files", "path": "my_config_files/"},
        "output": {"volume": "files", "path": "tasks/my_task_tutorial/"},
    }
    body.update(spec)
    return codec.from_dict({
        "kind": "Task",
        "metadata": {"name": "user.jodafons.my_task_tutorial", "zone": seeds.ZONE,
                     "workspace": "jodafons"},
        "spec": {k: v for k, v in body.items() if v is not None},
    })


def admit(obj: object_pb2.Object) -> object_pb2.Object:
    admission.apply_defaults(obj)
    admission.validate(obj)
    return obj


def violations(obj: object_pb2.Object) -> dict[str, str]:
    with pytest.raises(errors.Invalid) as caught:
        admit(obj)
    return {v.field: v.description for v in caught.value.violations}


def test_defaults_fill_what_seed_003_leaves_out() -> None:
    spec = admit(task()).task.spec
    assert spec.test_jobs == 10
    assert not spec.HasField("parallelism")
    assert spec.selectors.cpu.count == 1
    assert spec.affinity == "First"
    assert spec.image.pull_policy == "IfNotPresent"


def test_bypass_is_zero_test_jobs_and_constants_are_canonicalised() -> None:
    spec = admit(task(testJobs=0, affinity="distribute", parallelism=4)).task.spec
    assert spec.test_jobs == 0
    assert spec.affinity == "Distribute"
    assert spec.parallelism == 4


@pytest.mark.parametrize("tag", ["%DATA", "%IN", "%OUT"])
def test_exec_without_a_mandatory_tag_names_it(tag: str) -> None:
    found = violations(task(exec=EXEC.replace(tag, "x")))
    assert found == {"spec.exec": f"must contain {tag} ({tasks.TAG_MEANING[tag]})"}


def test_every_bad_field_is_named_at_once() -> None:
    found = violations(task(parallelism=0, testJobs=-1, retries=-2, affinity="Near",
                            configs={"path": "../up"}, output={"volume": "files"},
                            volumes=[{"name": "x", "target": "/task/mine"}]))
    assert found["spec.parallelism"].startswith("must be >= 1")
    assert found["spec.testJobs"] == "must be >= 0"
    assert found["spec.retries"] == "must be >= 0"
    assert "First" in found["spec.affinity"]
    assert found["spec.configs.volume"] == "required"
    assert "'..'" in found["spec.configs.path"]
    assert "/task" in found["spec.volumes[0].target"]
    assert "spec.output.volume" not in found


def test_negative_parallelism_and_missing_image_are_refused() -> None:
    found = violations(task(parallelism=-3, image={"image": ""}, exec=""))
    assert set(found) == {"spec.parallelism", "spec.image.image", "spec.exec"}


def test_substitution_gives_in_container_paths_per_job() -> None:
    obj = admit(task(exec=". /setup.sh && run -d %DATA -c %IN -o %OUT -j %JOB && after"))
    values = tasks.paths(obj, 7, "config_sort_1_init_2.json")
    assert values == {
        "%DATA": "/task/jodafons/files/my_data_file.pic",
        "%IN": "/task/jodafons/files/my_config_files/config_sort_1_init_2.json",
        "%OUT": "/task/jodafons/files/tasks/my_task_tutorial/config_sort_1_init_2/",
        "%JOB": "7",
    }
    command = tasks.job_command(obj, 7, "config_sort_1_init_2.json")
    first, second = command.split("\n")
    assert first == ("mkdir -p /task/jodafons/files/tasks/my_task_tutorial/"
                     "config_sort_1_init_2/ || exit 1")
    assert second == (". /setup.sh && run -d /task/jodafons/files/my_data_file.pic "
                      "-c /task/jodafons/files/my_config_files/config_sort_1_init_2.json "
                      "-o /task/jodafons/files/tasks/my_task_tutorial/config_sort_1_init_2/ "
                      "-j 7 && after")


def test_substituted_paths_are_quoted_for_the_shell() -> None:
    obj = admit(task(exec="printf '%s|' %IN %OUT %DATA"))
    command = tasks.substitute(obj.task.spec.exec, tasks.paths(obj, 0, "a b;rm x.json"))
    printed = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                             check=True).stdout
    assert printed.split("|")[:2] == ["/task/jodafons/files/my_config_files/a b;rm x.json",
                                      "/task/jodafons/files/tasks/my_task_tutorial/a b;rm x/"]
    assert shlex.split(command)[0] == "printf"


def test_stem_drops_only_the_last_suffix() -> None:
    assert tasks.stem("sort_1.init_2.json") == "sort_1.init_2"
    assert tasks.stem("noext") == "noext"
    assert tasks.stem(".hidden") == ".hidden"


def test_template_mounts_each_volume_once_where_the_paths_point() -> None:
    obj = admit(task(data={"volume": "shared", "workspace": "lab", "path": "d.pic"},
                     volumes=[{"name": "scratch"}]))
    template = tasks.template(obj)
    assert [(v.name, v.workspace, v.target) for v in template.volumes] == [
        ("shared", "lab", "/task/lab/shared"),
        ("files", "jodafons", "/task/jodafons/files"),
        ("scratch", "", "/scratch"),
    ]
    assert template.config.restart_policy == "Never"


def test_container_names_round_trip_and_never_look_like_a_workloads() -> None:
    name = tasks.container_name("t.1", 17, 2)
    assert name == "t.1.j17-2"
    assert tasks.attempt_of("t.1", name) == (17, 2)
    assert tasks.attempt_of("t", name) is None
    assert tasks.attempt_of("t.1", "t.1.3") is None


def test_ten_thousand_file_names_pack_small_and_unpack_in_order() -> None:
    names = [f"config_sort_{s}_init_{i}.json" for s in range(100) for i in range(100)]
    packed = tasks.pack_files(names)
    assert len(packed) < 64 * 1024
    assert tasks.unpack_files(packed) == names
    assert tasks.unpack_files("") == []
    assert tasks.unpack_files(tasks.pack_files([])) == []


def test_yaml_round_trip() -> None:
    obj = admit(task(parallelism=2, retries=1))
    obj.task.status.state = tasks.RUNNING
    obj.task.status.files = tasks.pack_files(["a.json", "b.json"])
    obj.task.status.jobs = "CR"
    obj.task.status.attempts.extend([1, 2])
    assert codec.decode_yaml(codec.to_yaml([obj])) == [obj]


def test_a_tasks_priority_goes_to_its_jobs_and_is_bounded() -> None:
    assert tasks.template(admit(task(priority=-20))).priority == -20
    assert violations(task(priority=500)) == {"spec.priority": "must be from -100 to 100"}
