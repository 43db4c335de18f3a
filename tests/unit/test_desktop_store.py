"""The desktop app's sync folders: what a request may say, and ~/.dora/desktop.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from dora.api import errors
from dora.web.desktopsync import Folder, Key, Store, parse_folders


def test_folders_are_checked_field_by_field(tmp_path: Path) -> None:
    assert parse_folders([{"local": str(tmp_path), "volume": "home", "path": "/code/"}]) == \
        [Folder(str(tmp_path), "home", "code")]
    cases = [
        ({"volume": "home"}, "folders[0].local"),
        ({"local": "relative/dir", "volume": "home"}, "folders[0].local"),
        ({"local": str(tmp_path / "missing"), "volume": "home"}, "folders[0].local"),
        ({"local": str(tmp_path), "volume": "Bad Name"}, "folders[0].volume"),
        ({"local": str(tmp_path), "volume": "home", "path": "../up"}, "folders[0].path"),
    ]
    for item, field in cases:
        with pytest.raises(errors.Invalid) as caught:
            parse_folders([item])
        assert caught.value.violations[0].field == field, item
    with pytest.raises(errors.Invalid):
        parse_folders({"local": "/"})


def test_the_store_round_trips_owner_only(tmp_path: Path) -> None:
    path = tmp_path / ".dora" / "desktop.yaml"
    store = Store(path)
    key = Key("main", "default", "alice", "trainer")
    store.syncs[key] = [Folder("/src", "home", "code")]
    store.syncs[Key("main", "default", "alice", "empty")] = []
    store.save()
    assert path.stat().st_mode & 0o777 == 0o600
    assert Store.load(path).syncs == {key: [Folder("/src", "home", "code")]}
    assert Store.load(tmp_path / "none.yaml").syncs == {}
