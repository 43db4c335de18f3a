"""What ``doractl sync`` and ``doractl volume upload`` send: local trees, ``.doraignore``,
and the differences between two looks at a tree.

A look at a tree (``scan``) maps each file's path (relative, ``/``-separated)
to its size and modification time; directories are listed too, so an empty one
or a deleted one can be mirrored. Two looks give the changes (``diff``): files
new or changed (size or mtime differ), and paths gone. Polling a tree twice a
second this way costs a ``stat`` per file and needs no watcher library nor
inotify limits, and it sees edits made by any editor (rename-over included).

``.doraignore`` (at the top of the synced folder) is read like ``.gitignore``,
in its common subset: one pattern per line, ``#`` comments, ``!`` to re-include,
a trailing ``/`` for directories only, a ``/`` inside the pattern anchors it at
the top, otherwise it matches a name at any depth; ``*``, ``?`` and ``[...]``
as in ``fnmatch`` (``*`` does not cross ``/``), ``**`` for any depth. A
directory that is ignored is not descended into. Partial downloads
(``*.dora-partial``) are always ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

IGNORE_FILE = ".doraignore"
ALWAYS_IGNORED = ("*.dora-partial",)


@dataclass(frozen=True)
class Entry:
    size: int
    mtime_ns: int
    is_dir: bool = False


Tree = dict[str, Entry]


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool


def _translate(pattern: str) -> str:
    """A gitignore glob as a regex over a '/'-separated path."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@dataclass
class Ignore:
    rules: list[_Rule] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Ignore:
        rules = []
        for raw in [*ALWAYS_IGNORED, *text.splitlines()]:
            line = raw.rstrip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            line = line[1:] if negated else line
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            anchored = "/" in line
            body = _translate(line.lstrip("/"))
            regex = re.compile(("^" if anchored else "^(?:.*/)?") + body + "$")
            rules.append(_Rule(regex, negated, dir_only))
        return cls(rules)

    @classmethod
    def load(cls, root: Path) -> Ignore:
        try:
            return cls.parse((root / IGNORE_FILE).read_text())
        except FileNotFoundError:
            return cls.parse("")

    def ignored(self, path: str, *, is_dir: bool) -> bool:
        verdict = False
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(path):
                verdict = not rule.negated
        return verdict


def scan(root: Path, ignore: Ignore) -> Tree:
    """Every file and directory under ``root`` that is not ignored (symlinks skipped:
    what they point at may be anywhere)."""
    tree: Tree = {}

    def walk(directory: Path, prefix: str) -> None:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            try:
                if entry.is_symlink():
                    continue
                is_dir = entry.is_dir()
                if ignore.ignored(rel, is_dir=is_dir):
                    continue
                st = entry.stat()
            except FileNotFoundError:
                continue  # gone between the listing and the stat: the next look sees it
            if is_dir:
                tree[rel] = Entry(0, 0, is_dir=True)
                walk(Path(entry.path), rel + "/")
            elif entry.is_file():
                tree[rel] = Entry(st.st_size, st.st_mtime_ns)

    walk(root, "")
    return tree


@dataclass(frozen=True)
class Changes:
    # Files to send (new or changed), sorted.
    changed: list[str]
    # Paths gone (files and directories), outermost only, sorted.
    gone: list[str]
    # Directories that appeared (an empty one must be made by uploading into it).
    new_dirs: list[str]

    def __bool__(self) -> bool:
        return bool(self.changed or self.gone or self.new_dirs)


def diff(before: Tree, after: Tree) -> Changes:
    changed = sorted(p for p, e in after.items()
                     if not e.is_dir and (p not in before or before[p] != e))
    gone_all = sorted(p for p in before if p not in after)
    gone = [p for p in gone_all if not any(g not in after for g in _parents(p, before))]
    new_dirs = sorted(p for p, e in after.items() if e.is_dir and p not in before)
    return Changes(changed, gone, new_dirs)


def _parents(path: str, tree: Tree) -> Iterable[str]:
    """The directories above ``path`` that were in ``tree`` (and so may be gone too)."""
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        parent = "/".join(parts[:i])
        if parent in tree:
            yield parent


def remote_path(base: str, rel: str) -> str:
    base = base.strip("/")
    return f"{base}/{rel}" if base else rel
