"""Writing what shadow mode learned: UAC contracts, draft Tools and OpenAPI 3.1, all marked draft.

Layout of the output directory::

    learned.json                         every operation with its evidence (what review/promote read)
    drafts/<api>.contract.draft.yaml     a UAC contract, status draft
    drafts/<api>.openapi.draft.yaml      an OpenAPI 3.1 document
    drafts/tools/<tool>.draft.yaml       one Tool manifest per operation

Files ending in ``.draft.yaml`` are skipped by the registry and contract
loaders, so nothing learned is served or enforced until ``stoa-link shadow
promote`` writes reviewed copies where the registry reads them. Every schema
part carries ``x-stoa-samples``: how many samples support it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from link.shadow.infer import Operation, PathParam

__all__ = ["DRAFT_SUFFIX", "contract_document", "openapi_document", "tool_document", "write_outputs"]

DRAFT_SUFFIX = ".draft.yaml"
LEARNED = "learned.json"
_SIDE_EFFECTS = {"GET": "read", "HEAD": "read", "OPTIONS": "none", "POST": "write", "PUT": "write",
                 "PATCH": "write", "DELETE": "destructive"}


def _kebab(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "api"


def tool_name(op: Operation) -> str:
    return op.operation_id


def input_schema(op: Operation) -> dict[str, Any]:
    """The call's arguments as one object: path parameters, query parameters, then body fields."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for p in op.path_params:
        props[p.name] = {**p.schema, "x-stoa-samples": p.samples}
        required.append(p.name)
    for name, q in op.query.items():
        props[name] = {**q["schema"], "x-stoa-samples": q["samples"]}
        if q["required"]:
            required.append(name)
    body = op.request_schema
    if body is not None and body.get("type") == "object":
        for name, prop in (body.get("properties") or {}).items():
            props.setdefault(name, prop)
        required += [n for n in body.get("required", []) if n not in required]
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def _success_schema(op: Operation) -> dict[str, Any] | None:
    for status, found in op.response_schemas.items():
        if 200 <= status < 300:
            return dict(found)
    return None


def contract_document(api: str, tenant: str, target: str, ops: list[Operation]) -> dict[str, Any]:
    samples = sum(o.samples for o in ops)
    first = min(o.first_seen for o in ops)
    last = max(o.last_seen for o in ops)
    endpoints = []
    for op in ops:
        side = _SIDE_EFFECTS.get(op.method, "write")
        ep: dict[str, Any] = {
            "path": op.template,
            "methods": [op.method],
            "backend_url": target.rstrip("/") + op.template,
            "operation_id": op.operation_id,
            "input_schema": input_schema(op),
            "llm": {"summary": f"{op.method} {op.template}", "intent": "", "tool_name": tool_name(op),
                    "side_effects": side, "safe_for_agents": side in ("none", "read"),
                    "requires_human_approval": side == "destructive"},
        }
        out = _success_schema(op)
        if out is not None:
            ep["output_schema"] = out
        endpoints.append(ep)
    return {
        "name": _kebab(api),
        "version": "0.1.0",
        "tenant_id": tenant,
        "display_name": api,
        "description": (f"Draft learned by STOA Link shadow mode from {samples} samples "
                        f"({_iso(first)} to {_iso(last)}). Review before promotion."),
        # The lowest classification; the reviewer raises it where the data is more sensitive.
        "classification": "H",
        "required_policies": ["rate-limit", "auth-jwt"],
        "status": "draft",
        "endpoints": endpoints,
    }


def tool_document(op: Operation, target: str) -> dict[str, Any]:
    side = _SIDE_EFFECTS.get(op.method, "write")
    auth = max(op.auth, key=lambda k: op.auth[k]) if op.auth else "none"
    spec: dict[str, Any] = {
        "displayName": f"{op.method} {op.template}",
        "description": f"Learned from {op.samples} samples of {op.api} ({op.confidence} confidence). Draft.",
        "endpoint": target.rstrip("/") + op.template,
        "method": op.method if op.method in ("GET", "POST", "PUT", "PATCH", "DELETE") else "POST",
        "inputSchema": input_schema(op),
        "annotations": {"title": f"{op.method} {op.template}", "readOnlyHint": side in ("none", "read"),
                        "destructiveHint": side == "destructive",
                        "idempotentHint": op.method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS"),
                        "openWorldHint": False},
    }
    if auth.startswith("api_key:"):
        spec["auth"] = {"type": "api_key", "headerName": auth.split(":", 1)[1], "secretRef": f"{_kebab(op.api)}-key"}
    elif auth == "bearer":
        spec["auth"] = {"type": "bearer", "secretRef": f"{_kebab(op.api)}-token"}
    out = _success_schema(op)
    if out is not None:
        spec["outputSchema"] = out
    return {
        "apiVersion": "gostoa.dev/v1alpha1",
        "kind": "Tool",
        "metadata": {"name": _kebab(tool_name(op)), "namespace": op.tenant,
                     "annotations": {"gostoa.dev/draft": "true", "gostoa.dev/learned-samples": str(op.samples),
                                     "gostoa.dev/learned-confidence": op.confidence}},
        "spec": spec,
    }


def _openapi_param(name: str, where: str, schema: dict[str, Any], required: bool, samples: int) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema, "x-stoa-samples": samples}


def openapi_document(api: str, target: str, ops: list[Operation]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemes: dict[str, Any] = {}
    for op in ops:
        params = [_openapi_param(p.name, "path", p.schema, True, p.samples) for p in op.path_params]
        params += [_openapi_param(n, "query", q["schema"], q["required"], q["samples"]) for n, q in op.query.items()]
        params += [_openapi_param(n, "header", h["schema"], h["required"], h["samples"]) for n, h in op.headers.items()]
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": f"{op.method} {op.template}",
            "x-stoa-samples": op.samples,
            "x-stoa-confidence": op.confidence,
            "responses": {},
        }
        if params:
            item["parameters"] = params
        if op.request_schema is not None:
            media = max(op.request_types, key=lambda k: op.request_types[k]) if op.request_types else "application/json"
            item["requestBody"] = {"required": True, "content": {media: {"schema": op.request_schema}}}
        for status, count in op.statuses.items():
            resp: dict[str, Any] = {"description": f"seen {count} times", "x-stoa-samples": count}
            schema = op.response_schemas.get(status)
            if schema is not None:
                media = (max(op.response_types, key=lambda k: op.response_types[k])
                         if op.response_types else "application/json")
                resp["content"] = {media: {"schema": schema}}
            item["responses"][str(status)] = resp
        security: list[dict[str, list[str]]] = []
        for scheme, _count in sorted(op.auth.items()):
            if scheme == "bearer":
                schemes["bearerAuth"] = {"type": "http", "scheme": "bearer"}
                security.append({"bearerAuth": []})
            elif scheme == "basic":
                schemes["basicAuth"] = {"type": "http", "scheme": "basic"}
                security.append({"basicAuth": []})
            elif scheme.startswith("api_key:"):
                header = scheme.split(":", 1)[1]
                schemes["apiKeyAuth"] = {"type": "apiKey", "in": "header", "name": header}
                security.append({"apiKeyAuth": []})
            elif scheme == "none":
                security.append({})
        if security:
            item["security"] = security
        paths.setdefault(op.template, {})[op.method.lower()] = item
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": api, "version": "0.1.0", "x-stoa-draft": True,
                 "description": "Learned by STOA Link shadow mode. Draft: review before promotion."},
        "servers": [{"url": target}],
        "paths": paths,
    }
    if schemes:
        doc["components"] = {"securitySchemes": schemes}
    return doc


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _yaml(doc: dict[str, Any], header: str) -> str:
    return f"# {header}\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def operation_record(op: Operation) -> dict[str, Any]:
    data = asdict(op)
    data["path_params"] = [asdict(p) for p in op.path_params]
    data["key"] = op.key
    data["operation_id"] = op.operation_id
    data["confidence"] = op.confidence
    data["statuses"] = {str(k): v for k, v in op.statuses.items()}
    data["response_schemas"] = {str(k): v for k, v in op.response_schemas.items()}
    return data


def operation_from_record(data: dict[str, Any]) -> Operation:
    return Operation(
        api=data["api"], tenant=data["tenant"], method=data["method"], template=data["template"],
        samples=int(data["samples"]), path_params=[PathParam(**p) for p in data["path_params"]],
        query=data["query"], headers=data["headers"], auth=data["auth"],
        statuses={int(k): v for k, v in data["statuses"].items()}, request_types=data["request_types"],
        response_types=data["response_types"], request_schema=data["request_schema"],
        response_schemas={int(k): v for k, v in data["response_schemas"].items()},
        pii_kinds=list(data.get("pii_kinds", [])), first_seen=float(data["first_seen"]),
        last_seen=float(data["last_seen"]),
    )


def write_outputs(out_dir: str | Path, ops: Iterable[Operation], targets: dict[str, str]) -> list[Path]:
    """Write every draft for the operations; ``targets`` maps API name to its base URL."""
    root = Path(out_dir)
    ops = list(ops)
    written: list[Path] = []
    by_api: dict[str, list[Operation]] = {}
    for op in ops:
        by_api.setdefault(op.api, []).append(op)
    header = "Draft learned by STOA Link shadow mode: not served or enforced until promoted."
    for api, group in by_api.items():
        target = targets.get(api, "")
        tenant = group[0].tenant
        name = _kebab(api)
        p = root / "drafts" / f"{name}.contract{DRAFT_SUFFIX}"
        _write(p, _yaml(contract_document(api, tenant, target, group), header))
        written.append(p)
        p = root / "drafts" / f"{name}.openapi{DRAFT_SUFFIX}"
        _write(p, _yaml(openapi_document(api, target, group), header))
        written.append(p)
        for op in group:
            p = root / "drafts" / "tools" / f"{name}--{_kebab(tool_name(op))}{DRAFT_SUFFIX}"
            _write(p, _yaml(tool_document(op, target), header))
            written.append(p)
    learned = {"generated_at": time.time(), "targets": targets,
               "operations": [operation_record(o) for o in ops]}
    p = root / LEARNED
    _write(p, json.dumps(learned, indent=1, sort_keys=True))
    written.append(p)
    return written
