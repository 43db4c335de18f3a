"""Where a Volume's files live, and how a path a user gives stays inside them.

The volume controller, the node agent, the apiserver's file service and
``doractl`` all need the same two answers, and cannot import each other, so
both live here as pure functions:

- ``volume_path``: seed 002's rule. A Volume's directory is
  ``/<storage.spec.mountpath>/<volume workspace>/<volume name>``, or
  ``/<storage.spec.mountpath>/<spec.localPath>`` when ``localPath`` is set.
  ``localPath`` is read *inside* the storage (a leading ``/`` means the
  storage's root): a Volume can never name a directory outside its Storage,
  so a user who may create Volumes cannot mount the node's ``/etc``.
- ``clean``: a path a user gives inside a Volume (``doractl volume upload
  home:/src``). ``/`` is the volume's root, ``..`` is refused outright (never
  resolved, so ``a/../../x`` cannot climb out), NUL and backslashes too.
  The result is relative (``""`` is the root), ready to join under the
  Volume's directory. Whoever touches the disk must still check symlinks
  (``os.path.realpath``); that is the agent's job, the only one with a disk.
"""

from __future__ import annotations

import posixpath

from dora.api import errors
from dora.api.v1 import cluster_pb2, object_pb2

LOCAL, NFS = "Local", "NFS"
# The finalizer the volume controller keeps on a Volume while containers use it.
FINALIZER = "dora.io/volume-protection"
READY, PENDING, TERMINATING = "Ready", "Pending", "Terminating"
# Container phases whose Docker container no longer runs: they do not use a volume.
ENDED_PHASES = ("Exited", "Failed", "Lost")


def clean(path: str, *, field: str = "path") -> str:
    """``path`` inside a volume, relative and normalised; ``errors.Invalid`` naming
    ``field`` if it tries to leave the volume."""
    if "\0" in path:
        raise errors.Invalid("must not contain NUL", field=field)
    if "\\" in path:
        raise errors.Invalid(f"{path!r} must use '/' as the separator", field=field)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise errors.Invalid(
            f"{path!r} must not contain '..': paths stay inside the volume", field=field)
    return "/".join(parts)


def volume_path(*, storage: cluster_pb2.StorageSpec, workspace: str, name: str,
                local_path: str = "") -> str:
    """The Volume's directory on its storage (the NFS export or the Local host path)."""
    root = posixpath.normpath("/" + storage.mountpath.strip("/"))
    if local_path:
        inside = clean(local_path, field="spec.localPath")
        if not inside:
            raise errors.Invalid("must name a directory inside the storage",
                                 field="spec.localPath")
    else:
        inside = clean(f"{workspace}/{name}", field="metadata.name")
    return posixpath.join(root, inside)


def path_of(volume: object_pb2.Object, storage: object_pb2.Object) -> str:
    meta = volume.metadata
    return volume_path(storage=storage.storage.spec, workspace=meta.workspace, name=meta.name,
                       local_path=volume.volume.spec.local_path)


def mounts_of(container: object_pb2.Object) -> list[tuple[str, str]]:
    """The (workspace, name) of every Volume a Container mounts."""
    own = container.metadata.workspace
    return [(m.workspace or own, m.name) for m in container.container.spec.template.volumes]


def in_use(container: object_pb2.Object) -> bool:
    """Whether a Container may have a Docker container with its volumes mounted."""
    return container.container.status.phase not in ENDED_PHASES


def user_of(container: object_pb2.Object) -> str:
    """How a volume's status names a Container using it: ``<workspace>/<container>``."""
    return f"{container.metadata.workspace}/{container.metadata.name}"
