"""doractl profiles: the file, and how flags, environment and context resolve."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dora.api import errors
from dora.ctl import profiles
from dora.ctl.profiles import Context, Profiles


def two_contexts() -> Profiles:
    return Profiles(
        contexts={
            "prod": Context("prod", endpoint="https://dora.example.com:3000", token="prod-token",
                            zone="dc-rov-01", workspace="amedeo.setti", ca="/etc/dora/ca.pem"),
            "local": Context("local", endpoint="127.0.0.1:3000", token="local-token"),
        },
        current_context="prod",
    )


def test_a_missing_file_is_no_profiles(tmp_path: Path) -> None:
    assert profiles.load(tmp_path / "nope.yaml") == Profiles()


def test_save_then_load_round_trips_and_only_the_owner_can_read(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "config.yaml"
    profiles.save(two_contexts(), path)
    assert profiles.load(path) == two_contexts()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_the_file_format_is_readable_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    profiles.save(two_contexts(), path)
    assert path.read_text() == (
        "current-context: prod\n"
        "contexts:\n"
        "  local:\n"
        "    endpoint: 127.0.0.1:3000\n"
        "    token: local-token\n"
        "  prod:\n"
        "    endpoint: https://dora.example.com:3000\n"
        "    token: prod-token\n"
        "    zone: dc-rov-01\n"
        "    workspace: amedeo.setti\n"
        "    ca: /etc/dora/ca.pem\n"
    )


def test_kubectl_style_list_of_contexts_and_aliases_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "current-context: a\n"
        "contexts:\n"
        "  - name: a\n"
        "    server: h:1\n"
        "    group: ws\n"
    )
    assert profiles.load(path) == Profiles(
        contexts={"a": Context("a", endpoint="h:1", workspace="ws")}, current_context="a"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("contexts:\n  a:\n    endpiont: h:1\n", "unknown key 'endpiont'"),
        ("colour: red\n", "unknown key 'colour'"),
        ("contexts: [1]\n", "needs a name"),
        ("contexts:\n  a: [b]\n", "must be a mapping"),
        ("contexts:\n\ta: b\n", "config.yaml:2:1"),
    ],
)
def test_a_bad_file_is_an_error_naming_it(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(errors.Invalid, match=message) as info:
        profiles.load(path)
    assert str(path) in info.value.message


def test_default_path_honours_dora_config(tmp_path: Path) -> None:
    assert profiles.default_path({"DORA_CONFIG": str(tmp_path / "c.yaml")}) == tmp_path / "c.yaml"
    assert profiles.default_path({}).parts[-2:] == (".dora", "config.yaml")


def test_the_current_context_is_used_by_default() -> None:
    connection = profiles.resolve(two_contexts(), environ={})
    assert connection == profiles.Connection(
        endpoint="https://dora.example.com:3000", token="prod-token", ca="/etc/dora/ca.pem",
        zone="dc-rov-01", workspace="amedeo.setti", context="prod",
    )


def test_flags_beat_the_environment_which_beats_the_context() -> None:
    environ = {"DORA_SERVER": "env:1", "DORA_TOKEN": "env-token"}
    from_env = profiles.resolve(two_contexts(), environ=environ)
    assert (from_env.endpoint, from_env.token) == ("env:1", "env-token")
    from_flags = profiles.resolve(two_contexts(), server="flag:1", token="flag-token",
                                  environ=environ)
    assert (from_flags.endpoint, from_flags.token) == ("flag:1", "flag-token")


def test_zone_and_workspace_come_from_flags_then_the_context_then_nowhere() -> None:
    connection = profiles.resolve(two_contexts(), zone="z1", workspace="w1", environ={})
    assert (connection.zone, connection.workspace) == ("z1", "w1")
    connection = profiles.resolve(two_contexts(), context="local", environ={})
    assert (connection.zone, connection.workspace) == ("", "")


def test_the_context_is_chosen_by_flag_then_environment_then_current() -> None:
    assert profiles.resolve(two_contexts(), environ={}).context == "prod"
    assert profiles.resolve(two_contexts(), environ={"DORA_CONTEXT": "local"}).context == "local"
    chosen = profiles.resolve(two_contexts(), context="prod", environ={"DORA_CONTEXT": "local"})
    assert chosen.context == "prod"


def test_an_unknown_context_is_an_error_listing_the_known_ones() -> None:
    with pytest.raises(errors.NotFound, match=r"'staging' does not exist \(contexts: local, prod"):
        profiles.resolve(two_contexts(), context="staging", environ={})


def test_no_server_anywhere_says_how_to_set_one() -> None:
    with pytest.raises(errors.DoraError, match=r"--server.*DORA_SERVER.*set-context"):
        profiles.resolve(Profiles(), environ={})


def test_an_empty_token_flag_means_no_token() -> None:
    assert profiles.resolve(two_contexts(), token="", environ={}).token == ""


@pytest.mark.parametrize(
    ("endpoint", "ca", "target", "tls"),
    [
        ("127.0.0.1:3000", "", "127.0.0.1:3000", False),
        ("http://10.0.0.1:3000", "", "10.0.0.1:3000", False),
        ("https://dora.example.com:443/", "", "dora.example.com:443", True),
        ("10.0.0.1:3000", "/ca.pem", "10.0.0.1:3000", True),
        ("10.0.0.1:3000,10.0.0.2:3000", "", "ipv4:10.0.0.1:3000,10.0.0.2:3000", False),
    ],
)
def test_endpoints_become_grpc_targets(endpoint: str, ca: str, target: str, tls: bool) -> None:
    connection = profiles.Connection(endpoint=endpoint, ca=ca)
    assert (connection.target, connection.tls) == (target, tls)


def test_set_context_creates_then_updates_only_what_is_given() -> None:
    found = Profiles()
    assert profiles.set_context(found, "a", endpoint="h:1", token="t", zone=None)
    assert not profiles.set_context(found, "a", zone="z", token=None)
    assert found.contexts["a"] == Context("a", endpoint="h:1", token="t", zone="z")
