"""Volumes on the whole system: a Local storage both agents mount, a file the
workload writes downloaded through one apiserver, a file uploaded through the other
seen inside the container, and a volume in use held until its workload is gone."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from e2e.cluster import APISERVERS, Doractl, eventually, running_on

pytestmark = pytest.mark.timeout(600)


def volume_and_writer() -> str:
    return yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Volume", "metadata": {"name": "results"},
         "spec": {"storage": "e2e-local"}},
        {"apiVersion": "v1", "kind": "Workload", "metadata": {"name": "writer"},
         "spec": {
             "driver": "Docker",
             "selectors": {"cpu": {"product_name": "All", "count": 1}},
             "image": {"image": "dora/busybox", "pullPolicy": "Never"},
             "config": {"cmd": "sh -c 'echo trained > /results/model.txt; sleep 3600'"},
             "volumes": [{"name": "results"}],
         }},
    ], sort_keys=False)


def test_files_in_and_out_of_a_volume_through_either_apiserver(
    ctl: Doractl, tmp_path: Path
) -> None:
    assert "volume/results created" in ctl("apply", "-f", "-", stdin=volume_and_writer()).stdout
    eventually("writer running", lambda: running_on(ctl.containers("writer")), within=90)

    def downloaded() -> str | None:
        ctl("volume", "download", "results:model.txt", str(tmp_path / "model.txt"),
            server=APISERVERS[1])
        return (tmp_path / "model.txt").read_text()
    assert eventually("model.txt through apiserver 2", downloaded, within=60) == "trained\n"

    (tmp_path / "hparams.yaml").write_text("lr: 0.1\n")
    ctl("volume", "upload", str(tmp_path / "hparams.yaml"), "results", server=APISERVERS[0])
    [container] = ctl.containers("writer")
    seen = ctl("exec", container["metadata"]["name"], "--", "cat", "/results/hparams.yaml")
    assert seen.stdout == "lr: 0.1\n"

    deleted = ctl("delete", "volume", "results")
    assert "in use" in deleted.stdout + deleted.stderr, deleted
    assert ctl.objects("volumes", "results"), "a volume in use is held, not deleted"
    ctl("delete", "workload", "writer", "--wait")
    eventually("the volume gone once unused", lambda: not ctl.objects("volumes"), within=90)
