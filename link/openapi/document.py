"""Reading an OpenAPI 3.0/3.1 document: the version check, and ``$ref`` resolution into plain JSON Schema.

Only local references (``#/components/...``, any JSON pointer into the same
document) are followed: the import is offline by design. A reference that
points back into itself (a tree, a linked list) is cut at its second visit and
replaced by an open schema whose description says so; every cut is reported
in :attr:`Document.notes`, so nothing loops and nothing is dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

__all__ = ["Document", "OpenAPIError", "load_document"]

# How deep a resolved schema may nest: a bound on hostile documents, far above real ones.
MAX_DEPTH = 64
# OpenAPI 3.0 keywords that are not JSON Schema (3.1 is JSON Schema 2020-12 already).
_OAS30_ONLY = ("nullable", "discriminator", "xml", "externalDocs", "example")


class OpenAPIError(Exception):
    """The document cannot be imported; ``where`` names the place (a JSON pointer or the file)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


@dataclass(slots=True)
class Document:
    """One OpenAPI document, its version family (``3.0`` or ``3.1``) and what the import noticed."""

    data: Mapping[str, Any]
    version: str
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def pointer(self, ref: str, where: str) -> Any:
        """The value a local ``$ref`` names; raises OpenAPIError naming ``where`` when it does not exist."""
        if not ref.startswith("#"):
            raise OpenAPIError(where, f"$ref {ref!r} is not local (only '#/...' references are imported)")
        node: Any = self.data
        for raw in ref[1:].split("/")[1:] if ref not in ("#", "#/") else []:
            part = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise OpenAPIError(where, f"$ref {ref!r} points at nothing")
        return node

    def deref(self, value: Any, where: str) -> Any:
        """``value`` itself, or what its ``$ref`` chain (parameters, bodies, responses) names."""
        seen: set[str] = set()
        while isinstance(value, Mapping) and isinstance(value.get("$ref"), str):
            ref = value["$ref"]
            if ref in seen:
                raise OpenAPIError(where, f"$ref {ref!r} refers to itself")
            seen.add(ref)
            value = self.pointer(ref, where)
        return value

    def schema(self, value: Any, where: str) -> dict[str, Any]:
        """A JSON Schema (2020-12) with every ``$ref`` inlined, OpenAPI 3.0 dialect converted."""
        out = self._schema(value, where, (), 0)
        if not isinstance(out, dict):
            raise OpenAPIError(where, "expected a schema object")
        return out

    def _schema(self, value: Any, where: str, stack: tuple[str, ...], depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise OpenAPIError(where, f"schema nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, list):
            return [self._schema(v, f"{where}/{i}", stack, depth + 1) for i, v in enumerate(value)]
        if not isinstance(value, Mapping):
            return value
        ref = value.get("$ref")
        if isinstance(ref, str):
            if ref in stack:
                self.notes.append(f"{where}: recursive $ref {ref!r} cut after one level")
                return {"description": f"recursive reference to {ref} (not expanded)"}
            target = self.pointer(ref, where)
            resolved = self._schema(target, ref, (*stack, ref), depth + 1)
            siblings = {k: v for k, v in value.items() if k != "$ref"}
            if siblings and isinstance(resolved, dict):  # 3.1 allows keywords beside $ref
                resolved = {**resolved, **self._schema(siblings, where, stack, depth + 1)}
            return resolved
        out: dict[str, Any] = {}
        for key, sub in value.items():
            if key == "properties" and isinstance(sub, Mapping):
                # Property names are data, not keywords: never treat one called "$ref" as a reference.
                out[key] = {p: self._schema(s, f"{where}/properties/{p}", stack, depth + 1) for p, s in sub.items()}
            elif key in ("example", "examples", "default", "enum", "const"):
                out[key] = sub
            else:
                out[key] = self._schema(sub, f"{where}/{key}", stack, depth + 1)
        return _from_oas30(out) if self.version == "3.0" else out


def _from_oas30(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0's schema dialect -> JSON Schema 2020-12 (nullable, boolean exclusive bounds)."""
    out = {k: v for k, v in schema.items() if k not in _OAS30_ONLY}
    if "example" in schema and "examples" not in schema:
        out["examples"] = [schema["example"]]
    if schema.get("nullable") is True:
        kind = schema.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif "enum" in schema and None not in schema["enum"]:
            out["enum"] = [*schema["enum"], None]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        flag = schema.get(bound)
        if isinstance(flag, bool):
            del out[bound]
            if flag and limit in schema:
                out[bound] = out.pop(limit)
    return out


def load_document(path: str | Path) -> Document:
    """Read and check an OpenAPI 3.0/3.1 file (YAML or JSON); raises OpenAPIError naming the problem."""
    p = Path(path)
    name = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise OpenAPIError(name, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise OpenAPIError(name, "not UTF-8 text") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise OpenAPIError(f"{name}:{exc.lineno}", f"not valid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise OpenAPIError(where, "not valid YAML") from None
    except RecursionError:
        raise OpenAPIError(name, "nested too deeply") from None
    return check_document(data, name)


def check_document(data: Any, source: str = "") -> Document:
    """The version and shape checks on an already parsed document."""
    where = source or "document"
    if not isinstance(data, Mapping):
        raise OpenAPIError(where, "not an OpenAPI document (expected a mapping at the top)")
    if "swagger" in data:
        raise OpenAPIError(f"{where}#/swagger",
                           f"Swagger {data.get('swagger')} (OpenAPI 2.0) is not supported: convert it to OpenAPI 3")
    version = data.get("openapi")
    if not isinstance(version, str):
        raise OpenAPIError(f"{where}#/openapi", "missing: not an OpenAPI 3 document")
    family = ".".join(version.split(".")[:2])
    if family not in ("3.0", "3.1"):
        raise OpenAPIError(f"{where}#/openapi", f"version {version!r} is not supported (3.0 or 3.1)")
    if not isinstance(data.get("paths", {}), Mapping):
        raise OpenAPIError(f"{where}#/paths", "expected a mapping")
    info = data.get("info")
    if not isinstance(info, Mapping):
        raise OpenAPIError(f"{where}#/info", "required: a mapping with title and version")
    return Document(data=data, version=family, source=source)
