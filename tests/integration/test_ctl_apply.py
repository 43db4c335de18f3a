"""doractl apply and diff against a real apiserver and etcd: the seeds' YAML from a
directory, all-or-nothing parsing, -o yaml/json round trips, dry runs, templating,
scoping from the context, and server errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dora.api import codec, kinds
from dora.api.client import Client
from dora.apiserver.server import APIServer
from dora.ctl import manifests
from tests.integration.test_ctl_support import SEED_SCOPES, SEEDS, Ctl
from tests.unit import seeds

pytestmark = pytest.mark.usefixtures("default_scope")

WORKLOAD = """\
apiVersion: v1
kind: Workload
metadata:
  name: blue.red
spec:
  driver: Docker
  selectors:
    cpu:
      product_name: All
      count: 1
  image:
    image: ubuntu
  config:
    cmd: /bin/bash
"""


@pytest.fixture
def ctl(apiserver: APIServer, admin_token: str, tmp_path: Path) -> Ctl:
    return Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token, home=tmp_path / "home")


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    """The seed files without the tab-indented ones, nested to need -R."""
    target = tmp_path / "seeds"
    for name in seeds.names():
        folder = target / name[:3]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(SEEDS / name, folder / name)
    return target


async def test_apply_the_seeds_directory_recursively(ctl: Ctl, seed_dir: Path,
                                                     client: Client) -> None:
    await ctl.ok("apply", "-f", "-", input=SEED_SCOPES)
    # Without -R the subdirectories are not read.
    empty = await ctl("apply", "-f", str(seed_dir))
    assert empty.code == 1 and "no objects in" in empty.err
    result = await ctl.ok("apply", "-R", "-f", str(seed_dir))
    expected = manifests.in_dependency_order([o for n in seeds.names() for o in seeds.decode(n)])
    assert len(result.lines) == len(expected)
    for line, obj in zip(result.lines, expected, strict=True):
        name, verb = line.rsplit(" ", 1)
        assert name == f"{obj.kind.lower()}/{obj.metadata.name}"
        assert verb in ("created", "configured", "unchanged")
    assert result.err == ""
    # Everything is there: applying again creates nothing (the seeds declare some
    # objects twice, differently, so those are configured back and forth).
    again = await ctl.ok("apply", "-R", "-f", str(seed_dir))
    assert {line.rsplit(" ", 1)[1] for line in again.lines} == {"unchanged", "configured"}
    workloads, _ = await client.list("Workload")
    assert sorted((w.metadata.zone, w.metadata.workspace) for w in workloads) == [
        ("dc-rov-01", "amedeo.setti"), ("default", "default")
    ]


async def test_a_tab_indented_file_fails_the_whole_apply(ctl: Ctl, client: Client) -> None:
    await ctl.ok("apply", "-f", "-", input=SEED_SCOPES)
    result = await ctl("apply", "-R", "-f", str(SEEDS))
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith(f"error: {SEEDS / seeds.TABS[0]}:17:7: ")
    assert "tabs" in result.err and "Traceback" not in result.err
    # Nothing was applied, though most files were fine.
    for kind in ("Workload", "Storage", "Node", "Volume", "Resourcecredit"):
        assert (await client.list(kind))[0] == []


@pytest.mark.parametrize("output", ["yaml", "json"])
async def test_get_output_reapplies_as_unchanged(ctl: Ctl, seed_dir: Path,
                                                 output: str) -> None:
    await ctl.ok("apply", "-f", "-", input=SEED_SCOPES)
    await ctl.ok("apply", "-R", "-f", str(seed_dir))
    every_kind = ",".join(k.plural for k in kinds.KINDS)
    printed = await ctl.ok("get", every_kind, "-A", "-o", output)
    again = await ctl.ok("apply", "-f", "-", input=printed.out)
    assert len(again.lines) >= 20
    assert all(line.endswith(" unchanged") for line in again.lines), again.out
    assert {line.split("/")[0] for line in again.lines} >= {
        "zone", "workspace", "user", "role", "storage", "node", "resourcecredit", "workload",
        "volume",
    }


async def test_server_dry_run_stores_nothing(ctl: Ctl, client: Client) -> None:
    result = await ctl.ok("apply", "-f", "-", "--dry-run=server", input=WORKLOAD)
    assert result.out == "workload/blue.red created (server dry run)\n"
    assert (await client.list("Workload"))[0] == []
    await ctl.ok("apply", "-f", "-", input=WORKLOAD)
    changed = WORKLOAD.replace("ubuntu", "debian")
    result = await ctl.ok("apply", "-f", "-", "--dry-run", "server", input=changed)
    assert result.out == "workload/blue.red configured (server dry run)\n"
    stored = await client.get("Workload", "blue.red")
    assert stored.workload.spec.image.image == "ubuntu"


async def test_templating_with_env_values(ctl: Ctl, client: Client, tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(WORKLOAD.replace("blue.red", "$NAME").replace("ubuntu", "${IMAGE}:22.04")
                        .replace("driver: Docker", "driver: Docker\n  replica:\n"
                                                   "    count: $REPLICAS"))
    result = await ctl.ok("apply", "-f", str(template), "-e", "NAME=exp1", "-e", "IMAGE=ubuntu",
                          "-e", "REPLICAS=3")
    assert result.out == "workload/exp1 created\n"
    stored = await client.get("Workload", "exp1")
    assert stored.workload.spec.image.image == "ubuntu:22.04"
    assert stored.workload.spec.replica.count == 3
    missing = await ctl("apply", "-f", str(template), "-e", "NAME=exp2", "-e", "REPLICAS=1")
    assert missing.code == 1
    assert missing.err.startswith(f"error: {template}:")
    assert "$IMAGE is not set: pass -e IMAGE=VALUE" in missing.err


async def test_objects_without_scope_get_the_contexts(ctl: Ctl, client: Client) -> None:
    await ctl.ok("apply", "-f", "-", input=SEED_SCOPES)
    await ctl.ok("config", "set-context", "test", "--zone", "dc-rov-01",
                 "--workspace", "amedeo.setti")
    await ctl.ok("apply", "-f", "-", input=WORKLOAD)
    stored = await client.get("Workload", "blue.red", zone="dc-rov-01", workspace="amedeo.setti")
    assert stored.metadata.name == "blue.red"
    # A flag beats the context; the server's default applies to what nobody names.
    await ctl.ok("apply", "-f", "-", "-g", "datasets", input=WORKLOAD)
    await client.get("Workload", "blue.red", zone="dc-rov-01", workspace="datasets")
    await ctl.ok("config", "set-context", "test", "--zone", "", "--workspace", "")
    await ctl.ok("apply", "-f", "-", input=WORKLOAD)
    await client.get("Workload", "blue.red", zone="default", workspace="default")


async def test_server_errors_name_the_object_and_field_and_the_rest_still_apply(
    ctl: Ctl, client: Client
) -> None:
    bad = WORKLOAD.replace("count: 1", "count: -1")
    other = WORKLOAD.replace("blue.red", "green")
    result = await ctl("apply", "-f", "-", input=bad + "---\n" + other)
    assert result.code == 1
    assert result.out == "workload/green created\n"
    assert result.err == (
        "error: workload/blue.red: spec.selectors.cpu.count: must be >= 0\n"
    )
    missing_zone = WORKLOAD.replace("metadata:\n", "metadata:\n  zone: nowhere\n")
    result = await ctl("apply", "-f", "-", input=missing_zone)
    assert result.code == 1
    assert "zone 'nowhere' does not exist" in result.err
    assert "Traceback" not in result.err


async def test_diff_exit_codes(ctl: Ctl, tmp_path: Path) -> None:
    path = tmp_path / "wk.yaml"
    path.write_text(WORKLOAD)
    new = await ctl("diff", "-f", str(path))
    assert new.code == 1
    assert new.lines[:2] == ["--- live/workload/blue.red", "+++ applied/workload/blue.red"]
    assert "+  name: blue.red" in new.lines
    await ctl.ok("apply", "-f", str(path))
    same = await ctl("diff", "-f", str(path))
    assert (same.code, same.out, same.err) == (0, "", "")
    path.write_text(WORKLOAD.replace("ubuntu", "debian"))
    changed = await ctl("diff", "-f", str(path))
    assert changed.code == 1
    assert [line for line in changed.lines if line[:1] in "+-" and line[:3] not in "+++---"] == [
        "-    image: ubuntu", "+    image: debian"
    ]
    # diff never writes.
    assert (await ctl("diff", "-f", str(path))).code == 1


async def test_apply_a_json_list(ctl: Ctl, client: Client) -> None:
    items = [codec.to_dict(o) for o in codec.decode_yaml(WORKLOAD + "---\n" +
                                                         WORKLOAD.replace("blue.red", "green"))]
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    result = await ctl.ok("apply", "-f", "-", input=text)
    assert result.lines == ["workload/blue.red created", "workload/green created"]


async def test_a_pasted_product_document_applies_in_dependency_order(
    ctl: Ctl, tmp_path: Path, client: Client
) -> None:
    """Seeds 001 and 004 pasted into one file, backwards (workloads first, zones last):
    one apply creates it all, and delete -f removes it the other way round."""
    names = [n for n in seeds.names() if n[:3] in ("001", "004")]
    texts = [(SEEDS / n).read_text().rstrip() + "\n" for n in reversed(names)]
    # 001-01 has no `---` of its own: pasted bare, it would merge into the document
    # above it, which the duplicate keys say (YAML keeps no key twice).
    page = tmp_path / "page.yaml"
    page.write_text("\n".join(texts))
    merged = await ctl("apply", "-f", str(page))
    assert merged.code == 1 and "duplicate key 'apiVersion'" in merged.err
    page.write_text("".join(t if t.startswith("---") else "---\n" + t for t in texts))
    applied = await ctl.ok("apply", "-f", str(page))
    words = [line.split("/")[0] for line in applied.lines]
    assert words.index("zone") < words.index("workspace") < words.index("role")
    assert words.index("user") < words.index("storage") < words.index("node")
    assert words.index("volume") < words.index("resourcecredit") < words.index("workload")
    assert all(line.endswith(("created", "configured", "unchanged")) for line in applied.lines)
    zones, _ = await client.list("Zone")
    assert {"dc-rov-01", "dora-cluster-1"} <= {z.metadata.name for z in zones}
    deleted = await ctl("delete", "-f", str(page))
    kinds_deleted = [line.split("/")[0] for line in deleted.out.splitlines()]
    assert kinds_deleted.index("workload") < kinds_deleted.index("volume")
    assert kinds_deleted.index("volume") < kinds_deleted.index("zone")


async def test_the_real_program_applies_and_gets(apiserver: APIServer, admin_token: str,
                                                 tmp_path: Path) -> None:
    """The smoke test of ``python -m dora.ctl`` itself (the other cases run the CLI in
    this process): its own interpreter, entry point, exit codes and streams."""
    real = Ctl(server=f"127.0.0.1:{apiserver.port}", token=admin_token,
               home=tmp_path / "real", subprocess=True)
    applied = await real.ok("apply", "-f", "-", input=(
        "kind: Workload\nmetadata: {name: smoke}\n"
        "spec: {image: {image: dora/busybox}, replica: {count: 0}}\n"))
    assert applied.out == "workload/smoke created\n"
    assert (await real.ok("get", "wk", "smoke", "-o", "name")).out == "workload/smoke\n"
    missing = await real("get", "wk", "absent")
    assert missing.code == 1 and missing.err.startswith("error: ")
