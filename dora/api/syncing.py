"""The folder sync engine that ``doractl sync`` and ``doractl ui`` (the desktop app) both
run, and what ``doractl volume upload`` sends: local trees, ``.doraignore``, the
differences between two looks at a tree, and ``Syncer``, which mirrors one folder
into one volume path. It lives in ``dora.api`` because two components run it
(``dora.ctl`` and ``dora.web``'s desktop mode) and they may not import each other;
what each shows of a sync goes through a ``Reporter``.

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

A folder that disappears or cannot be read is an error (``FolderUnreadable``),
never an empty look: an empty look would delete everything on the volume.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dora.api import errors
from dora.api.v1 import volumes_pb2
from dora.api.volumefiles import VolumeFiles, file_sha256

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


class FolderUnreadable(errors.DoraError):
    """The synced folder (or a folder in it) is gone or cannot be read: the sync stops
    rather than take the missing files for deleted ones."""


def scan(root: Path, ignore: Ignore) -> Tree:
    """Every file and directory under ``root`` that is not ignored (symlinks skipped:
    what they point at may be anywhere). ``FolderUnreadable`` when ``root`` is gone
    or is not a readable folder, or a folder inside cannot be read."""
    tree: Tree = {}

    def walk(directory: Path, prefix: str) -> None:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError) as exc:
            if not prefix:
                raise FolderUnreadable(f"the folder {root} is gone ({exc.strerror})") from None
            return  # a folder inside deleted meanwhile: it is gone, like its files
        except PermissionError:
            where = root if not prefix else f"{root}/{prefix.rstrip('/')}"
            raise FolderUnreadable(f"cannot read the folder {where} (permission denied)") \
                from None
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


class Reporter(Protocol):
    """What a sync shows: ``doractl sync`` prints it, the desktop app sends it to the
    page."""

    def transfer(self, remote: str, size: int) -> AbstractContextManager[Callable[[int], None]]:
        """Around one upload; the callable gets each chunk's size."""

    def deleted(self, remote: str) -> None: ...

    def problem(self, message: str) -> None:
        """Something failed and will be tried again at the next look."""

    def note(self, message: str) -> None: ...


class Syncer:
    """One folder mirrored into one volume path: ``first_copy``, then ``follow`` is one
    look (send what changed, delete what was deleted)."""

    def __init__(self, *, files: VolumeFiles, target: volumes_pb2.VolumeTarget, base: str,
                 root: Path, reporter: Reporter) -> None:
        self.files = files
        self.target = target
        self.base = base
        self.root = root
        self.reporter = reporter
        self.ignore = Ignore.load(root)
        self._ignore_stamp = self._stamp()
        self.tree: Tree = {}
        # The paths that failed at the last look (tried again at the next one).
        self.failures: list[str] = []

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = (self.root / IGNORE_FILE).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FolderUnreadable(f"cannot read {self.root / IGNORE_FILE}: {exc.strerror}") \
                from None
        return st.st_size, st.st_mtime_ns

    def _rel(self, remote: str) -> str:
        return remote.removeprefix(f"{self.base}/") if self.base else remote

    async def first_copy(self, *, prune: bool) -> int:
        """Send what differs (size and sha256); the number of files sent."""
        self.failures = []
        tree = await asyncio.to_thread(scan, self.root, self.ignore)
        listing = await self.files.list(self.target, self.base, recursive=True,
                                        checksums=True, sync=True)
        remote = {self._rel(f.path): f for f in listing.files if not f.is_dir}
        to_send: list[tuple[str, str]] = []
        for rel, entry in sorted(tree.items()):
            if entry.is_dir:
                continue
            there = remote.get(rel)
            digest = ""
            if there is not None and there.size == entry.size:
                digest = await asyncio.to_thread(file_sha256, self.root / rel)
                if digest == there.sha256:
                    continue
            to_send.append((rel, digest))
        failed = await self._send(to_send)
        for rel in failed:
            tree.pop(rel, None)
        if prune:
            extra = sorted(r for r in remote if r not in tree
                           and not self.ignore.ignored(r, is_dir=False))
            if extra:
                await self.files.delete(self.target, [remote_path(self.base, r)
                                                      for r in extra], sync=True)
                for rel in extra:
                    self.reporter.deleted(remote_path(self.base, rel))
        self.tree = tree
        sent = len(to_send) - len(failed)
        self.reporter.note(f"{sent} file(s) sent, "
                           f"{sum(1 for e in tree.values() if not e.is_dir)} in sync")
        return sent

    async def _send(self, items: Sequence[tuple[str, str]]) -> list[str]:
        """Upload ``(rel, sha256 or "")``; the paths that failed (tried again later)."""
        failed = []
        for rel, digest in items:
            local = self.root / rel
            remote = remote_path(self.base, rel)
            try:
                size = (await asyncio.to_thread(local.stat)).st_size
                with self.reporter.transfer(remote, size) as progress:
                    await self.files.upload(self.target, remote, local, sync=True,
                                            digest=digest, progress=progress)
            except FileNotFoundError:
                failed.append(rel)  # deleted meanwhile: the next look sees it gone
            except PermissionError:
                self.reporter.problem(f"{rel}: cannot read it (permission denied)")
                self.failures.append(rel)
                failed.append(rel)
            except errors.DoraError as exc:
                if isinstance(exc, errors.Forbidden | errors.Unauthenticated):
                    raise
                self.reporter.problem(f"{rel}: {exc.message} (trying again)")
                self.failures.append(rel)
                failed.append(rel)
        return failed

    async def follow(self) -> bool:
        """One look: send what changed, delete what is gone. True when it did something."""
        self.failures = []
        stamp = self._stamp()
        if stamp != self._ignore_stamp:
            self.ignore, self._ignore_stamp = Ignore.load(self.root), stamp
        after = await asyncio.to_thread(scan, self.root, self.ignore)
        changes = diff(self.tree, after)
        if not changes:
            return False
        failed = await self._send([(rel, "") for rel in changes.changed])
        for rel in failed:
            # Not sent: keep the old view of it, so the next look tries again.
            if rel in self.tree:
                after[rel] = self.tree[rel]
            else:
                after.pop(rel, None)
        if changes.gone:
            try:
                await self.files.delete(self.target, [remote_path(self.base, r)
                                                      for r in changes.gone],
                                        recursive=True, sync=True)
            except errors.DoraError as exc:
                if isinstance(exc, errors.Forbidden | errors.Unauthenticated):
                    raise
                self.reporter.problem(f"deleting {', '.join(changes.gone)}: {exc.message} "
                                      "(trying again)")
                self.failures.extend(changes.gone)
                for rel in changes.gone:
                    after[rel] = self.tree[rel]
            else:
                for rel in changes.gone:
                    self.reporter.deleted(remote_path(self.base, rel))
        self.tree = after
        return True
