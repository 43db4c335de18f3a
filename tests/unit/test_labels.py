"""Label selectors, with Kubernetes' meaning for every operator."""

from __future__ import annotations

import pytest

from dora.api import errors, labels

WEB = {"app": "web", "tier": "frontend", "env": "prod"}
DB = {"app": "db", "tier": "backend", "env": "dev", "legacy": "true"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("selector", "matching"),
    [
        # equality
        ("app=web", ["WEB"]),
        ("app==web", ["WEB"]),
        ("app = web", ["WEB"]),
        ("app=nothing", []),
        # inequality: a missing key is not equal to anything
        ("app!=web", ["DB", "BARE"]),
        ("app!=nothing", ["WEB", "DB", "BARE"]),
        # set-based
        ("env in (prod,dev)", ["WEB", "DB"]),
        ("env in ( prod , staging )", ["WEB"]),
        ("env in (staging)", []),
        ("env notin (prod)", ["DB", "BARE"]),
        ("env notin (prod,dev)", ["BARE"]),
        # exists / does not exist
        ("legacy", ["DB"]),
        ("!legacy", ["WEB", "BARE"]),
        ("! legacy", ["WEB", "BARE"]),
        # combined: every requirement must hold
        ("app=web,tier=frontend", ["WEB"]),
        ("app=web,tier=backend", []),
        ("env in (prod,dev),!legacy", ["WEB"]),
        ("tier,app!=web", ["DB"]),
        ("env in (prod,dev),tier notin (backend),app", ["WEB"]),
        ("  app=db ,  legacy  ", ["DB"]),
    ],
)
def test_selector(selector: str, matching: list[str]) -> None:
    parsed = labels.parse(selector)
    maps = {"WEB": WEB, "DB": DB, "BARE": BARE}
    assert [name for name, labels_ in maps.items() if parsed.matches(labels_)] == matching


def test_prefixed_keys_and_rich_values() -> None:
    selected = {"dora.io/app": "web-1.2_3", "team": "ml"}
    assert labels.parse("dora.io/app=web-1.2_3").matches(selected)
    assert labels.parse("dora.io/app in (web-1.2_3,other)").matches(selected)
    assert not labels.parse("dora.io/app!=web-1.2_3").matches(selected)


def test_empty_value() -> None:
    assert labels.parse("app=").matches({"app": ""})
    assert not labels.parse("app=").matches({"app": "web"})
    assert not labels.parse("app=").matches({})


@pytest.mark.parametrize("selector", ["", "   "])
def test_empty_selector_matches_everything(selector: str) -> None:
    parsed = labels.parse(selector)
    assert not parsed
    for labels_ in (WEB, DB, BARE):
        assert parsed.matches(labels_)
    assert labels.parse(selector) == labels.EVERYTHING


def test_a_selector_is_truthy() -> None:
    assert labels.parse("app=web")


@pytest.mark.parametrize(
    "selector",
    [
        "app=web=x",
        "=web",
        "!",
        "app!",
        "!app=web",
        "app=web,",
        ",app=web",
        "app=web,,tier",
        "env in ()",
        "env in (,)",
        "env in (prod",
        "env in prod)",
        "env in (prod dev)",
        "env notin prod",
        "env between (a,b)",
        "app=we b",
        "app=-web",
        "-app=web",
        "app$=web",
        "app=(web)",
        "a),b",
    ],
)
def test_malformed_selector(selector: str) -> None:
    with pytest.raises(errors.Invalid) as caught:
        labels.parse(selector)
    assert caught.value.violations[0].field == "labelSelector"
    assert "cannot parse" in caught.value.message
