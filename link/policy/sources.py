"""Where policies come from: .rego files, directories (a mounted ConfigMap) and OPA bundles (.tar.gz).

A directory or a bundle may also hold base documents: ``a/b/data.json`` (or
``data.yaml``) becomes ``data.a.b``, as in OPA bundles; a ``.manifest`` gives
the revision. Loading either returns a whole :class:`PolicySource` or raises
:class:`SourceError` naming the file, so a half-read set never reaches the engine.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

__all__ = ["PolicyModule", "PolicySource", "SourceError", "bundle_bytes", "fingerprint", "load_sources"]

# Bounds for bundles: a policy bundle is small; these stop a tar bomb, not real use.
MAX_BUNDLE_BYTES = 64 << 20
MAX_BUNDLE_MEMBERS = 10_000

_DATA_FILES = ("data.json", "data.yaml", "data.yml")


class SourceError(Exception):
    """A policy source cannot be used; ``file`` and ``line`` say where (line 0 = unknown)."""

    def __init__(self, file: str, reason: str, line: int = 0) -> None:
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PolicyModule:
    """One Rego module; ``name`` is where it came from (file, or bundle:member)."""

    name: str
    source: str


@dataclass(frozen=True, slots=True)
class PolicySource:
    """Everything one load found: modules, merged base documents, a revision."""

    modules: tuple[PolicyModule, ...]
    data: dict[str, Any] = field(default_factory=dict)
    revision: str = ""


def _skip(name: str) -> bool:
    # Kubernetes ConfigMap mounts keep versions in "..2024_…" directories behind a "..data" link.
    return name.startswith("..") or (name.startswith(".") and name != ".manifest")


def _walk(root: str) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not _skip(d))
        for name in sorted(filenames):
            if not _skip(name):
                yield os.path.join(dirpath, name)


def _relevant(path: str) -> bool:
    name = os.path.basename(path)
    return (
        (name.endswith(".rego") and not name.endswith("_test.rego"))
        or name in _DATA_FILES
        or name == ".manifest"
        or name.endswith((".tar.gz", ".tgz"))
    )


def _files(paths: Sequence[str]) -> Iterator[str]:
    for path in paths:
        if os.path.isdir(path):
            yield from (f for f in _walk(path) if _relevant(f))
        else:
            yield path


def fingerprint(paths: Sequence[str]) -> tuple[tuple[str, int, int], ...]:
    """(file, mtime_ns, size) of every file a load would read; changes when any of them does."""
    out: list[tuple[str, int, int]] = []
    for path in _files(paths):
        try:
            st = os.stat(path)
        except OSError:
            out.append((path, -1, -1))
            continue
        out.append((path, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _set_data(data: dict[str, Any], parts: Sequence[str], value: Any, origin: str) -> None:
    if not parts:
        if not isinstance(value, dict):
            raise SourceError(origin, "top-level data must be an object")
        _merge(data, value, origin)
        return
    node = data
    for key in parts[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise SourceError(origin, f"data path {'/'.join(parts)} collides with a value")
        node = child
    last = parts[-1]
    if isinstance(value, dict) and isinstance(node.get(last, {}), dict):
        _merge(node.setdefault(last, {}), value, origin)
    elif last in node:
        raise SourceError(origin, f"data path {'/'.join(parts)} is defined twice")
    else:
        node[last] = value


def _merge(into: dict[str, Any], value: dict[str, Any], origin: str) -> None:
    for k, v in value.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v, origin)
        elif k in into and into[k] != v:
            raise SourceError(origin, f"data key {k!r} is defined twice")
        else:
            into[k] = v


def _parse_data(name: str, raw: bytes, origin: str) -> Any:
    try:
        text = raw.decode("utf-8")
        return json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = getattr(exc, "lineno", 0) or (mark.line + 1 if mark is not None else 0)
        raise SourceError(origin, f"not valid {'JSON' if name.endswith('.json') else 'YAML'}", line) from None


def _decode(raw: bytes, origin: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(origin, "not UTF-8 text") from None


class _Collector:
    def __init__(self) -> None:
        self.modules: list[PolicyModule] = []
        self.data: dict[str, Any] = {}
        self.revisions: list[str] = []
        self.digest = hashlib.sha256()

    def add(self, rel: PurePosixPath, raw: bytes, origin: str) -> None:
        self.digest.update(origin.encode() + b"\0" + raw)
        name = rel.name
        if name.endswith(".rego"):
            if not name.endswith("_test.rego"):
                self.modules.append(PolicyModule(origin, _decode(raw, origin)))
        elif name in _DATA_FILES:
            parts = [p for p in rel.parent.parts if p not in ("", ".", "/")]
            _set_data(self.data, parts, _parse_data(name, raw, origin), origin)
        elif name == ".manifest":
            manifest = _parse_data("manifest.json", raw, origin)
            if isinstance(manifest, dict) and manifest.get("revision"):
                self.revisions.append(str(manifest["revision"]))
        elif name in ("policy.wasm", "plan.json"):
            raise SourceError(origin, "compiled bundles (wasm, plan) are not supported; ship .rego sources")


def _read_bundle(path: str, out: _Collector) -> None:
    try:
        archive = tarfile.open(path, "r:gz")  # noqa: SIM115 - closed below
    except (OSError, tarfile.TarError) as exc:
        raise SourceError(path, f"not a readable .tar.gz bundle: {exc}") from None
    total = 0
    with archive:
        for count, member in enumerate(archive):
            if count >= MAX_BUNDLE_MEMBERS:
                raise SourceError(path, f"more than {MAX_BUNDLE_MEMBERS} files in the bundle")
            if not member.isfile():
                continue
            rel = PurePosixPath(member.name.lstrip("/"))
            if ".." in rel.parts:
                raise SourceError(path, f"member {member.name!r} escapes the bundle")
            total += member.size
            if total > MAX_BUNDLE_BYTES:
                raise SourceError(path, f"bundle larger than {MAX_BUNDLE_BYTES} bytes uncompressed")
            if not _relevant(str(rel)) and rel.name not in ("policy.wasm", "plan.json"):
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            out.add(rel, handle.read(), f"{path}:{rel}")


def _read_file(path: str, root: str | None, out: _Collector) -> None:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise SourceError(path, f"cannot read: {exc.strerror}") from None
    rel = PurePosixPath(os.path.relpath(path, root).replace(os.sep, "/")) if root else PurePosixPath(
        os.path.basename(path))
    out.add(rel, raw, path)


def load_sources(paths: Iterable[str]) -> PolicySource:
    """Read every module and data document under ``paths``; raises :class:`SourceError`."""
    paths = list(paths)
    if not paths:
        raise SourceError("policy.paths", "no policy path configured")
    out = _Collector()
    for path in paths:
        if not os.path.exists(path):
            raise SourceError(path, "does not exist")
        if os.path.isdir(path):
            for f in _walk(path):
                if f.endswith((".tar.gz", ".tgz")):
                    _read_bundle(f, out)
                elif _relevant(f):
                    _read_file(f, path, out)
        elif path.endswith((".tar.gz", ".tgz")):
            _read_bundle(path, out)
        else:
            _read_file(path, None, out)
    if not out.modules:
        raise SourceError(", ".join(paths), "no policy (.rego) found")
    revision = "+".join(out.revisions) or out.digest.hexdigest()[:12]
    return PolicySource(modules=tuple(out.modules), data=out.data, revision=revision)


def bundle_bytes(files: dict[str, str | bytes]) -> bytes:
    """A .tar.gz bundle holding ``files`` (name -> content): for tests and examples."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            raw = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()
