"""``kind: OpenAPIImport``: a registry entry that points at an OpenAPI document and stands for its Tools.

The files registry expands it when it reads the manifest, and watches the
document like a manifest: when the document changes, the Tools are rebuilt,
so operations added or removed there appear or disappear here (ADR 0016).

```yaml
apiVersion: gostoa.dev/v1alpha1
kind: OpenAPIImport
metadata: {name: billing, namespace: tenant-acme}
spec:
  openapi: {path: specs/billing.yaml}   # relative to this manifest's directory, or absolute
  baseUrl: https://billing.internal      # optional, default servers[0]
  prefix: billing-                       # optional
```

The document may instead travel inside the entry, ``spec.openapi.document``
(the document as a mapping, or its YAML/JSON text): the only form a cluster
entry takes, since Link reads no file a Kubernetes object names (ADR 0020).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from link.openapi.document import Document, OpenAPIError, check_document, load_document
from link.openapi.importer import import_document
from link.openapi.tools import Options
from link.registry.model import API_VERSION

__all__ = ["KIND", "ImportError_", "expand_import", "is_import", "is_openapi_document", "spec_path"]

KIND = "OpenAPIImport"


class ImportError_(ValueError):  # a ValueError: file sources treat it as a bad file
    """An OpenAPIImport that cannot be expanded: ``field`` of the entry and ``reason``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.field, _, self.reason = message.partition(": ")


def is_import(doc: Any) -> bool:
    return isinstance(doc, Mapping) and doc.get("kind") == KIND


def is_openapi_document(doc: Any) -> bool:
    """An OpenAPI (or Swagger) document lying in a registry directory: data for an import, not a manifest."""
    return isinstance(doc, Mapping) and "kind" not in doc and ("openapi" in doc or "swagger" in doc)


def _field(doc: Mapping[str, Any], *path: str) -> Any:
    node: Any = doc
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def spec_path(doc: Mapping[str, Any], manifest_file: str | Path | None) -> Path | None:
    """Where the document of an import lies, None when it is inline; raises ImportError_ naming the field.

    ``manifest_file`` is None for an entry that comes from no file (a cluster's): it may not name one.
    """
    if doc.get("apiVersion") != API_VERSION:
        raise ImportError_(f"apiVersion: expected {API_VERSION}, got {doc.get('apiVersion')!r}")
    raw = _field(doc, "spec", "openapi", "path")
    inline = _field(doc, "spec", "openapi", "document")
    if raw is not None and inline is not None:
        raise ImportError_("spec.openapi: give path or document, not both")
    if inline is not None:
        return None
    if manifest_file is None:
        raise ImportError_("spec.openapi.document: required: the OpenAPI document itself (an entry in "
                           "a cluster cannot name a file of the Link pod)")
    if not isinstance(raw, str) or not raw:
        raise ImportError_("spec.openapi.path: required: the OpenAPI document's file")
    path = Path(raw)
    return path if path.is_absolute() else Path(manifest_file).parent / path


def _inline_document(doc: Mapping[str, Any]) -> Document:
    """``spec.openapi.document``: the document as a mapping, or its YAML/JSON text."""
    where = "spec.openapi.document"
    data = _field(doc, "spec", "openapi", "document")
    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)  # JSON is YAML too
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark is not None else ""
            raise ImportError_(f"{where}: not valid YAML or JSON{line}") from None
        except RecursionError:
            raise ImportError_(f"{where}: nested too deeply") from None
    try:
        return check_document(data, where)
    except OpenAPIError as exc:
        raise ImportError_(f"{where}: {exc}") from None


def expand_import(doc: Mapping[str, Any], manifest_file: str | Path | None) -> list[dict[str, Any]]:
    """The Tool manifests an import stands for; raises ImportError_ with a readable reason.

    ``manifest_file`` is the file the entry was read from (a ``path`` is relative to it), None for an
    entry from a cluster, which must carry its document inline.
    """
    namespace = _field(doc, "metadata", "namespace")
    if not isinstance(namespace, str) or not namespace:
        raise ImportError_("metadata.namespace: required (the tenant of the Tools)")
    spec = doc.get("spec") if isinstance(doc.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    base_url, prefix = spec.get("baseUrl"), spec.get("prefix", "")
    if base_url is not None and not isinstance(base_url, str):
        raise ImportError_("spec.baseUrl: expected a string")
    if not isinstance(prefix, str):
        raise ImportError_("spec.prefix: expected a string")
    path = spec_path(doc, manifest_file)
    options = Options(namespace=namespace, base_url=base_url, prefix=prefix)
    if path is None:
        document = _inline_document(doc)
        try:
            return import_document(document, options).tools
        except OpenAPIError as exc:
            raise ImportError_(f"spec.openapi.document: {exc}") from None
    try:
        result = import_document(load_document(path), options)
    except OpenAPIError as exc:
        raise ImportError_(f"spec.openapi.path: {exc}") from None
    return result.tools
