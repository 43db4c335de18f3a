"""The deployment files agree with the code and with themselves.

``deploy/k8s/*.yaml`` (the control plane on Kubernetes) and
``e2e/docker-compose.yaml`` (the whole system on one Docker engine) only show their
mistakes at deploy time, on a cluster this machine does not have. So they are
checked here, statically: every document parses; images are ours; every container's
command is a console script of ``pyproject.toml`` whose own parser accepts the
flags (a component not written yet is skipped, saying so); and what must agree
does: listen ports and declared ports, etcd endpoints and the etcd members, the
apiserver address the clients use, token paths and the volumes they lie on, zones,
node names and the Nodes declared for them.
"""

from __future__ import annotations

import argparse
import importlib
import re
import tomllib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import typer
import yaml

from dora.api import codec
from dora.ctl import main as ctl_main

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "e2e" / "docker-compose.yaml"
NAMESPACE = "dora"
DORA_IMAGE = "dora/dora"
ETCD_IMAGE = "dora/etcd"

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
VERSION: str = PYPROJECT["project"]["version"]

# Kinds that would mean we lean on Kubernetes' own auth, which Dora does not need.
RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ServiceAccount"}


# -- helpers: commands ----------------------------------------------------------------


def flags(argv: Sequence[str]) -> dict[str, str]:
    """``--name=value`` and ``--name value`` of ``argv``, by name (a bare flag: "")."""
    found: dict[str, str] = {}
    args = list(argv)
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        name, sep, value = arg.partition("=")
        if not sep and i + 1 < len(args) and not args[i + 1].startswith("-"):
            value = args[i + 1]
        found[name] = value
    return found


def host_port(endpoint: str) -> tuple[str, int]:
    endpoint = endpoint.split("://")[-1].rstrip("/")
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


def parse_command(argv: Sequence[str], tmp_path: Path) -> Any:
    """Run ``argv[0]``'s own argument parser on the rest, as the console script would.

    Files the command would read (``--*-file``) do not exist here: they are replaced
    by a file holding a token; whether they lie on a volume is checked elsewhere.
    Flags must be spelled out: argparse would take an abbreviation, which a later
    flag can make ambiguous.
    """
    script, args = argv[0], list(argv[1:])
    assert script in SCRIPTS, f"{script} is not a console script in pyproject.toml"
    module_name, _, function = SCRIPTS[script].partition(":")
    if module_name == "dora.daemons":  # it checks the [server] extra, then runs this
        module_name = f"dora.{function}.main"
    module = importlib.import_module(module_name)
    parse_args = module.parse_args
    stand_in = tmp_path / "token"
    stand_in.write_text("a-token-long-enough-for-a-secret\n")
    for i, arg in enumerate(args):
        name, sep, value = arg.partition("=")
        if sep and name.endswith("-file") and not Path(value).exists():
            args[i] = f"{name}={stand_in}"
    parsers: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_known_args

    def recording(self: argparse.ArgumentParser, *a: Any, **kw: Any) -> Any:
        parsers.append(self)
        return original(self, *a, **kw)

    with mock.patch.object(argparse.ArgumentParser, "parse_known_args", recording):
        try:
            result = parse_args(args)
        except SystemExit as exc:  # argparse's way of saying no; its message is on stderr
            pytest.fail(f"{script} rejects {args}: exit {exc.code}")
    if parsers:
        known = set(parsers[0]._option_string_actions)
        unknown = sorted(set(flags(args)) - known)
        assert not unknown, f"{script}: {unknown} are not its flags spelled out"
    return result


def under(path: str, mounts: Sequence[str]) -> bool:
    return any(Path(path).is_relative_to(mount) for mount in mounts)


# -- Kubernetes ---------------------------------------------------------------------


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


DOCS = k8s_documents()


def k8s_objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in DOCS if doc["kind"] == kind}


def workloads() -> dict[str, dict[str, Any]]:
    return {**k8s_objects("Deployment"), **k8s_objects("StatefulSet")}


def k8s_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, pod spec, container) of every container."""
    for name, obj in workloads().items():
        pod = obj["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield name, pod, container


def expand_env(container: dict[str, Any], pod_name: str) -> list[str]:
    """The container's command with the kubelet's ``$(VAR)`` expansion done."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = pod_name
    argv = list(container["command"]) + list(container.get("args", []))
    for ref in re.findall(r"\$\((\w+)\)", " ".join(argv)):
        assert ref in env, f"{container['name']}: $({ref}) names no env var of the container"
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in argv]


def mounts_of(container: dict[str, Any], pod: dict[str, Any], *sources: str) -> list[str]:
    """Mount paths of the container's volumes whose source is one of ``sources``."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    return [
        m["mountPath"] for m in container.get("volumeMounts", [])
        if any(source in volumes.get(m["name"], {}) for source in sources)
    ]


def container_named(workload: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for owner, pod, container in k8s_containers():
        if owner == workload and container["name"] == name:
            return pod, container
    raise AssertionError(f"no container {name} in {workload}")


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"{container['name']} declares no port named {port}"
    return int(named[port])


def test_k8s_documents_parse_and_live_in_the_namespace() -> None:
    assert DOCS, f"no manifests in {K8S_DIR}"
    for file, doc in DOCS:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), file
        assert doc["metadata"].get("name"), f"{file}: a {doc['kind']} without a name"
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{file}: {doc['kind']}"


def test_k8s_kinds_are_the_control_plane_and_no_rbac() -> None:
    kinds = Counter(doc["kind"] for _, doc in DOCS)
    assert kinds == {"Namespace": 1, "Service": 3, "StatefulSet": 1, "Deployment": 3,
                     "PodDisruptionBudget": 2}
    assert not RBAC_KINDS & kinds.keys()
    assert set(k8s_objects("Namespace")) == {NAMESPACE}
    assert set(k8s_objects("Deployment")) == {"apiserver", "controllers", "web"}
    assert set(k8s_objects("StatefulSet")) == {"etcd"}


def test_k8s_replicas() -> None:
    replicas = {name: obj["spec"]["replicas"] for name, obj in workloads().items()}
    assert replicas == {"etcd": 3, "apiserver": 2, "controllers": 2, "web": 2}


def test_k8s_images_are_ours() -> None:
    for workload, _, container in k8s_containers():
        image = container["image"]
        if workload == "etcd":
            assert image.startswith(f"{ETCD_IMAGE}:3.4."), image
        else:
            assert image == f"{DORA_IMAGE}:{VERSION}", f"{workload}: {image}"
        # Images are loaded onto the nodes (no registry): never force a pull.
        assert container.get("imagePullPolicy") == "IfNotPresent", workload


def test_k8s_selectors_match_their_pods() -> None:
    pods = {name: obj["spec"]["template"]["metadata"]["labels"]
            for name, obj in workloads().items()}
    for name, obj in workloads().items():
        assert obj["spec"]["selector"]["matchLabels"].items() <= pods[name].items(), name
    for kind in ("Service", "PodDisruptionBudget"):
        for name, obj in k8s_objects(kind).items():
            selector = obj["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            matched = [w for w, labels in pods.items() if selector.items() <= labels.items()]
            assert matched == [name], f"{kind} {name} selects {matched}"


@pytest.mark.parametrize(
    "workload", [w for w, _, c in k8s_containers() if c["image"].startswith(DORA_IMAGE + ":")]
)
def test_k8s_commands_are_console_scripts_that_accept_their_flags(
    workload: str, tmp_path: Path
) -> None:
    for owner, _, container in k8s_containers():
        if owner == workload:
            parse_command(expand_env(container, f"{workload}-0"), tmp_path)


def test_k8s_apiserver_listens_where_its_service_points() -> None:
    pod, container = container_named("apiserver", "apiserver")
    args = flags(expand_env(container, "apiserver-0"))
    _, listen = host_port(args["--listen"])
    service = k8s_objects("Service")["apiserver"]
    (port,) = service["spec"]["ports"]
    assert port_number(container, port["targetPort"]) == listen
    for probe in ("readinessProbe", "livenessProbe"):
        assert port_number(container, container[probe]["grpc"]["port"]) == listen
    # The root file system is read-only: the token file needs a writable volume.
    assert under(args["--admin-token-file"], mounts_of(container, pod, "emptyDir"))


def test_k8s_etcd_endpoints_are_the_statefulset_members() -> None:
    etcd = k8s_objects("StatefulSet")["etcd"]
    headless = k8s_objects("Service")[etcd["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    _, etcd_container = container_named("etcd", "etcd")
    ports = {p["name"]: p["port"] for p in headless["spec"]["ports"]}
    members = [f"etcd-{i}.{headless['metadata']['name']}.{NAMESPACE}.svc"
               for i in range(etcd["spec"]["replicas"])]

    etcd_args = flags(expand_env(etcd_container, "etcd-1"))
    assert host_port(etcd_args["--listen-client-urls"])[1] == ports["client"]
    assert host_port(etcd_args["--listen-peer-urls"])[1] == ports["peer"]
    assert etcd_args["--advertise-client-urls"] == f"http://{members[1]}:{ports['client']}"
    assert etcd_args["--initial-advertise-peer-urls"] == f"http://{members[1]}:{ports['peer']}"
    assert etcd_args["--initial-cluster"] == ",".join(
        f"etcd-{i}=http://{member}:{ports['peer']}" for i, member in enumerate(members)
    )
    assert etcd_args["--name"] == "etcd-1"
    volume_paths = [m["mountPath"] for m in etcd_container["volumeMounts"]
                    if m["name"] in {t["metadata"]["name"]
                                     for t in etcd["spec"]["volumeClaimTemplates"]}]
    assert under(etcd_args["--data-dir"], volume_paths), "etcd data is not on its volume"

    _, apiserver = container_named("apiserver", "apiserver")
    endpoints = flags(expand_env(apiserver, "apiserver-0"))["--etcd-endpoints"].split(",")
    assert endpoints == [f"{member}:{ports['client']}" for member in members]


def test_k8s_web_reaches_the_apiserver_service_and_its_service_points_at_it() -> None:
    service = k8s_objects("Service")["apiserver"]
    (port,) = service["spec"]["ports"]
    _, container = container_named("web", "web")
    args = flags(container["command"])
    assert args["--server"] == f"apiserver.{NAMESPACE}.svc:{port['port']}"
    listen = host_port(args["--listen"])[1]
    (web,) = k8s_objects("Service")["web"]["spec"]["ports"]
    assert port_number(container, web["targetPort"]) == listen
    for probe in ("readinessProbe", "livenessProbe"):
        assert port_number(container, container[probe]["httpGet"]["port"]) == listen


def test_k8s_controllers_reach_the_apiserver_service_with_a_secret_token() -> None:
    service = k8s_objects("Service")["apiserver"]
    (port,) = service["spec"]["ports"]
    pod, container = container_named("controllers", "controllers")
    args = flags(expand_env(container, "controllers-0"))
    assert args["--server"] == f"apiserver.{NAMESPACE}.svc:{port['port']}"
    assert under(args["--token-file"], mounts_of(container, pod, "secret"))
    _, apiserver = container_named("apiserver", "apiserver")
    assert args["--zone"] == flags(apiserver["command"])["--default-zone"]
    # Each replica has its own name in the Lease: the pod's.
    assert "$(POD_NAME)" in flags(container["command"])["--identity"]
    assert int(args["--lease-ttl"]) >= 2


# -- docker-compose -----------------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:\$|\{(\w+)(?::?-([^}]*))?\}|(\w+))")


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """docker-compose's variable substitution (``$$``, ``${X}``, ``${X:-default}``)."""
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1) or match.group(3)
            return environ.get(name) or match.group(2) or ""
        return _VARIABLE.sub(sub, value)
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    return value


COMPOSE: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), {})
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def services_running(script: str) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in SERVICES.items()
            if svc.get("command", [None])[0] == script}


def compose_flags(service: str) -> dict[str, str]:
    return flags(SERVICES[service]["command"])


def volume_targets(service: str) -> dict[str, str]:
    """Mount target -> source of the service's volumes."""
    targets = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        targets[target] = source
    return targets


def published(service: str) -> dict[int, tuple[str, int]]:
    """Container port -> (host address, host port)."""
    ports = {}
    for mapping in SERVICES[service].get("ports", []):
        address, host, container = str(mapping).split(":")
        ports[int(container)] = (address, int(host))
    return ports


def test_compose_services_and_images() -> None:
    assert str(COMPOSE["version"]).startswith(("2.", "3."))
    assert set(SERVICES) == {"etcd", "apiserver-1", "apiserver-2", "bootstrap",
                             "controllers-1", "controllers-2", "agent-cpu", "agent-gpu",
                             "web"}
    assert len(services_running("dora-apiserver")) == 2
    assert len(services_running("dora-controllers")) == 2
    assert len(services_running("dora-agent")) == 2
    assert len(services_running("dora-web")) == 1
    for name, svc in SERVICES.items():
        expected = f"{ETCD_IMAGE}:latest" if name == "etcd" else f"{DORA_IMAGE}:latest"
        assert svc["image"] == expected, name
        assert "build" not in svc, f"{name}: images come from hack/, not from compose"
        for dependency in svc.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


@pytest.mark.parametrize(
    "service", [n for n, s in SERVICES.items() if s.get("command", [""])[0] in SCRIPTS]
)
def test_compose_commands_are_console_scripts_that_accept_their_flags(
    service: str, tmp_path: Path
) -> None:
    parse_command(SERVICES[service]["command"], tmp_path)


def test_compose_apiservers_listen_on_their_published_ports() -> None:
    host_ports = []
    for name in services_running("dora-apiserver"):
        _, listen = host_port(compose_flags(name)["--listen"])
        address, host = published(name)[listen]
        assert address == "127.0.0.1", f"{name} is published beyond this machine"
        host_ports.append(host)
    assert len(set(host_ports)) == len(host_ports)


def test_compose_etcd_endpoint_is_the_etcd_service() -> None:
    etcd = compose_flags("etcd")
    _, client_port = host_port(etcd["--listen-client-urls"])
    assert etcd["--advertise-client-urls"] == f"http://etcd:{client_port}"
    assert under(etcd["--data-dir"], list(volume_targets("etcd")))
    for name in services_running("dora-apiserver"):
        assert compose_flags(name)["--etcd-endpoints"] == f"etcd:{client_port}"


def test_compose_clients_reach_every_apiserver_through_the_shared_alias() -> None:
    apiservers = services_running("dora-apiserver")
    aliases = set.intersection(*(
        set(svc["networks"]["default"]["aliases"]) for svc in apiservers.values()
    ))
    ports = {host_port(flags(svc["command"])["--listen"])[1] for svc in apiservers.values()}
    clients = {**services_running("dora-controllers"), **services_running("dora-agent")}
    for name in clients:
        host, port = host_port(compose_flags(name)["--server"])
        assert host in aliases, f"{name} talks to {host}, not to every apiserver"
        assert ports == {port}, name
    bootstrap = SERVICES["bootstrap"]["command"]
    assert bootstrap[bootstrap.index("--server") + 1].partition(":")[0] in aliases


def test_compose_admin_token_is_shared_and_waited_for() -> None:
    tokens = {compose_flags(n)["--admin-token-file"] for n in services_running("dora-apiserver")}
    assert len(tokens) == 1
    (token,) = tokens
    for name, svc in SERVICES.items():
        if name == "etcd":
            continue
        shared = [t for t, source in volume_targets(name).items() if source == "shared"]
        assert under(token, shared), f"{name} does not mount the token's volume"
        if "dora-apiserver" in svc["command"]:
            continue
        # Every client waits for the file the apiservers write, then runs its command.
        assert token in " ".join(svc["entrypoint"]), f"{name} does not wait for {token}"
        token_file = flags(svc["command"]).get("--token-file")
        assert token_file in (None, token), name


def test_compose_controllers_are_distinct_replicas_of_the_zone() -> None:
    zones = {compose_flags(n)["--default-zone"] for n in services_running("dora-apiserver")}
    controllers = [compose_flags(n) for n in services_running("dora-controllers")]
    assert len({c["--identity"] for c in controllers}) == len(controllers)
    assert {c["--zone"] for c in controllers} == zones


def test_compose_agents_use_the_host_engine() -> None:
    for name in services_running("dora-agent"):
        docker_host = compose_flags(name)["--docker-host"]
        assert docker_host.startswith("unix://")
        socket = docker_host.removeprefix("unix://")
        assert volume_targets(name).get(socket) == socket, f"{name} lacks {socket}"
        assert SERVICES[name]["depends_on"]["bootstrap"]["condition"] == (
            "service_completed_successfully"
        )
    gpus = [n for n in services_running("dora-agent") if "--simulate-gpus" in compose_flags(n)]
    assert len(gpus) == 1


def test_compose_bootstrap_declares_the_agents_nodes() -> None:
    command = SERVICES["bootstrap"]["command"]
    assert command[:3] == ["python", "-m", "dora.ctl"]
    manifest = command[command.index("-f") + 1]
    source = volume_targets("bootstrap")[manifest]
    path = (COMPOSE_FILE.parent / source).resolve()
    nodes = {obj.metadata.name: obj for obj in codec.decode_yaml(path.read_text(),
                                                                 source=str(path))
             if obj.kind == "Node"}
    agents = {compose_flags(n)["--node-name"]: n for n in services_running("dora-agent")}
    assert set(nodes) == set(agents)
    zones = {compose_flags(n)["--default-zone"] for n in services_running("dora-apiserver")}
    for node_name, obj in nodes.items():
        service = agents[node_name]
        agent = compose_flags(service)
        assert obj.kind == "Node" and obj.WhichOneof("body") == "node", node_name
        assert {obj.metadata.zone, agent["--zone"]} == zones, node_name
        spec = obj.node.spec
        assert host_port(spec.endpoint) == (service, host_port(agent["--listen"])[1])
        assert "CPUWorkload" in spec.allow
        if "--simulate-gpus" in agent:
            assert "GPUWorkload" in spec.allow
    # doractl accepts its global options on every command: parse the line as apply's.
    args = list(command[3:])
    args.remove("apply")
    apply = typer.main.get_command(ctl_main.app).commands["apply"]
    params = apply.make_context("apply", args).params  # a bad flag raises UsageError
    assert list(params["files"]) == [manifest]  # a tuple before typer 0.29


def test_compose_images_can_be_overridden() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    services = interpolate(raw, {"DORA_IMAGE": "x/dora:1", "DORA_ETCD_IMAGE": "x/etcd:1"})
    images = {svc["image"] for svc in services["services"].values()}
    assert images == {"x/dora:1", "x/etcd:1"}
