"""How an apiserver proves itself to a node agent: a shared secret.

The agent serves streams (logs, exec, volume transfers) that reach into the
node's Docker containers, so it must accept only apiservers, which have already
authenticated and authorized the user. Both sides read the same secret from a
file (``--agent-secret-file``); the apiserver sends it in the call metadata
under ``METADATA_KEY`` and the agent compares it in constant time. The apiserver
and the agent cannot import each other, so the words they share live here.
"""

from __future__ import annotations

import hmac
from pathlib import Path

METADATA_KEY = "x-dora-agent-secret"
MIN_LENGTH = 16


class SecretError(ValueError):
    """The secret file cannot be used; the message says why and which file."""


def read_secret_file(path: Path) -> str:
    """The secret in ``path`` (surrounding whitespace dropped); at least 16 characters."""
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise SecretError(f"cannot read the agent secret file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SecretError(f"the agent secret file {path} is not text") from None
    if len(secret) < MIN_LENGTH:
        raise SecretError(
            f"the agent secret in {path} is too short ({len(secret)} characters, at least "
            f"{MIN_LENGTH}); make one with `openssl rand -hex 32 > {path}`"
        )
    if any(c in secret for c in "\r\n") or not secret.isprintable():
        raise SecretError(f"the agent secret in {path} must be one line of printable text")
    return secret


def matches(expected: str, presented: str) -> bool:
    """Whether ``presented`` is the secret, in time independent of where they differ."""
    return hmac.compare_digest(expected.encode(), presented.encode())
