"""doractl's Task parts: `task create` writes the YAML's Task, the table, describe's jobs."""

from __future__ import annotations

import datetime as dt

from dora.api import codec, tasks
from dora.api.v1 import object_pb2, tasks_pb2
from dora.apiserver import admission
from dora.ctl import columns
from dora.ctl.commands import task as task_command

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
EXEC = "python3 /job_tuning.py -d %DATA -c %IN -o %OUT"


def admitted(obj: object_pb2.Object) -> object_pb2.Object:
    obj.metadata.zone, obj.metadata.workspace = "default", "jodafons"
    admission.apply_defaults(obj)
    admission.validate(obj)
    return obj


def test_task_create_writes_what_the_yaml_of_seed_003_says() -> None:
    built = task_command.build(
        name="user.jodafons.my_task_tutorial", image="jodafons/orchestra_tutorial",
        exec_=EXEC, configs=task_command.where("files:my_config_files/", param="-c"),
        data=task_command.where("files:my_data_file.pic", param="-d"),
        output=task_command.where("files:tasks/my_task_tutorial/", param="-o"),
        bypass=True, parallelism=20, gpus=1)
    from_yaml = codec.decode_yaml("""
kind: Task
metadata: {name: user.jodafons.my_task_tutorial}
spec:
  image: {image: jodafons/orchestra_tutorial}
  exec: python3 /job_tuning.py -d %DATA -c %IN -o %OUT
  data: {volume: files, path: my_data_file.pic}
  configs: {volume: files, path: my_config_files/}
  output: {volume: files, path: tasks/my_task_tutorial/}
  selectors: {gpu: {product_name: All, count: 1}}
  parallelism: 20
  testJobs: 0
""")[0]
    assert admitted(built) == admitted(from_yaml)


def status_task() -> object_pb2.Object:
    obj = admitted(task_command.build(
        name="sweep", image="busybox", exec_=EXEC,
        configs=tasks_pb2.TaskPath(volume="files", path="c"),
        data=tasks_pb2.TaskPath(volume="files", path="d"),
        output=tasks_pb2.TaskPath(volume="files", path="o"), test_jobs=2, parallelism=2))
    obj.metadata.creation_timestamp.FromDatetime(NOW - dt.timedelta(minutes=5))
    status = obj.task.status
    status.state, status.total, status.test_jobs = tasks.RUNNING, 6, 2
    status.files = tasks.pack_files([f"c{i}.json" for i in range(6)])
    status.jobs = "CCRFPP"
    status.attempts.extend([1, 1, 1, 2, 0, 0])
    status.completed, status.failed, status.running = 2, 1, 1
    return obj


def attempt(name: str, phase: str, exit_code: int = 0) -> object_pb2.Object:
    obj = object_pb2.Object(kind="Container")
    obj.metadata.name = name
    obj.container.spec.node_name = "gpu-1"
    obj.container.status.phase, obj.container.status.exit_code = phase, exit_code
    return obj


def test_get_tasks_columns() -> None:
    cols = columns.columns("Task")
    assert [c.header for c in cols] == ["NAME", "STATE", "DONE/TOTAL", "FAILED", "RUNNING",
                                        "AGE"]
    assert columns.row(status_task(), cols, now=NOW) == ["sweep", "Running", "2/6", "1", "1",
                                                         "5m"]
    fresh = status_task()
    fresh.task.ClearField("status")
    assert columns.row(fresh, cols, now=NOW)[1:5] == ["Registered", "-", "0", "0"]


def test_describe_shows_progress_test_jobs_and_unfinished_jobs_with_exit_codes() -> None:
    containers = [attempt("sweep.j0-0", "Exited"), attempt("sweep.j3-0", "Exited", 2),
                  attempt("sweep.j3-1", "Exited", 7), attempt("sweep.j2-0", "Running")]
    lines = task_command.job_lines(status_task(), containers, now=NOW)
    assert lines[0] == "Progress:           [##########xxxxx...............] 2/6 completed, " \
                       "1 failed, 1 running"
    rows = [line.split() for line in lines[2:]]
    assert rows[0] == ["JOB", "CONFIG", "STATE", "ATTEMPTS", "EXIT", "CODE", "NODE"]
    assert rows[1:] == [
        ["0", "c0.json", "Completed", "(test)", "1", "0", "gpu-1"],
        ["1", "c1.json", "Completed", "(test)", "1", "-", "-"],
        ["2", "c2.json", "Running", "1", "-", "gpu-1"],
        ["3", "c3.json", "Failed", "2", "7", "gpu-1"],
    ]
