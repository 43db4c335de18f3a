"""``doractl sync``'s engine: it moved to ``dora.api.syncing`` so that the desktop app
(``doractl ui``, in ``dora.web``) runs the same code; the names stay importable here."""

from __future__ import annotations

from dora.api.syncing import (
    ALWAYS_IGNORED,
    IGNORE_FILE,
    Changes,
    Entry,
    FolderUnreadable,
    Ignore,
    Reporter,
    Syncer,
    Tree,
    diff,
    remote_path,
    scan,
)

__all__ = ["ALWAYS_IGNORED", "IGNORE_FILE", "Changes", "Entry", "FolderUnreadable", "Ignore",
           "Reporter", "Syncer", "Tree", "diff", "remote_path", "scan"]
