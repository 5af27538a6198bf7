"""API keys: stored only as SHA-256 hashes, each mapped to a consumer and a tenant.

The source is a YAML/JSON file, or a directory such as a mounted Kubernetes
Secret (every visible file is one such document; Kubernetes' ``..data``
links are skipped). The mapping looks like::

    # sha256(key) in hex -> who presents it
    9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08:
      consumer: billing-app
      tenant: acme
      scopes: [invoices:read]      # or "invoices:read invoices:write"
      subject: billing-app         # optional, defaults to the consumer

A background task calls :meth:`ApiKeyStore.reload_if_changed`; a broken edit is
logged and counted and the previous keys stay in force.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from link.identity.metrics import API_KEY_RELOADS, API_KEYS
from link.model import CredentialKind, Principal

__all__ = ["ApiKeyError", "ApiKeyStore", "hash_api_key", "parse_api_keys"]

_log = logging.getLogger("stoa.link.identity")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_KEY_CHARS = 1024
_MAX_FILE_BYTES = 8 << 20


class ApiKeyError(ValueError):
    """An API key document is wrong; the message says where."""


def hash_api_key(raw: str) -> str:
    """What the key file stores for a key: its SHA-256 in lower-case hex."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _scopes(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return frozenset(value)
    raise ApiKeyError(f"{where}: scopes must be a list of strings or a space-separated string")


def parse_api_keys(doc: object, source: str) -> dict[str, Principal]:
    """``{hash: Principal}`` from one document; :class:`ApiKeyError` naming the bad entry."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ApiKeyError(f"{source}: expected a mapping of sha256 hex -> {{consumer, tenant, scopes}}")
    out: dict[str, Principal] = {}
    for raw_hash, entry in doc.items():
        digest = str(raw_hash).strip().lower()
        where = f"{source}: entry {digest[:12]}…"
        if not _HEX64.match(digest):
            raise ApiKeyError(f"{source}: {str(raw_hash)[:16]!r} is not a SHA-256 hex digest "
                              "(store hashes, never keys)")
        if not isinstance(entry, dict):
            raise ApiKeyError(f"{where}: expected a mapping with consumer and tenant")
        unknown = set(entry) - {"consumer", "tenant", "scopes", "subject"}
        if unknown:
            raise ApiKeyError(f"{where}: unknown fields {sorted(unknown)}")
        consumer, tenant = entry.get("consumer"), entry.get("tenant")
        if not isinstance(consumer, str) or not consumer:
            raise ApiKeyError(f"{where}: consumer is required")
        if not isinstance(tenant, str) or not tenant:
            raise ApiKeyError(f"{where}: tenant is required")
        subject = entry.get("subject", consumer)
        if not isinstance(subject, str) or not subject:
            raise ApiKeyError(f"{where}: subject must be a non-empty string")
        out[digest] = Principal(kind=CredentialKind.API_KEY, subject=subject, consumer=consumer,
                                tenant=tenant, scopes=_scopes(entry.get("scopes"), where))
    return out


def _documents(path: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of the file, or of every visible regular file of the directory."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file())
    else:
        files = [path]
    out = []
    for f in files:
        data = f.read_bytes()
        if len(data) > _MAX_FILE_BYTES:
            raise ApiKeyError(f"{f.name}: larger than {_MAX_FILE_BYTES} bytes")
        out.append((f.name, data))
    return out


@dataclass(frozen=True, slots=True)
class _Loaded:
    fingerprint: bytes
    keys: dict[str, Principal]


class ApiKeyStore:
    """The API keys in force, reloaded when their source changes."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._loaded: _Loaded | None = None
        self.last_error = ""
        self.reload_if_changed()

    def __len__(self) -> int:
        return len(self._loaded.keys) if self._loaded else 0

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def lookup(self, raw: str) -> Principal | None:
        """The principal of a presented key, or None."""
        if self._loaded is None or not raw or len(raw) > _MAX_KEY_CHARS:
            return None
        return self._loaded.keys.get(hash_api_key(raw))

    def reload_if_changed(self) -> bool:
        """Read the source; swap the keys in when its content changed. True when it did."""
        try:
            docs = _documents(self._path)
            fingerprint = hashlib.sha256(b"\0".join(n.encode() + b"\0" + data for n, data in docs)).digest()
            if self._loaded is not None and fingerprint == self._loaded.fingerprint:
                return False
            keys: dict[str, Principal] = {}
            for name, data in docs:
                try:
                    doc = yaml.safe_load(data)  # YAML is a superset of JSON
                except yaml.YAMLError:
                    raise ApiKeyError(f"{name}: not valid YAML/JSON") from None
                for digest, principal in parse_api_keys(doc, name).items():
                    if digest in keys:
                        raise ApiKeyError(f"{name}: entry {digest[:12]}… is defined twice")
                    keys[digest] = principal
        except (OSError, ApiKeyError) as exc:
            reason = f"{type(exc).__name__}: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
            if reason != self.last_error:
                _log.error("API keys from %s not (re)loaded, previous keys stay in force: %s",
                           self._path, reason)
            self.last_error = reason
            API_KEY_RELOADS.labels("error").inc()
            return False
        self._loaded = _Loaded(fingerprint, keys)
        self.last_error = ""
        API_KEY_RELOADS.labels("ok").inc()
        API_KEYS.set(len(keys))
        _log.info("loaded %d API keys from %s", len(keys), self._path)
        return True

    def readiness(self) -> tuple[bool, str]:
        if self._loaded is None:
            return False, f"API keys not loaded: {self.last_error}"
        detail = f"{len(self._loaded.keys)} API keys"
        return True, detail + (f" (last reload failed: {self.last_error})" if self.last_error else "")
