"""The dora-controllers command line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dora.controllers import main


def test_flags_become_options() -> None:
    args = main.parse_args(["--server", "a:3000,b:3000", "--zone", "dc-rov-01",
                            "--controllers", "scheduler, workload", "--identity", "me",
                            "--lease-ttl", "4", "--seed", "3"])
    options = main.options_from(args)
    assert (options.zone, options.controllers, options.identity, options.lease_ttl,
            options.seed) == ("dc-rov-01", ("scheduler", "workload"), "me", 4, 3)
    main.check(options)


def test_defaults() -> None:
    options = main.options_from(main.parse_args([]))
    assert options.zone == "default"
    assert options.controllers == ("workload", "scheduler", "nodelifecycle", "volume",
                                   "credit", "task", "gpuhealth", "gc")
    assert (options.credit_week_start, options.credit_interval) == ("monday", 60.0)
    assert options.identity == main.default_identity()
    assert options.lease_ttl == 10


@pytest.mark.parametrize(("flags", "message"), [
    (["--controllers", "workload,billing"], "unknown controllers: billing"),
    (["--credit-week-start", "someday"], "--credit-week-start: 'someday'"),
    (["--credit-interval", "0"], "--credit-interval must be more than 0"),
    (["--controllers", ","], "names none"),
    (["--lease-ttl", "1"], "at least 2 seconds"),
])
def test_bad_options(flags: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        main.check(main.options_from(main.parse_args(flags)))


def test_missing_token_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--token-file", "/nonexistent/token"])
    assert exit_info.value.code == 2
    assert "no such file" in capsys.readouterr().err


def test_zones_name_several_or_all_and_default_to_zone() -> None:
    assert main.zones_of(main.parse_args(["--zone", "dc-rov-01"])) == ("dc-rov-01",)
    assert main.zones_of(main.parse_args(["--zones", "a, b,a"])) == ("a", "b")
    assert main.zones_of(main.parse_args(["--zones", "all"])) == ("all",)
    with pytest.raises(ValueError, match="names no zone"):
        main.zones_of(main.parse_args(["--zones", ","]))
    with pytest.raises(ValueError, match="cannot be combined"):
        main.zones_of(main.parse_args(["--zones", "all,a"]))


def test_every_flag_of_before_the_registry_is_still_there_with_its_default() -> None:
    args = main.parse_args([])
    assert (args.node_grace, args.fence_margin, args.rollout_timeout, args.resync,
            args.workers, args.scheduler_workers, args.seed, args.credit_week_start,
            args.credit_interval, args.task_backoff, args.create_batch,
            args.version_history, args.lease_ttl, args.unserved_grace) == (
        15.0, 5.0, 60.0, 300.0, 4, 16, None, "monday", 60.0, 10.0, 50, 50, 10, 5.0)
    options = main.options_from(main.parse_args(["--node-grace", "3", "--workers", "2"]))
    assert options.node_grace == 3.0
    assert options.values()["workers"] == 2
    with pytest.raises(TypeError, match="no option 'nod_grace'"):
        main.Options(nod_grace=3)


def test_a_loaded_module_adds_its_controller_and_its_options(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "probe_controller.py").write_text(textwrap.dedent('''
        from dora.api import kinds
        from dora.runtime.handlers import Watch, own_key
        from dora.runtime.reconcile import DONE
        from dora.runtime.registry import REGISTRY, ControllerSpec, Option

        class Probe:
            name = "probe"
            async def reconcile(self, *, key):
                return DONE

        REGISTRY.add(ControllerSpec(
            name="probe", help="a probe", build=lambda setup: Probe(),
            watches=[Watch(kinds.NODE, own_key)],
            options=[Option("probe_every", 7.0, "seconds")], default=False))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    args = main.parse_args(["--load", "probe_controller", "--controllers", "probe",
                            "--probe-every", "2"])
    options = main.options_from(args)
    main.check(options)
    assert (options.controllers, options.probe_every) == (("probe",), 2.0)
    assert "probe" not in main.parse_args([]).controllers.split(",")
    with pytest.raises(ValueError, match="--load no_such_module"):
        main.parse_args(["--load", "no_such_module"])
