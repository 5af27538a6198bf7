"""The UAC contract for the data plane from the same OpenAPI document ("define once, expose everywhere")."""

from __future__ import annotations

import re
from typing import Any

from link.contracts.model import CLASSIFICATION_POLICIES, parse_contract
from link.openapi.document import Document, OpenAPIError
from link.openapi.tools import Operation, input_schema, tool_name

__all__ = ["build_contract"]

_CONTRACT_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIDE_EFFECTS = {"GET": "read", "HEAD": "read", "OPTIONS": "read", "DELETE": "destructive"}


def _semver(raw: Any) -> str:
    """``1.2`` -> ``1.2.0``; a version that is not numeric becomes ``0.1.0`` (the caller notes it)."""
    parts = re.findall(r"\d+", str(raw))[:3]
    return ".".join(str(int(p)) for p in [*parts, "0", "0"][:3]) if parts else "0.1.0"


def build_contract(doc: Document, ops: list[Operation], namespace: str, *, classification: str = "H",
                   publish: bool = False, name: str | None = None) -> dict[str, Any]:
    """A UAC contract manifest (checked by the platform's own rules) describing every importable operation."""
    if classification not in CLASSIFICATION_POLICIES:
        raise OpenAPIError("--classification", f"expected one of {', '.join(CLASSIFICATION_POLICIES)}")
    info = doc.data["info"]
    title = str(info.get("title") or "api")
    version = _semver(info.get("version"))
    if version.split(".") != [str(int(p)) for p in re.findall(r"\d+", str(info.get("version")))[:3]]:
        doc.notes.append(f"#/info/version: {info.get('version')!r} written as semantic version {version}")
    endpoints: list[dict[str, Any]] = []
    for op in ops:
        bad = [p for p in re.findall(r"\{([^{}]*)\}", op.path) if not _CONTRACT_PARAM.match(p)]
        if bad:
            op.notes.append(f"{op.where}: not in the contract: path parameter {bad[0]!r} is not an identifier")
            continue
        schema = input_schema(op, for_tool=False)
        if schema is None:
            continue
        side = _SIDE_EFFECTS.get(op.method, "write")
        ep: dict[str, Any] = {
            "path": op.path, "methods": [op.method], "backend_url": op.base_url,
            "operation_id": op.operation_id or op.name, "input_schema": schema,
            # No llm.tool_name: the Tool manifests written beside the contract carry the names.
            "llm": {"summary": op.summary or op.description or f"{op.method} {op.path}", "side_effects": side,
                    "safe_for_agents": side != "destructive", "requires_human_approval": side == "destructive"},
        }
        if op.output is not None:
            ep["output_schema"] = op.output
        endpoints.append(ep)
    contract_name = name or re.sub(r"-{2,}", "-", tool_name(title).replace(".", "-")).strip("-") or "api"
    manifest = {
        "apiVersion": "gostoa.dev/v1alpha1", "kind": "UniversalApiContract",
        "metadata": {"name": contract_name, "namespace": namespace},
        "spec": {
            "version": version, "display_name": title,
            "description": str(info.get("description") or title).strip(),
            "classification": classification,
            "required_policies": list(CLASSIFICATION_POLICIES[classification]),
            "status": "published" if publish else "draft",
            "endpoints": endpoints,
        },
    }
    _, problems = parse_contract(manifest)
    if problems:
        first = problems[0]
        raise OpenAPIError("contract." + ".".join(str(p) for p in first.path), first.reason)
    return manifest
