"""The doractl command line without a server: usage errors, config commands, global
options anywhere, error output and shell completion."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from dora.ctl import main, profiles
from dora.ctl.options import Settings, with_global_options


@pytest.fixture(autouse=True)
def profile_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "dora" / "config.yaml"
    monkeypatch.setenv("DORA_CONFIG", str(path))
    for name in ("DORA_SERVER", "DORA_TOKEN", "DORA_CONTEXT",
                 "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"):
        monkeypatch.delenv(name, raising=False)
    yield path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main.run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["get"], "Missing argument 'KIND'"),
        (["get", "pods"], "unknown resource type 'pods'"),
        (["get", "wk", "-o", "xml"], "unknown output format 'xml'"),
        (["get", "wk", "a", "-l", "app=x"], "not both"),
        (["apply"], "-f FILE|DIR|-"),
        (["apply", "-f", "x.yaml", "-e", "NOEQUALS"], "KEY=VALUE"),
        (["apply", "-f", "x.yaml", "--dry-run", "client"], "'client' is not one of"),
        (["delete", "wk"], "select them with -l or --all"),
        (["delete", "-f", "x.yaml", "wk"], "with -f, give no KIND"),
        (["delete"], "give KIND and NAMEs"),
        (["delete", "wk", "a", "--timeout", "soon"], "not a duration"),
        (["scale", "wk", "a"], "Missing option '--replicas'"),
        (["scale", "wk", "a", "--replicas", "-1"], "-1 is not in the range x>=0"),
        (["scale", "nodes", "a", "--replicas", "1"], "only workloads have this verb"),
        (["stop", "volume", "a"], "only workloads have this verb"),
        (["frobnicate"], "No such command"),
        (["get", "wk", "--no-such-flag"], "No such option"),
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str],
                             message: str) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2
    assert message in " ".join(err.replace("│", " ").split())
    assert "Traceback" not in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for verb in ("apply", "diff", "get", "describe", "delete", "scale", "stop", "start", "config"):
        assert verb in out


def test_config_commands(capsys: pytest.CaptureFixture[str], profile_file: Path,
                         tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM")
    assert run(capsys, "config", "current-context")[0] == 1
    assert run(capsys, "config", "set-context", "local", "--server", "127.0.0.1:3000",
               "--token", "secret", "-z", "default", "-g", "default") == (
        0, 'Context "local" created.\n', "")
    assert run(capsys, "config", "set-context", "prod", "-s", "https://dora.example.com",
               "--workspace", "amedeo.setti", "--ca", str(ca))[0] == 0
    assert run(capsys, "config", "current-context") == (0, "local\n", "")
    code, out, _ = run(capsys, "config", "get-contexts")
    assert code == 0
    assert out == (
        "CURRENT   NAME    SERVER                     ZONE      WORKSPACE      AUTH    CA\n"
        "*         local   127.0.0.1:3000             default   default        token\n"
        f"          prod    https://dora.example.com             amedeo.setti           {ca}\n"
    )
    assert run(capsys, "config", "use-context", "prod") == (
        0, 'Switched to context "prod".\n', "")
    assert run(capsys, "config", "set-context", "prod", "--zone", "dc-rov-01") == (
        0, 'Context "prod" modified.\n', "")
    saved = profiles.load(profile_file)
    assert saved.current_context == "prod"
    assert saved.contexts["prod"] == profiles.Context(
        "prod", endpoint="https://dora.example.com", zone="dc-rov-01",
        workspace="amedeo.setti", ca=str(ca),
    )
    code, out, _ = run(capsys, "config", "view")
    assert "token: REDACTED" in out and "secret" not in out
    assert "token: secret" in run(capsys, "config", "view", "--raw")[1]
    code, _, err = run(capsys, "config", "use-context", "nope")
    assert (code, err) == (1, "error: context 'nope' does not exist (contexts: local, prod)\n")
    assert run(capsys, "config", "delete-context", "prod")[0] == 0
    assert profiles.load(profile_file).current_context == ""


def test_set_context_refuses_a_missing_ca_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "config", "set-context", "x", "--ca", "/no/such/ca.pem")
    assert (code, err) == (1, "error: /no/such/ca.pem: no such file\n")


def test_no_server_configured_is_an_error_that_says_how(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "get", "workloads")
    assert code == 1 and out == ""
    assert err.startswith("error: no apiserver to talk to: pass --server")


@pytest.mark.parametrize(
    "args",
    [
        ["--server", "127.0.0.1:{port}", "get", "wk"],
        ["get", "wk", "--server", "127.0.0.1:{port}"],
        ["get", "--server=127.0.0.1:{port}", "wk"],
        ["-s", "127.0.0.1:{port}", "describe", "wk", "x"],
        ["scale", "wk", "x", "--replicas", "1", "-s", "127.0.0.1:{port}"],
    ],
)
def test_global_options_work_anywhere_and_errors_have_no_traceback(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    port = closed_port()
    code, out, err = run(capsys, *[a.format(port=port) for a in args])
    assert code == 1 and out == ""
    assert err.startswith(f"error: the apiserver at 127.0.0.1:{port} is unavailable: ")
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "get", "wk", "--server", f"127.0.0.1:{closed_port()}", "--debug")
    assert code == 1
    assert "Traceback" in err and "error: the apiserver" in err


def test_the_environment_names_the_server(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("DORA_SERVER", f"127.0.0.1:{port}")
    assert f"127.0.0.1:{port} is unavailable" in run(capsys, "get", "z")[2]


def test_the_most_specific_global_option_wins() -> None:
    settings = Settings(zone="root")
    # What the persistent options do: a command's value overrides the root's.
    seen: list[Settings] = []

    def fn(ctx: typer.Context) -> None:
        seen.append(ctx.obj)

    class FakeContext:
        obj = settings

        def ensure_object(self, _type: type) -> Settings:
            return settings

    wrapped = with_global_options(fn)
    wrapped(ctx=FakeContext(), global_server=None, global_token=None, global_context=None,
            global_zone="leaf", global_workspace=None, global_debug=False)
    assert seen[0].zone == "leaf"


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o default -F"),
                                               ("zsh", "#compdef doractl")])
def test_completion_scripts_for_the_shell_named(capsys: pytest.CaptureFixture[str], shell: str,
                                                marker: str) -> None:
    code, out, _ = run(capsys, "--show-completion", shell)
    assert code == 0
    assert marker in out and "_DORACTL_COMPLETE" in out


def test_completion_offers_kinds(capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_DORACTL_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "doractl get wor")
    monkeypatch.setenv("COMP_CWORD", "2")
    code, out, _ = run(capsys)
    assert code == 0
    assert out.split() == ["workload", "workloads", *(
        w for w in out.split() if w.startswith("workloadv")), "workspace", "workspaces"]


def _command_names(app: typer.Typer) -> set[str]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return set(group.commands)


def test_the_command_table_names_what_each_module_registers() -> None:
    for module, names in main.COMMANDS.items():
        assert _command_names(main.build((module,))) == set(names), module
    every = {name for names in main.COMMANDS.values() for name in names}
    assert _command_names(main.build()) == every
    assert _command_names(main.app) == every


@pytest.mark.parametrize(("args", "expected"), [
    (["apply", "-f", "x.yaml"], {"apply", "diff"}),
    (["--server", "get", "-z", "logs", "describe", "wk", "a"], {"describe"}),
    (["--debug", "volume", "ls"], {"volume", "volumes", "sync"}),
    (["--help"], None),
    (["no-such-command"], None),
    ([], None),
])
def test_a_command_line_builds_only_its_command(args: list[str],
                                                expected: set[str] | None) -> None:
    every = {name for names in main.COMMANDS.values() for name in names}
    assert _command_names(main.app_for(args)) == (expected or every)


def test_the_root_help_lists_each_command_with_its_own_help(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``doractl --help`` is made from the table, without the modules: it must print
    what the real commands would."""
    listing = main.run(["--help"]), capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main.app(args=["--help"], prog_name="doractl")
    assert exit_info.value.code == 0
    assert listing == (0, capsys.readouterr().out)


# What `doractl --help` must not import: each costs tens of milliseconds of start-up
# (grpc alone about 0.1 s), and none is needed to print a help.
HEAVY = ("grpc", "google.protobuf", "rich", "yaml", "asyncio", "pydantic", "dora.api.v1",
         "dora.api.client", "dora.ctl.commands")


@pytest.mark.parametrize("args", [["--help"], [], ["--version"]])
def test_the_root_help_imports_nothing_heavy(args: list[str]) -> None:
    code = ("import sys; from dora.ctl import main; code = main.run(sys.argv[1:]); "
            f"print(code, sorted(m for m in sys.modules if m.startswith({HEAVY!r})))")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == f"{0 if args else 2} []"


def test_explain_needs_no_server(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "wk.spec.replica.count")
    assert code == 0
    assert "FIELD:    spec.replica.count <integer>" in out
    assert "Unset means 1; 0 is a valid count" in out


def test_apply_starts_without_rich_or_other_commands() -> None:
    """What ``doractl apply`` imports before it parses its line: no rich, no other
    command module (start-up time is part of apply-to-running)."""
    code = ("import sys; from dora.ctl import main; main.app_for(['apply']); "
            "print(sorted(m for m in sys.modules if m.startswith(('rich', 'dora.ctl.commands.'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "['dora.ctl.commands.apply']"
