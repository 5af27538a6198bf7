"""Secrets a tool authenticates to its upstream with: one file per ``secretRef``.

The directory is typically a mounted Kubernetes Secret, whose files change in
place when the Secret is rotated, so a value is re-read when its file changes.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SERVICE_ACCOUNT_TOKEN", "SecretError", "SecretStore"]

# Where Kubernetes projects the pod's service-account token.
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
_MAX_SECRET_BYTES = 64 * 1024


class SecretError(Exception):
    """A secret is missing or unreadable; the message names it, never its value."""


class SecretStore:
    """Reads ``<directory>/<name>``, cached until the file's mtime or size changes."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self._dir = Path(directory) if directory else None
        self._cache: dict[str, tuple[tuple[int, int], str]] = {}

    def path(self, name: str) -> Path:
        """The file (or, for mTLS, directory) holding secret ``name``."""
        if self._dir is None:
            raise SecretError(f"secret {name!r}: no secrets directory is configured (mcp.secrets_dir)")
        if not name or "/" in name or name.startswith("."):
            raise SecretError(f"secret {name!r}: not a plain secret name")
        return self._dir / name

    def read(self, name: str) -> str:
        """The secret's text with surrounding whitespace removed."""
        return self.read_file(self.path(name), name)

    def read_file(self, path: Path, label: str) -> str:
        try:
            st = path.stat()
        except OSError:
            raise SecretError(f"secret {label!r} not found") from None
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(str(path))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        if st.st_size > _MAX_SECRET_BYTES:
            raise SecretError(f"secret {label!r} is larger than {_MAX_SECRET_BYTES} bytes")
        try:
            value = path.read_text().strip()
        except (OSError, UnicodeDecodeError):
            raise SecretError(f"secret {label!r} cannot be read") from None
        if not value:
            raise SecretError(f"secret {label!r} is empty")
        self._cache[str(path)] = (stamp, value)
        return value
