"""Admission: defaults, then validation that names every bad field at once."""

from __future__ import annotations

from typing import Any

import pytest

from dora.api import codec, errors, kinds
from dora.api.v1 import object_pb2
from dora.apiserver import admission
from tests.unit import seeds


def make(kind: str, spec: dict[str, Any] | None = None, **metadata: Any) -> object_pb2.Object:
    """An object of ``kind`` named ``a`` in the default scope its kind has."""
    meta: dict[str, Any] = {"name": "a"}
    if kinds.get(kind).zoned:
        meta["zone"] = seeds.ZONE
    if kinds.get(kind).workspaced:
        meta["workspace"] = seeds.WORKSPACE
    meta.update(metadata)
    data: dict[str, Any] = {"kind": kind, "metadata": meta}
    if spec is not None:
        data["spec"] = spec
    return codec.from_dict(data)


def workload(**spec: Any) -> object_pb2.Object:
    spec.setdefault("image", {"image": "ubuntu"})
    return make("Workload", spec)


def admit(obj: object_pb2.Object) -> object_pb2.Object:
    admission.apply_defaults(obj)
    admission.validate(obj)
    return obj


def rejected(obj: object_pb2.Object) -> errors.Invalid:
    admission.apply_defaults(obj)
    with pytest.raises(errors.Invalid) as caught:
        admission.validate(obj)
    return caught.value


def fields(error: errors.Invalid) -> list[str]:
    return [v.field for v in error.violations]


# --- every seed object is admitted -----------------------------------------------------


@pytest.mark.parametrize("name", seeds.params())
def test_seed_objects_are_admitted(name: str) -> None:
    for obj in seeds.decode(name):
        admitted = admit(seeds.scoped(obj))
        # Admission is idempotent: a stored object is admitted again unchanged.
        again = object_pb2.Object()
        again.CopyFrom(admitted)
        assert admit(again) == admitted
        assert codec.decode_yaml(codec.to_yaml([admitted])) == [admitted]


def test_seed_workload_keeps_what_it_says() -> None:
    obj = admit(seeds.one("001-02-workload-complete.yaml"))
    spec = obj.workload.spec
    assert spec.replica.count == 2
    assert not spec.selectors.HasField("cpu")
    assert list(spec.selectors.gpu.product_name) == ["Quadro RTX 6000", "Tesla V100-SXM2-16GB"]
    assert spec.config.affinity == "Distribute"
    assert spec.config.restart_policy == "Always"
    assert spec.image.pull_policy == "Always"
    assert [v.target for v in spec.volumes] == ["/home", "/imagenet"]


def test_seed_simple_workload_gets_defaults() -> None:
    spec = admit(seeds.scoped(seeds.one("001-01-workload-simple.yaml"))).workload.spec
    assert spec.replica.count == 1
    assert spec.image.pull_policy == "IfNotPresent"
    assert spec.config.restart_policy == "Never"
    assert spec.config.affinity == "First"
    assert spec.network.mode == "none"


def test_seed_with_no_scope_is_refused_until_scoped() -> None:
    error = rejected(seeds.one("001-01-workload-simple.yaml"))
    assert fields(error) == ["metadata.zone", "metadata.workspace"]


# --- defaults ------------------------------------------------------------------------


def test_workload_defaults() -> None:
    obj = workload()
    admission.apply_defaults(obj)
    spec = obj.workload.spec
    assert spec.replica.HasField("count")
    assert spec.replica.count == 1
    assert spec.driver == "Docker"
    assert spec.image.pull_policy == "IfNotPresent"
    assert spec.config.restart_policy == "Never"
    assert spec.config.affinity == "First"
    assert spec.network.mode == "none"
    assert spec.selectors.cpu.count == 1
    assert list(spec.selectors.cpu.product_name) == ["All"]
    assert not spec.selectors.HasField("gpu")


def test_zero_replicas_stay_zero() -> None:
    obj = workload(replica={"count": 0})
    admit(obj)
    assert obj.workload.spec.replica.count == 0


def test_a_gpu_selector_gets_no_cpu_default() -> None:
    obj = workload(selectors={"gpu": {"count": 2}})
    admit(obj)
    selectors = obj.workload.spec.selectors
    assert not selectors.HasField("cpu")
    assert list(selectors.gpu.product_name) == ["All"]
    assert selectors.gpu.count == 2


def test_a_cpu_selector_keeps_its_count() -> None:
    obj = workload(selectors={"cpu": {"product_name": "Xeon", "millicores": 500}})
    admit(obj)
    cpu = obj.workload.spec.selectors.cpu
    assert (list(cpu.product_name), cpu.count, cpu.millicores) == (["Xeon"], 0, 500)


def test_given_values_are_kept() -> None:
    obj = workload(
        driver="Docker",
        image={"image": "ubuntu", "pullPolicy": "Never"},
        config={"restartPolicy": "Always", "affinity": "Fill"},
        network={"mode": "host"},
    )
    admit(obj)
    spec = obj.workload.spec
    assert spec.image.pull_policy == "Never"
    assert (spec.config.restart_policy, spec.config.affinity) == ("Always", "Fill")
    assert spec.network.mode == "host"


def test_volume_target_defaults_to_its_name() -> None:
    obj = workload(volumes=[{"name": "home"}, {"name": "data", "target": "/mnt/data"}])
    admit(obj)
    assert [v.target for v in obj.workload.spec.volumes] == ["/home", "/mnt/data"]


def test_port_defaults() -> None:
    obj = workload(network={"mode": "bridge", "ports": [{"nodePort": 25000, "port": 8008}]})
    admit(obj)
    (port,) = obj.workload.spec.network.ports
    assert (port.kind, port.protocol) == ("NodePort", "tcp")


def test_container_template_gets_workload_defaults() -> None:
    obj = make("Container", {"workload": "w", "template": {"image": {"image": "ubuntu"}}})
    admit(obj)
    template = obj.container.spec.template
    assert template.replica.count == 1
    assert template.config.restart_policy == "Never"


def test_user_bindings_default_to_all() -> None:
    obj = make("User", {"resources": [{"role": "user"}, {"role": "admin", "zone": "z1"}]})
    admit(obj)
    assert [(b.kind, b.zone, b.workspace, b.role) for b in obj.user.spec.resources] == [
        ("All", "All", "All", "user"),
        ("All", "z1", "All", "admin"),
    ]


def test_storage_kind_defaults_to_nfs() -> None:
    obj = make("Storage", {"endpoint": "10.0.0.1", "mountpath": "/share"})
    admit(obj)
    assert obj.storage.spec.kind == "NFS"


def test_defaults_are_idempotent() -> None:
    once = workload(volumes=[{"name": "home"}])
    admission.apply_defaults(once)
    twice = object_pb2.Object()
    twice.CopyFrom(once)
    admission.apply_defaults(twice)
    assert once == twice


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "violation"),
    [
        (workload(selectors={"gpu": {"count": -1}}), "spec.selectors.gpu.count: must be >= 0"),
        (workload(selectors={"cpu": {"count": -1}}), "spec.selectors.cpu.count: must be >= 0"),
        (
            workload(selectors={"cpu": {"millicores": -5}}),
            "spec.selectors.cpu.millicores: must be >= 0",
        ),
        (workload(replica={"count": -2}), "spec.replica.count: must be >= 0"),
        (workload(config={"shmSize": -1}), "spec.config.shmSize: must be >= 0"),
        (make("User", {"credits": [{"zone": "z", "weekly": -1}]}),
         "spec.credits[0].weekly: must be >= 0"),
        (make("Resourcecredit", {"product_name": "A100", "credit": {"per": {"hour": -0.5}}}),
         "spec.credit.per.hour: must be >= 0"),
    ],
)
def test_negative_numbers(obj: object_pb2.Object, violation: str) -> None:
    error = rejected(obj)
    assert [str(v) for v in error.violations] == [violation]
    assert error.message == violation


@pytest.mark.parametrize(
    ("obj", "field", "allowed"),
    [
        (workload(driver="Podman"), "spec.driver", "Docker"),
        (workload(image={"image": "x", "pullPolicy": "Sometimes"}), "spec.image.pullPolicy",
         "Always, IfNotPresent, Never"),
        (workload(config={"restartPolicy": "OnFailure"}), "spec.config.restartPolicy",
         "Never, Always"),
        (workload(config={"affinity": "Spread"}), "spec.config.affinity",
         "First, Random, Distribute, Fill"),
        (workload(network={"mode": "overlay"}), "spec.network.mode", "none, bridge, host"),
        (workload(network={"mode": "bridge", "ports": [{"nodePort": 1, "port": 1,
                                                        "protocol": "sctp"}]}),
         "spec.network.ports[0].protocol", "tcp, udp"),
        (workload(network={"mode": "bridge", "ports": [{"nodePort": 1, "port": 1,
                                                        "kind": "LoadBalancer"}]}),
         "spec.network.ports[0].kind", "NodePort"),
        (make("Node", {"allow": ["CPUWorkload", "TPUWorkload"]}), "spec.allow[1]",
         "CPUWorkload, GPUWorkload"),
        (make("Storage", {"kind": "S3", "mountpath": "/x"}), "spec.kind", "NFS, Local"),
    ],
)
def test_bad_constant_lists_the_allowed_values(
    obj: object_pb2.Object, field: str, allowed: str
) -> None:
    error = rejected(obj)
    assert fields(error) == [field]
    assert f"must be one of {allowed}, not " in error.violations[0].description


@pytest.mark.parametrize(
    ("obj", "read", "canonical"),
    [
        (workload(config={"restartPolicy": "always"}),
         lambda o: o.workload.spec.config.restart_policy, "Always"),
        (workload(config={"restartPolicy": "NEVER"}),
         lambda o: o.workload.spec.config.restart_policy, "Never"),
        (workload(config={"affinity": "distribute"}),
         lambda o: o.workload.spec.config.affinity, "Distribute"),
        (workload(config={"affinity": "fILL"}), lambda o: o.workload.spec.config.affinity, "Fill"),
        (workload(image={"image": "x", "pullPolicy": "ifnotpresent"}),
         lambda o: o.workload.spec.image.pull_policy, "IfNotPresent"),
        (workload(driver="docker"), lambda o: o.workload.spec.driver, "Docker"),
        (workload(network={"mode": "Bridge", "ports": [{"nodePort": 1, "port": 2,
                                                        "protocol": "UDP", "kind": "nodeport"}]}),
         lambda o: (o.workload.spec.network.mode, o.workload.spec.network.ports[0].protocol,
                    o.workload.spec.network.ports[0].kind),
         ("bridge", "udp", "NodePort")),
        (make("Node", {"allow": ["gpuworkload", "CPUWORKLOAD"]}),
         lambda o: list(o.node.spec.allow), ["GPUWorkload", "CPUWorkload"]),
        (make("Storage", {"kind": "nfs", "endpoint": "e", "mountpath": "/x"}),
         lambda o: o.storage.spec.kind, "NFS"),
        (make("Container", {"workload": "w", "template": {
            "image": {"image": "x"}, "config": {"restartPolicy": "always"}}}),
         lambda o: o.container.spec.template.config.restart_policy, "Always"),
    ],
)
def test_constants_are_canonicalised(obj: object_pb2.Object, read: Any, canonical: Any) -> None:
    admit(obj)
    assert read(obj) == canonical


def test_product_name_all_is_canonicalised() -> None:
    obj = workload(selectors={"gpu": {"product_name": "all", "count": 1}})
    admit(obj)
    assert list(obj.workload.spec.selectors.gpu.product_name) == ["All"]


def test_all_cannot_be_combined_with_products() -> None:
    error = rejected(workload(selectors={"gpu": {"product_name": ["All", "A100"]}}))
    assert fields(error) == ["spec.selectors.gpu.product_name"]


def test_empty_product_name() -> None:
    error = rejected(workload(selectors={"gpu": {"product_name": ["A100", " "]}}))
    assert fields(error) == ["spec.selectors.gpu.product_name[1]"]


def test_gpus_are_whole_devices() -> None:
    error = rejected(workload(selectors={"gpu": {"millicores": 500}}))
    assert fields(error) == ["spec.selectors.gpu.millicores"]


def test_missing_name() -> None:
    error = rejected(make("Workload", {"image": {"image": "x"}}, name=""))
    assert [str(v) for v in error.violations] == ["metadata.name: required"]


def test_missing_image() -> None:
    error = rejected(make("Workload", {}))
    assert [str(v) for v in error.violations] == ["spec.image.image: required"]


@pytest.mark.parametrize(
    "name",
    ["-a", "a-", ".a", "a.", "a b", "a/b", "a:b", "a\nb", "x" * 254, "ä", "a@b", "..", "*"],
)
def test_invalid_names(name: str) -> None:
    error = rejected(make("Zone", name=name))
    assert fields(error) == ["metadata.name"]
    assert "is not a valid name" in error.message


@pytest.mark.parametrize("name", ["a", "blue.red", "amedeo.setti", "dc-rov-01", "A_b-C.9",
                                  "x" * 253])
def test_valid_names(name: str) -> None:
    admit(make("Zone", name=name))


@pytest.mark.parametrize(
    ("kind", "field"),
    [("Workload", "metadata.zone"), ("Workload", "metadata.workspace"), ("Node", "metadata.zone")],
)
def test_bad_scope_names(kind: str, field: str) -> None:
    spec = {"image": {"image": "x"}} if kind == "Workload" else {}
    obj = make(kind, spec, **{field.split(".")[1]: "no/slashes"})
    assert fields(rejected(obj)) == [field]


def test_product_names_may_have_spaces_only_for_resourcecredits() -> None:
    admit(make("Resourcecredit", {"product_name": "Tesla V100-SXM2-16GB"},
               name="Tesla V100-SXM2-16GB"))
    assert fields(rejected(make("Node", name="Tesla V100"))) == ["metadata.name"]


@pytest.mark.parametrize(
    ("kind", "scope", "field"),
    [
        ("Zone", {"zone": "dc-rov-01"}, "metadata.zone"),
        ("Workspace", {"zone": "dc-rov-01"}, "metadata.zone"),
        ("User", {"workspace": "ws"}, "metadata.workspace"),
        ("Node", {"workspace": "ws"}, "metadata.workspace"),
        ("Storage", {"workspace": "ws"}, "metadata.workspace"),
    ],
)
def test_scope_a_kind_does_not_have_is_an_error(
    kind: str, scope: dict[str, str], field: str
) -> None:
    spec = {"mountpath": "/x", "endpoint": "e"} if kind == "Storage" else None
    error = rejected(make(kind, spec, **scope))
    assert fields(error) == [field]


@pytest.mark.parametrize(("kind", "missing"), [("Node", "metadata.zone"),
                                               ("Volume", "metadata.workspace")])
def test_scope_a_kind_needs(kind: str, missing: str) -> None:
    spec = {"storage": "s"} if kind == "Volume" else None
    obj = make(kind, spec, **{missing.split(".")[1]: ""})
    assert [str(v) for v in rejected(obj).violations] == [f"{missing}: required"]


@pytest.mark.parametrize("mode", [None, "none", "host"])
def test_ports_need_bridge_mode(mode: str | None) -> None:
    network: dict[str, Any] = {"ports": [{"nodePort": 25000, "port": 8008}]}
    if mode is not None:
        network["mode"] = mode
    error = rejected(workload(network=network))
    assert [str(v) for v in error.violations] == [
        "spec.network.ports: ports need network.mode bridge"
    ]


@pytest.mark.parametrize("value", [0, 65536, -1])
def test_port_range(value: int) -> None:
    error = rejected(workload(network={"mode": "bridge",
                                       "ports": [{"nodePort": value, "port": value}]}))
    assert fields(error) == ["spec.network.ports[0].port", "spec.network.ports[0].nodePort"]


def test_node_port_used_twice() -> None:
    ports = [{"nodePort": 25000, "port": 1}, {"nodePort": 25000, "port": 2},
             {"nodePort": 25000, "port": 3, "protocol": "udp"}]
    error = rejected(workload(network={"mode": "bridge", "ports": ports}))
    assert fields(error) == ["spec.network.ports[1].nodePort"]


@pytest.mark.parametrize(
    ("target", "description"),
    [
        ("home", "must be an absolute path, not 'home'"),
        ("./home", "must be an absolute path, not './home'"),
        ("/home/../etc", "must not contain '..'"),
        ("/data/..", "must not contain '..'"),
    ],
)
def test_volume_target_must_be_absolute_and_plain(target: str, description: str) -> None:
    error = rejected(workload(volumes=[{"name": "home", "target": target}]))
    assert [str(v) for v in error.violations] == [f"spec.volumes[0].target: {description}"]


def test_volume_mounted_twice_at_one_target() -> None:
    error = rejected(workload(volumes=[{"name": "a", "target": "/data"},
                                       {"name": "b", "target": "/data"}]))
    assert fields(error) == ["spec.volumes[1].target"]


def test_volume_mount_names() -> None:
    error = rejected(workload(volumes=[{"name": "a/b"}, {"name": "c", "workspace": "../x"}]))
    assert fields(error) == ["spec.volumes[0].name", "spec.volumes[1].workspace"]


def test_volume_target_root_is_rejected() -> None:
    error = rejected(workload(volumes=[{"name": "home", "target": "/"}]))
    assert fields(error) == ["spec.volumes[0].target"]


@pytest.mark.parametrize(
    "local_path", ["../etc", "a/../../etc", "/my/../../etc", "..", "a/.."],
)
def test_volume_local_path_rejects_dot_dot(local_path: str) -> None:
    error = rejected(make("Volume", {"storage": "st", "localPath": local_path}))
    assert "spec.localPath: must not contain '..'" in [str(v) for v in error.violations]


@pytest.mark.parametrize(
    "local_path",
    [
        "/",
        "/./",
        "//",
        ".",
        "./",
    ],
)
def test_volume_local_path_must_name_a_directory(local_path: str) -> None:
    error = rejected(make("Volume", {"storage": "st", "localPath": local_path}))
    assert fields(error) == ["spec.localPath"]


@pytest.mark.parametrize("local_path", ["/my/very/special/path", "team/data", "a..b"])
def test_volume_local_path_accepted(local_path: str) -> None:
    admit(make("Volume", {"storage": "st", "localPath": local_path}))


def test_volume_needs_a_storage() -> None:
    assert [str(v) for v in rejected(make("Volume", {})).violations] == [
        "spec.storage: required"
    ]


def test_nfs_storage_needs_an_endpoint() -> None:
    error = rejected(make("Storage", {"mountpath": "/share", "kind": "NFS"}))
    assert [str(v) for v in error.violations] == ["spec.endpoint: required"]


def test_local_storage_needs_no_endpoint() -> None:
    admit(make("Storage", {"mountpath": "/share", "kind": "Local"}))


@pytest.mark.parametrize(
    ("mountpath", "violation"),
    [("", "spec.mountpath: required"),
     ("share", "spec.mountpath: must be an absolute path, not 'share'"),
     ("/share/../etc", "spec.mountpath: must not contain '..'")],
)
def test_storage_mountpath(mountpath: str, violation: str) -> None:
    error = rejected(make("Storage", {"endpoint": "10.0.0.1", "mountpath": mountpath}))
    assert [str(v) for v in error.violations] == [violation]


@pytest.mark.parametrize("endpoint", ["10.10.10.2:3001", "https://10.10.10.2:3001",
                                      "node1", "http://node1.local/"])
def test_node_endpoint_accepted(endpoint: str) -> None:
    admit(make("Node", {"endpoint": endpoint}))


@pytest.mark.parametrize("endpoint", ["https://a b:3001", "https://host:port", "a/b/c"])
def test_node_endpoint_rejected(endpoint: str) -> None:
    assert fields(rejected(make("Node", {"endpoint": endpoint}))) == ["spec.endpoint"]


def test_node_endpoint_ipv6() -> None:
    admit(make("Node", {"endpoint": "https://[fd00::2]:3001"}))


def test_user_binding_needs_a_role() -> None:
    error = rejected(make("User", {"resources": [{"kind": "Volume"}],
                                   "credits": [{"weekly": 5}]}))
    assert fields(error) == ["spec.resources[0].role", "spec.credits[0].zone"]


def test_role_verbs_must_not_be_empty() -> None:
    error = rejected(make("Role", {"permission": {"Workload": ["Get", ""]}}))
    assert fields(error) == ["spec.permission.Workload[1]"]


def test_container_fields() -> None:
    error = rejected(make("Container", {"workload": "", "nodeName": "bad name",
                                        "cpuMillicores": -1,
                                        "template": {"image": {"image": "x"},
                                                     "replica": {"count": -1}}}))
    assert fields(error) == ["spec.workload", "spec.nodeName", "spec.cpuMillicores",
                             "spec.template.replica.count"]


def test_labels_are_checked() -> None:
    error = rejected(make("Zone", labels={"ok": "yes", "bad key": "v", "k": "bad value"}))
    assert sorted(fields(error)) == ["metadata.labels.bad key", "metadata.labels.k"]


def test_owner_references_need_kind_name_and_uid() -> None:
    error = rejected(make("Zone", ownerReferences=[{"kind": "Zone"}]))
    assert fields(error) == ["metadata.ownerReferences[0].name", "metadata.ownerReferences[0].uid"]


def test_every_violation_is_reported_together() -> None:
    obj = make(
        "Workload",
        {
            "replica": {"count": -1},
            "selectors": {"gpu": {"count": -2}},
            "config": {"restartPolicy": "sometimes", "affinity": "Spread"},
            "volumes": [{"name": "home", "target": "home"}],
            "network": {"ports": [{"nodePort": 25000, "port": 8008}]},
        },
        name="-bad-",
    )
    error = rejected(obj)
    expected = [
        "metadata.name",
        "spec.replica.count",
        "spec.selectors.gpu.count",
        "spec.image.image",
        "spec.config.affinity",
        "spec.config.restartPolicy",
        "spec.volumes[0].target",
        "spec.network.ports",
    ]
    assert fields(error) == expected
    for field in expected:
        assert field in error.message
    assert error.message == "; ".join(str(v) for v in error.violations)


def test_oversized_object_is_rejected() -> None:
    limit = admission.MAX_OBJECT_BYTES
    big = make("Zone", annotations={"blob": "x" * limit})
    error = rejected(big)
    assert fields(error) == ["metadata"]
    assert f"the limit is {limit} bytes" in error.message
    assert big.ByteSize() > limit


def test_object_just_under_the_limit_is_admitted() -> None:
    limit = admission.MAX_OBJECT_BYTES
    obj = make("Zone", annotations={"blob": ""})
    room = limit - obj.ByteSize() - 8  # the varint length of the value grows with it
    obj.metadata.annotations["blob"] = "x" * room
    assert obj.ByteSize() <= limit
    admit(obj)


# --- config.env and config.cmd ---------------------------------------------------------


def env_workload(*items: Any) -> object_pb2.Object:
    obj = workload()
    for name, value in items:
        obj.workload.spec.config.env.add(name=name, value=value)
    return obj


def test_env_in_every_spelling_is_admitted() -> None:
    obj = workload(config={"env": [{"name": "secret", "value": "SUPER_SECRET"},
                                   "MODE=fast", {"INIT_DB": True}, {"PORT": 9042}]})
    env = admit(obj).workload.spec.config.env
    assert [(e.name, e.value) for e in env] == [
        ("secret", "SUPER_SECRET"), ("MODE", "fast"), ("INIT_DB", "true"), ("PORT", "9042")]


@pytest.mark.parametrize(("name", "why"), [
    ("", "required"),
    ("A=B", "no '='"),
    ("A\0B", "no NUL"),
    ("DORA_NODE", "set by Dora"),
    ("CUDA_VISIBLE_DEVICES", "set by Dora"),
])
def test_bad_env_names_are_refused_by_field(name: str, why: str) -> None:
    error = rejected(env_workload(("OK", "1"), (name, "x")))
    assert fields(error) == ["spec.config.env[1].name"]
    assert why in error.violations[0].description


def test_env_names_twice_nul_values_and_sizes_are_refused() -> None:
    error = rejected(env_workload(("A", "1"), ("A", "2"), ("B", "x\0y"),
                                  ("C", "x" * (32 * 1024 + 1))))
    assert fields(error) == ["spec.config.env[1].name", "spec.config.env[2].value",
                             "spec.config.env[3].value"]
    assert "the limit is 32768 bytes per value" in str(error)
    many = env_workload(*((f"V{i}", "x" * 30_000) for i in range(9)))
    error = rejected(many)
    assert fields(error) == ["spec.config.env"]
    assert "the limit is 262144 bytes" in str(error)


def test_a_ten_megabyte_env_value_is_refused_when_the_yaml_is_read() -> None:
    with pytest.raises(errors.Invalid, match=r"spec\.config\.env\[0\]\.value: is 10485760 bytes"):
        workload(config={"env": [{"name": "BIG", "value": "x" * 10 * 1024 * 1024}]})
    with pytest.raises(errors.Invalid, match=r"spec\.config\.env\.BIG: is 10485760 bytes"):
        workload(config={"env": {"BIG": "x" * 10 * 1024 * 1024}})


def test_a_cmd_that_is_not_shell_words_is_refused() -> None:
    error = rejected(workload(config={"cmd": "sh -c \"echo unterminated"}))
    assert fields(error) == ["spec.config.cmd"]
    assert "No closing quotation" in str(error)
