"""The dev stack's JWT secret, kept in a local file so tokens outlive a restart.

A secret made anew for every ``make up`` broke every open tab on a restart: the page keeps its
token in localStorage, and the restarted bridge answered it with "Invalid token". The secret
is made once, on the first launch, into a git-ignored file at the project root (``.dev-secret``,
mode 0600: it signs tokens for any user), and read back by every launch after. Deleting the
file revokes every token minted with it. Development only: a deployed bridge gets its secret
from the chart's Secret.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_BYTES = 32


class SecretFileError(OSError):
    """The secret file exists but cannot be used; the message says which file and why."""


def persistent_secret(path: Path) -> str:
    """The secret stored at ``path``, made (mode 0600) when the file does not exist yet.

    The new file is written in full under a temporary name and then linked into place, so two
    launches racing on a first start agree on one secret, and an interrupted write never
    leaves an empty secret behind.
    """
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(SECRET_BYTES) + "\n")
        try:
            os.link(staging, path)
        except FileExistsError:
            pass  # another launch made it first: use that one
    finally:
        staging.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if not text:
        raise SecretFileError(f"{path} is empty: delete it and a new secret is made")
    return text
