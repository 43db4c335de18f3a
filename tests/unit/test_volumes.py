"""Volume paths (seed 002's rule), confinement of user paths, and the Docker named
volumes the agent makes for Local and NFS storages."""

from __future__ import annotations

import pytest

from dora.agent import dockerspec
from dora.agent.dockerspec import Mount
from dora.api import errors, objects, volumes
from dora.api.v1 import cluster_pb2


def storage(mountpath: str = "/dora-storage-01/share-01") -> cluster_pb2.StorageSpec:
    return cluster_pb2.StorageSpec(endpoint="10.10.10.1", mountpath=mountpath, kind="NFS")


def test_the_path_is_mountpath_workspace_name() -> None:
    path = volumes.volume_path(storage=storage(), workspace="amedeo.setti", name="home")
    assert path == "/dora-storage-01/share-01/amedeo.setti/home"


def test_local_path_is_read_inside_the_storage() -> None:
    path = volumes.volume_path(storage=storage("/srv/dora/"), workspace="w", name="home",
                               local_path="/my/very/special/path")
    assert path == "/srv/dora/my/very/special/path"


@pytest.mark.parametrize("local_path", ["../etc", "/a/../../etc", "a/..", "/", "./."])
def test_local_path_cannot_leave_or_be_the_storage(local_path: str) -> None:
    with pytest.raises(errors.Invalid, match=r"spec\.localPath") as caught:
        volumes.volume_path(storage=storage(), workspace="w", name="home",
                            local_path=local_path)
    assert caught.value.violations[0].field == "spec.localPath"


@pytest.mark.parametrize(("given", "inside"), [
    ("", ""), ("/", ""), ("src/main.py", "src/main.py"), ("/src//./main.py", "src/main.py"),
    ("./a/b/", "a/b"),
])
def test_user_paths_are_relative_to_the_volume_root(given: str, inside: str) -> None:
    assert volumes.clean(given) == inside


@pytest.mark.parametrize("given", ["..", "../x", "a/../../etc/passwd", "/../etc", "a/..",
                                   "a\\..\\b", "a\0b"])
def test_user_paths_that_try_to_escape_are_refused(given: str) -> None:
    with pytest.raises(errors.Invalid, match="remote") as caught:
        volumes.clean(given, field="remote")
    assert caught.value.violations[0].field == "remote"


def test_containers_name_the_volumes_they_mount_in_their_workspace_or_another() -> None:
    obj = objects.new("Container", "web.0", zone="z", workspace="me")
    obj.container.spec.template.volumes.add(name="home", target="/home")
    obj.container.spec.template.volumes.add(name="imagenet", workspace="datasets")
    assert volumes.mounts_of(obj) == [("me", "home"), ("datasets", "imagenet")]
    assert volumes.in_use(obj)
    obj.container.status.phase = "Exited"
    assert not volumes.in_use(obj)


def test_a_local_volume_is_a_bind_of_its_directory() -> None:
    mount = Mount(workspace="w", name="home", kind="Local", path="/data/w/home",
                  target="/home")
    volume = dockerspec.docker_volume(mount, zone="z")
    assert volume.options == {"type": "none", "o": "bind", "device": "/data/w/home"}
    assert volume.name.startswith("dora-z-w-home-")
    assert volume.labels == {"dora.zone": "z", "dora.workspace": "w", "dora.volume": "home"}


def test_an_nfs_volume_points_at_endpoint_and_path_and_its_name_follows_the_options() -> None:
    mount = Mount(workspace="w", name="home", kind="NFS", path="/share/w/home",
                  target="/home", endpoint="10.10.10.1")
    volume = dockerspec.docker_volume(mount, zone="z")
    assert volume.options == {"type": "nfs", "o": "addr=10.10.10.1,rw,nfsvers=4,hard",
                              "device": ":/share/w/home"}
    moved = dockerspec.docker_volume(
        Mount(workspace="w", name="home", kind="NFS", path="/share/w/home", target="/home",
              endpoint="10.10.10.2"), zone="z")
    assert moved.name != volume.name


def test_mounts_become_named_volumes_at_their_targets() -> None:
    obj = objects.new("Container", "web.0", zone="z", workspace="w")
    obj.metadata.uid = "0a1b2c3d"
    obj.container.spec.template.image.image = "busybox"
    obj.container.spec.template.volumes.add(name="home", target="/home")
    obj.container.spec.template.volumes.add(name="data", workspace="datasets", read_only=True)
    mounts = [
        Mount(workspace="w", name="home", kind="Local", path="/d/w/home", target="/home"),
        Mount(workspace="datasets", name="data", kind="Local", path="/d/datasets/data",
              target="/data", read_only=True),
    ]
    spec = dockerspec.run_spec(obj, node="n", simulated_gpus=False, mounts=mounts)
    assert sorted(spec.volumes.values()) == [("/data", True), ("/home", False)]
