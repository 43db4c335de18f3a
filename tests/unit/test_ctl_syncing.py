""".doraignore rules, tree scans and the changes between two scans (doractl sync)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dora.ctl import syncing
from dora.ctl.commands.volumes import split
from dora.ctl.syncing import Entry, Ignore


@pytest.mark.parametrize(("path", "is_dir", "ignored"), [
    ("a.pyc", False, True),
    ("pkg/mod.pyc", False, True),
    ("__pycache__", True, True),
    ("src/__pycache__", True, True),
    ("data", True, True),           # "/data/" anchors at the top, directories only
    ("src/data", True, False),
    ("data", False, False),
    ("logs/run.log", False, True),  # "*.log"
    ("logs/keep.log", False, False),  # re-included by "!keep.log"
    ("build/x/y.o", False, True),   # "build/**"
    ("deep/a/b/c.tmp", False, True),  # "**/*.tmp"
    ("notes.txt", False, False),
    ("x.dora-partial", False, True),  # always
])
def test_doraignore_is_gitignore_like(path: str, is_dir: bool, ignored: bool) -> None:
    rules = Ignore.parse("# comment\n\n*.pyc\n__pycache__/\n/data/\n*.log\n!keep.log\n"
                         "build/**\n**/*.tmp\n")
    assert rules.ignored(path, is_dir=is_dir) is ignored


def test_a_scan_skips_ignored_directories_without_descending(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("x")
    (tmp_path / "venv" / "lib").mkdir(parents=True)
    (tmp_path / "venv" / "lib" / "big.so").write_text("x" * 10)
    (tmp_path / "link").symlink_to("/etc")
    (tmp_path / ".doraignore").write_text("venv/\n")
    tree = syncing.scan(tmp_path, Ignore.load(tmp_path))
    assert sorted(tree) == [".doraignore", "src", "src/main.py"]
    assert tree["src"].is_dir and tree["src/main.py"].size == 1


def test_changes_are_new_or_changed_files_and_the_outermost_paths_gone() -> None:
    before = {
        "a.py": Entry(1, 10), "b.py": Entry(1, 10), "old": Entry(0, 0, is_dir=True),
        "old/x.py": Entry(1, 10), "old/sub": Entry(0, 0, is_dir=True),
        "old/sub/y.py": Entry(1, 10), "keep": Entry(0, 0, is_dir=True),
        "keep/gone.py": Entry(1, 10),
    }
    after = {
        "a.py": Entry(1, 10), "b.py": Entry(2, 11), "c.py": Entry(1, 12),
        "keep": Entry(0, 0, is_dir=True), "new": Entry(0, 0, is_dir=True),
    }
    changes = syncing.diff(before, after)
    assert changes.changed == ["b.py", "c.py"]
    assert changes.gone == ["keep/gone.py", "old"]
    assert changes.new_dirs == ["new"]
    assert not syncing.diff(after, after)


def test_an_edit_with_the_same_size_is_seen_by_its_mtime(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_text("aaaa")
    first = syncing.scan(tmp_path, Ignore.parse(""))
    file.write_text("bbbb")
    os.utime(file, ns=(first["f"].mtime_ns + 1_000_000, first["f"].mtime_ns + 1_000_000))
    assert syncing.diff(first, syncing.scan(tmp_path, Ignore.parse(""))).changed == ["f"]


def test_volume_words_split_and_stay_inside_the_volume() -> None:
    import typer

    assert split("home") == ("home", "")
    assert split("home:/src/") == ("home", "src")
    with pytest.raises(typer.BadParameter, match="must not contain"):
        split("home:../../etc")
    with pytest.raises(typer.BadParameter, match="names no volume"):
        split(":/src")
    assert syncing.remote_path("src", "a/b.py") == "src/a/b.py"
    assert syncing.remote_path("", "a.py") == "a.py"


def test_a_folder_that_is_gone_is_an_error_not_an_empty_look(tmp_path: Path) -> None:
    """An empty look would make a sync delete everything on the volume."""
    with pytest.raises(syncing.FolderUnreadable, match="is gone"):
        syncing.scan(tmp_path / "missing", Ignore.parse(""))
    (tmp_path / "file").write_text("x")
    with pytest.raises(syncing.FolderUnreadable, match="is gone"):
        syncing.scan(tmp_path / "file", Ignore.parse(""))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_a_folder_inside_that_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "f").write_text("x")
    os.chmod(tmp_path / "locked", 0)
    try:
        with pytest.raises(syncing.FolderUnreadable, match="permission denied"):
            syncing.scan(tmp_path, Ignore.parse(""))
    finally:
        os.chmod(tmp_path / "locked", 0o755)
