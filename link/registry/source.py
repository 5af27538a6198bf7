"""Where the registry's resources come from.

A source is a Component: ``start()`` begins feeding the registry, ``stop()``
ends it, ``readiness()`` says whether the first full load is done. Two exist:
:class:`FileSource` here (a directory of YAML manifests, hot reloaded; the
default for local runs and the demo) and ``KubernetesSource`` in
:mod:`link.registry.kubernetes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml

from link.registry.model import RefusedManifest, ResourceError
from link.registry.registry import KINDS, ToolRegistry

__all__ = ["FileSource", "RegistrySource", "expand_env", "load_manifests"]

_log = logging.getLogger("stoa.link.registry.files")

_SUFFIXES = (".yaml", ".yml", ".json")
# ${NAME} or ${NAME:-default}; the only expansion done, so "$" alone stays literal.
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@runtime_checkable
class RegistrySource(Protocol):
    """Feeds a :class:`ToolRegistry`; has the Component lifecycle."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def readiness(self) -> tuple[bool, str]: ...


class _Unexpandable(Exception):
    def __init__(self, where: str, var: str) -> None:
        super().__init__(var)
        self.where = where
        self.var = var


def expand_env(value: Any, env: Mapping[str, str], where: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of a manifest.

    Lets a demo manifest say ``endpoint: ${DEMO_UPSTREAM}/items`` and be
    pointed at whatever upstream the demo started. An unset variable without a
    default raises :class:`ResourceError` naming the field.
    """
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            got = env.get(m.group(1))
            if got is None:
                if m.group(2) is None:
                    raise _Unexpandable(where, m.group(1))
                return m.group(2)
            return got

        try:
            return _ENV_REF.sub(sub, value)
        except _Unexpandable as exc:
            reason = f"environment variable {exc.var} is not set"
            raise ResourceError(exc.where or "manifest", reason) from None
    if isinstance(value, Mapping):
        return {k: expand_env(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load_manifests(path: Path) -> list[dict[str, Any]]:
    """Every document of one YAML/JSON file; ``kind: List`` documents are unpacked.

    Raises ``ValueError`` naming the line when the file is not valid YAML.
    """
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path.name} is not valid YAML{where}") from None
    out: list[dict[str, Any]] = []
    for doc in docs:
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(item for item in doc["items"] if isinstance(item, dict))
        elif isinstance(doc, dict):
            out.append(doc)
        else:
            raise ValueError(f"{path.name}: every document must be a mapping")
    return out


_Fingerprint = dict[str, tuple[int, int]]


class FileSource:
    """A directory (searched recursively) of Tool/ToolSet manifests, re-read when a file changes.

    Polling (stat every ``interval`` seconds) works on every filesystem,
    including Kubernetes ConfigMap mounts whose files change by symlink swap.
    A file that stops parsing keeps the resources it last gave.
    """

    name = "registry-files"

    def __init__(
        self, registry: ToolRegistry, path: str | os.PathLike[str], interval: float = 2.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._registry = registry
        self._root = Path(path)
        self._interval = interval
        self._env = env
        self._task: asyncio.Task[None] | None = None
        self._fingerprint: _Fingerprint | None = None
        self._last_good: dict[str, list[dict[str, Any]]] = {}
        self._file_errors: dict[str, str] = {}
        self._loaded = False
        self._problem = ""
        # Documents that OpenAPIImport manifests point at: watched like the manifests themselves.
        self._watched: set[str] = set()

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._poll(), name="registry-files")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def readiness(self) -> tuple[bool, str]:
        if not self._loaded:
            return False, self._problem or "not loaded yet"
        counts = self._registry.counts()
        detail = f"{counts['tools']} tools, {counts['toolsets']} toolsets, {counts['errors']} refused"
        if self._file_errors:
            detail += "; " + "; ".join(sorted(self._file_errors.values()))
        return True, detail

    def file_errors(self) -> dict[str, str]:
        """Files that could not be read or parsed -> why."""
        return dict(self._file_errors)

    # -- loading --------------------------------------------------------------
    async def reload(self, force: bool = False) -> bool:
        """Re-read the directory if anything changed; True when it was re-read."""
        fingerprint = await asyncio.to_thread(self._scan)
        if fingerprint is None:
            return False
        if not force and fingerprint == self._fingerprint:
            return False
        by_file = await asyncio.to_thread(self._read_all, sorted(fingerprint))
        self._fingerprint = fingerprint
        self._apply(by_file)
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.reload()
            except Exception:  # a bad day on the disk must not end hot reload
                _log.exception("reloading %s failed", self._root)

    def _scan(self) -> _Fingerprint | None:
        if not self._root.is_dir():
            self._problem = f"registry.path {self._root} is not a directory"
            return None
        out: _Fingerprint = {}
        for p in self._root.rglob("*"):
            # ConfigMap mounts keep the real files under "..data" directories; skip the hidden twins.
            hidden = any(part.startswith(".") for part in p.relative_to(self._root).parts)
            # Shadow mode's drafts (*.draft.yaml) are never served: only promoted copies are.
            if p.suffix not in _SUFFIXES or hidden or p.name.endswith(".draft.yaml"):
                continue
            with contextlib.suppress(OSError):
                st = p.stat()
                if p.is_file():
                    out[str(p)] = (st.st_mtime_ns, st.st_size)
        for doc in self._watched:
            st_doc = _stat(doc)
            out[f"openapi:{doc}"] = st_doc
        return out

    def _read_all(self, files: list[str]) -> dict[str, list[dict[str, Any]]]:
        env = os.environ if self._env is None else self._env
        out: dict[str, list[dict[str, Any]]] = {}
        errors: dict[str, str] = {}
        watched: set[str] = set()
        for name in files:
            if name.startswith("openapi:"):
                continue  # a watched OpenAPI document: read through the import that names it
            try:
                docs = _expand_openapi(load_manifests(Path(name)), name, watched, env)
            except (OSError, ValueError) as exc:
                why = str(exc) if isinstance(exc, ValueError) else f"{Path(name).name}: {exc.strerror}"
                errors[name] = why
                if name in self._last_good:
                    out[name] = self._last_good[name]
                continue
            out[name] = [_expanded(doc, env) for doc in docs]
        self._file_errors = errors
        self._watched = watched
        return out

    def _apply(self, by_file: dict[str, list[dict[str, Any]]]) -> None:
        for name, docs in by_file.items():
            if name not in self._file_errors:
                self._last_good[name] = docs
        for name in list(self._last_good):
            if name not in by_file:
                del self._last_good[name]
        grouped: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        for docs in by_file.values():
            for doc in docs:
                kind = doc.get("kind")
                if kind in grouped:
                    grouped[str(kind)].append(doc)
                else:
                    # apply() records the precise error for an unknown or missing kind.
                    self._registry.apply(doc)
        for kind, docs in grouped.items():
            self._registry.replace_all(kind, docs)
        self._loaded = True
        self._problem = ""
        for name, why in self._file_errors.items():
            _log.warning("registry file %s: %s", name, why)


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)  # missing now: a change all the same when it comes back
    return (st.st_mtime_ns, st.st_size)


def _expand_openapi(docs: list[dict[str, Any]], file: str, watched: set[str],
                    env: Mapping[str, str]) -> list[dict[str, Any]]:
    """OpenAPIImport manifests replaced by their Tools; OpenAPI documents themselves are data, not manifests.

    Raises ValueError (a bad file: its last good resources stay) when an import cannot be expanded.
    """
    from link.openapi import sync

    out: list[dict[str, Any]] = []
    for doc in docs:
        if sync.is_openapi_document(doc):
            continue
        if not sync.is_import(doc):
            out.append(doc)
            continue
        try:
            doc = expand_env(doc, env)
            document = sync.spec_path(doc, file)
            if document is not None:  # an inline document changes with the manifest itself
                watched.add(str(document))
            out.extend(sync.expand_import(doc, file))
        except ResourceError as exc:
            raise ValueError(f"{Path(file).name}: {exc}") from None
        except sync.ImportError_ as exc:
            raise ValueError(f"{Path(file).name}: {exc}") from None
    return out


def _expanded(doc: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The manifest with ${VAR} expanded, or a RefusedManifest carrying why it could not be."""
    try:
        out: dict[str, Any] = expand_env(doc, env)
        return out
    except ResourceError as err:
        return RefusedManifest(doc, err)
