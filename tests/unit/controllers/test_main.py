"""The dora-controllers command line."""

from __future__ import annotations

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
                                   "credit", "task", "gpuhealth")
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
