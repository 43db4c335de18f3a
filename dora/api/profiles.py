"""Profiles: the contexts in ``~/.dora/config.yaml`` and how a command finds its server.

The file (``$DORA_CONFIG`` names another one) holds named contexts and the one in
use::

    current-context: admin
    contexts:
      admin:
        endpoint: https://dora.example.com:3000
        token: ...
        zone: dora-cluster-1
        workspace: amedeo.setti
        ca: /etc/dora/ca.pem

A connection is resolved once per command, most specific first: a flag
(``--server``, ``--token``, ``-z``, ``-g``), then ``$DORA_SERVER`` and
``$DORA_TOKEN``, then the context (``--context``, ``$DORA_CONTEXT`` or
``current-context``). A zone or workspace nobody names stays empty and the
apiserver applies its default. The file holds tokens, so it is written readable
by its owner only.

This module lives in ``dora.api`` because two clients read the same file:
``doractl`` (``dora.ctl.profiles`` re-exports it) and the Python SDK
(``dora.Client.from_profile``), which must not import the command line.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dora.api import errors

__all__ = [
    "CONTEXT_KEYS", "Connection", "Context", "Profiles", "default_path", "load", "resolve",
    "save", "set_context",
]

CONTEXT_KEYS = ("endpoint", "token", "zone", "workspace", "ca")
_KEY_ALIASES = {"server": "endpoint", "group": "workspace"}


@dataclass(frozen=True)
class Context:
    name: str
    endpoint: str = ""
    token: str = ""
    zone: str = ""
    workspace: str = ""
    ca: str = ""


@dataclass
class Profiles:
    contexts: dict[str, Context] = field(default_factory=dict)
    current_context: str = ""


@dataclass(frozen=True)
class Connection:
    """Everything a command needs to reach the apiserver and scope its objects."""

    endpoint: str
    token: str = ""
    ca: str = ""
    zone: str = ""
    workspace: str = ""
    context: str = ""

    @property
    def target(self) -> str:
        """The gRPC target: ``host:port``, or a list for several endpoints."""
        from dora.api import client  # grpc: not for a command line that sends nothing

        return client.target_of([e for e in self.endpoint.split(",") if e.strip()])

    @property
    def tls(self) -> bool:
        return bool(self.ca) or self.endpoint.strip().startswith("https://")

    def root_certificates(self) -> bytes | None:
        """The CA bundle ``ca`` names, read now; None without one."""
        if not self.ca:
            return None
        try:
            return Path(self.ca).expanduser().read_bytes()
        except OSError as exc:
            raise errors.DoraError(
                f"cannot read the CA bundle {self.ca}: {exc.strerror}") from None


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get("DORA_CONFIG"):
        return Path(environ["DORA_CONFIG"]).expanduser()
    return Path("~/.dora/config.yaml").expanduser()


def load(path: Path) -> Profiles:
    """The profiles in ``path``; a missing file is an empty set of profiles."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Profiles()
    except OSError as exc:
        raise errors.DoraError(f"{path}: {exc.strerror}") from None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise errors.Invalid(f"{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise errors.Invalid(f"{path}: {exc}") from None
    return _parse(data or {}, path)


def _parse(data: Any, path: Path) -> Profiles:
    if not isinstance(data, Mapping):
        raise errors.Invalid(f"{path}: expected a mapping with contexts and current-context")
    unknown = [k for k in data if k not in ("contexts", "current-context")]
    if unknown:
        raise errors.Invalid(f"{path}: unknown key {unknown[0]!r}")
    raw = data.get("contexts") or {}
    if isinstance(raw, list):  # kubectl's shape: a list of entries with a name
        entries = {}
        for item in raw:
            if not isinstance(item, Mapping) or not item.get("name"):
                raise errors.Invalid(f"{path}: every entry of contexts needs a name")
            entries[str(item["name"])] = {k: v for k, v in item.items() if k != "name"}
        raw = entries
    if not isinstance(raw, Mapping):
        raise errors.Invalid(f"{path}: contexts must be a mapping of name to context")
    contexts = {str(name): _context(str(name), body, path) for name, body in raw.items()}
    current = data.get("current-context") or ""
    return Profiles(contexts=contexts, current_context=str(current))


def _context(name: str, body: Any, path: Path) -> Context:
    if body is None:
        return Context(name)
    if not isinstance(body, Mapping):
        raise errors.Invalid(f"{path}: context {name!r} must be a mapping")
    values: dict[str, str] = {}
    for key, value in body.items():
        target = _KEY_ALIASES.get(str(key), str(key))
        if target not in CONTEXT_KEYS:
            raise errors.Invalid(
                f"{path}: context {name!r}: unknown key {key!r} "
                f"(known: {', '.join(CONTEXT_KEYS)})"
            )
        values[target] = "" if value is None else str(value)
    return Context(name, **values)


def save(profiles: Profiles, path: Path) -> None:
    """Write ``profiles`` to ``path`` atomically, readable by its owner only."""
    data: dict[str, Any] = {}
    if profiles.current_context:
        data["current-context"] = profiles.current_context
    data["contexts"] = {
        name: {f.name: getattr(ctx, f.name) for f in fields(ctx)
               if f.name != "name" and getattr(ctx, f.name)}
        for name, ctx in sorted(profiles.contexts.items())
    }
    import yaml

    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def set_context(profiles: Profiles, name: str, **values: str | None) -> bool:
    """Create context ``name`` or update the fields given (not None); True if created."""
    unknown = set(values) - set(CONTEXT_KEYS)
    if unknown:
        raise ValueError(f"unknown context fields {sorted(unknown)}")
    given = {k: v for k, v in values.items() if v is not None}
    existing = profiles.contexts.get(name)
    profiles.contexts[name] = replace(existing or Context(name), **given)
    return existing is None


def resolve(
    profiles: Profiles,
    *,
    server: str | None = None,
    token: str | None = None,
    context: str | None = None,
    zone: str | None = None,
    workspace: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Connection:
    """The connection the flags, the environment and the chosen context add up to."""
    environ = os.environ if environ is None else environ
    name = context or environ.get("DORA_CONTEXT") or profiles.current_context
    ctx = Context("")
    if name:
        if name not in profiles.contexts:
            known = ", ".join(sorted(profiles.contexts)) or "none"
            raise errors.NotFound(f"context {name!r} does not exist (contexts: {known})")
        ctx = profiles.contexts[name]
    endpoint = server or environ.get("DORA_SERVER") or ctx.endpoint
    if not endpoint:
        raise errors.DoraError(
            "no apiserver to talk to: pass --server, set DORA_SERVER, or create a context "
            "with `doractl config set-context NAME --server HOST:PORT`"
        )
    return Connection(
        endpoint=endpoint,
        token=token if token is not None else environ.get("DORA_TOKEN") or ctx.token,
        ca=ctx.ca,
        zone=zone if zone is not None else ctx.zone,
        workspace=workspace if workspace is not None else ctx.workspace,
        context=name,
    )
