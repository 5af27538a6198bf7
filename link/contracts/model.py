"""UAC — Universal API Contract: the parsed form, and the platform's compliance rules.

A contract is either a plain document (``name``, ``version``, ``endpoints`` …)
or a manifest (``apiVersion``/``kind``/``metadata``/``spec``) whose ``spec``
holds those fields (``metadata.name`` and ``metadata.namespace`` default
``name`` and ``tenant_id``). Parsing collects every problem it finds, each
naming its field path, so ``stoa-link validate`` can list them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from jsonschema import exceptions as js_exceptions
from jsonschema import validators as js_validators

__all__ = [
    "CLASSIFICATION_POLICIES",
    "CONTRACT_KINDS",
    "Contract",
    "Endpoint",
    "LlmHints",
    "Problem",
    "is_contract_document",
    "parse_contract",
]

# Platform rule: each classification requires these policies (each level adds to the one below).
CLASSIFICATION_POLICIES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "H": ("rate-limit", "auth-jwt"),
    "VH": ("rate-limit", "auth-jwt", "mtls", "audit-logging"),
    "VVH": ("rate-limit", "auth-jwt", "mtls", "audit-logging", "data-encryption", "geo-restriction"),
})
CONTRACT_KINDS = ("UniversalApiContract", "UAC", "Contract", "ApiContract")
STATUSES = ("draft", "published", "deprecated")
SIDE_EFFECTS = ("none", "read", "write", "destructive")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

_KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_PARAM = re.compile(r"\{([^{}]*)\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a contract: where (field path) and why."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class LlmHints:
    summary: str = ""
    intent: str = ""
    tool_name: str = ""
    side_effects: str = "read"
    safe_for_agents: bool = True
    requires_human_approval: bool = False
    examples: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str
    methods: tuple[str, ...]
    backend_url: str = ""
    operation_id: str = ""
    input_schema: Mapping[str, Any] | None = None
    output_schema: Mapping[str, Any] | None = None
    llm: LlmHints | None = None

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(_PARAM.findall(self.path))


@dataclass(frozen=True, slots=True)
class Contract:
    name: str
    version: str
    tenant_id: str
    classification: str
    endpoints: tuple[Endpoint, ...]
    display_name: str = ""
    description: str = ""
    required_policies: tuple[str, ...] = ()
    status: str = "draft"
    file: str = ""
    # Where the contract's fields sit in the document (() for plain, ("spec",) for manifests).
    base: Path = field(default=())


def is_contract_document(doc: Any) -> bool:
    """Whether a YAML/JSON document is meant as a UAC contract."""
    if not isinstance(doc, Mapping):
        return False
    if "kind" in doc:
        return doc.get("kind") in CONTRACT_KINDS
    return "endpoints" in doc or ("classification" in doc and "name" in doc)


class _Reader:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.problems: list[Problem] = []

    def bad(self, path: Path, reason: str) -> None:
        self.problems.append(Problem((*self.base, *path), reason))

    def string(self, doc: Mapping[str, Any], key: str, path: Path = (), required: bool = False) -> str:
        value = doc.get(key)
        if value is None or value == "":
            if required:
                self.bad((*path, key), "required")
            return ""
        if not isinstance(value, str):
            self.bad((*path, key), f"expected a string, got {type(value).__name__}")
            return ""
        return value

    def boolean(self, doc: Mapping[str, Any], key: str, path: Path, default: bool) -> bool:
        value = doc.get(key, default)
        if not isinstance(value, bool):
            self.bad((*path, key), f"expected true or false, got {value!r}")
            return default
        return value

    def schema(self, doc: Mapping[str, Any], key: str, path: Path) -> Mapping[str, Any] | None:
        value = doc.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.bad((*path, key), "expected a JSON Schema object")
            return None
        cls = js_validators.validator_for(value, default=js_validators.Draft202012Validator)
        try:
            cls.check_schema(value)
        except js_exceptions.SchemaError as exc:
            self.bad((*path, key, *exc.path), f"not a valid JSON Schema: {exc.message}")
            return None
        return value


def _llm(r: _Reader, raw: Any, path: Path) -> LlmHints | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        r.bad(path, "expected a mapping")
        return None
    side = r.string(raw, "side_effects", path) or "read"
    if side not in SIDE_EFFECTS:
        r.bad((*path, "side_effects"), f"expected one of {', '.join(SIDE_EFFECTS)}, got {side!r}")
    examples = raw.get("examples") or []
    if not isinstance(examples, list):
        r.bad((*path, "examples"), "expected a list")
        examples = []
    hints = LlmHints(
        summary=r.string(raw, "summary", path),
        intent=r.string(raw, "intent", path),
        tool_name=r.string(raw, "tool_name", path),
        side_effects=side,
        safe_for_agents=r.boolean(raw, "safe_for_agents", path, True),
        requires_human_approval=r.boolean(raw, "requires_human_approval", path, False),
        examples=tuple(examples),
    )
    if hints.side_effects == "destructive" and not hints.requires_human_approval:
        r.bad((*path, "requires_human_approval"), "a destructive endpoint requires human approval")
    return hints


def _endpoint(r: _Reader, raw: Any, path: Path) -> Endpoint | None:
    if not isinstance(raw, Mapping):
        r.bad(path, "expected a mapping")
        return None
    ep_path = r.string(raw, "path", path, required=True)
    if ep_path and not ep_path.startswith("/"):
        r.bad((*path, "path"), "must start with '/'")
    for param in _PARAM.findall(ep_path):
        if not _IDENT.match(param):
            r.bad((*path, "path"), f"{{{param}}} is not a valid parameter name")
    if ep_path.count("{") != ep_path.count("}"):
        r.bad((*path, "path"), "unbalanced '{' or '}'")
    methods_raw = raw.get("methods", raw.get("method"))
    if isinstance(methods_raw, str):
        methods_raw = [methods_raw]
    methods: list[str] = []
    if not isinstance(methods_raw, list) or not methods_raw:
        r.bad((*path, "methods"), "required: a list of HTTP methods")
    else:
        for i, m in enumerate(methods_raw):
            if not isinstance(m, str) or m.upper() not in METHODS:
                r.bad((*path, "methods", i), f"expected one of {', '.join(METHODS)}, got {m!r}")
            else:
                methods.append(m.upper())
    backend = r.string(raw, "backend_url", path)
    if backend and not re.match(r"^https?://[^/\s]+", backend):
        r.bad((*path, "backend_url"), f"expected an http(s) URL, got {backend!r}")
    input_schema = r.schema(raw, "input_schema", path)
    if input_schema is not None:
        props = input_schema.get("properties")
        for param in _PARAM.findall(ep_path):
            if isinstance(props, Mapping) and param not in props:
                r.bad((*path, "input_schema", "properties"), f"path parameter {{{param}}} is not a property")
    return Endpoint(
        path=ep_path,
        methods=tuple(methods),
        backend_url=backend,
        operation_id=r.string(raw, "operation_id", path),
        input_schema=input_schema,
        output_schema=r.schema(raw, "output_schema", path),
        llm=_llm(r, raw.get("llm"), (*path, "llm")),
    )


def parse_contract(doc: Mapping[str, Any], file: str = "") -> tuple[Contract | None, list[Problem]]:
    """Parse one contract document and check the platform's rules; returns (contract, problems)."""
    base: Path = ()
    body: Mapping[str, Any] = doc
    defaults: dict[str, str] = {}
    if "kind" in doc:
        spec = doc.get("spec")
        if not isinstance(spec, Mapping):
            return None, [Problem(("spec",), "required: a mapping with the contract")]
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
        assert isinstance(meta, Mapping)
        defaults = {k: v for k, v in (("name", meta.get("name")), ("tenant_id", meta.get("namespace")))
                    if isinstance(v, str)}
        base, body = ("spec",), spec
    r = _Reader(base)
    merged = {**defaults, **body}
    name = r.string(merged, "name", required=True)
    if name and not _KEBAB.match(name):
        r.bad(("name",), f"{name!r} is not kebab-case")
    version = r.string(merged, "version", required=True)
    if version and not _SEMVER.match(version):
        r.bad(("version",), f"{version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    tenant = r.string(merged, "tenant_id", required=True)
    classification = r.string(merged, "classification", required=True)
    if classification and classification not in CLASSIFICATION_POLICIES:
        r.bad(("classification",), f"expected one of H, VH, VVH, got {classification!r}")
    status = r.string(merged, "status") or "draft"
    if status not in STATUSES:
        r.bad(("status",), f"expected one of {', '.join(STATUSES)}, got {status!r}")
    policies_raw = merged.get("required_policies") or []
    policies: list[str] = []
    if not isinstance(policies_raw, list) or not all(isinstance(p, str) for p in policies_raw):
        r.bad(("required_policies",), "expected a list of policy names")
    else:
        policies = list(policies_raw)
    missing = [p for p in CLASSIFICATION_POLICIES.get(classification, ()) if p not in policies]
    if missing:
        r.bad(("required_policies",), f"classification {classification} requires {', '.join(missing)}")
    endpoints: list[Endpoint] = []
    raw_endpoints = merged.get("endpoints")
    if raw_endpoints is None:
        raw_endpoints = []
    if not isinstance(raw_endpoints, list):
        r.bad(("endpoints",), "expected a list")
        raw_endpoints = []
    for i, raw in enumerate(raw_endpoints):
        ep = _endpoint(r, raw, ("endpoints", i))
        if ep is not None:
            endpoints.append(ep)
    if status == "published":
        if not raw_endpoints:
            r.bad(("endpoints",), "a published contract has at least one endpoint")
        for i, ep in enumerate(endpoints):
            if not ep.backend_url:
                r.bad(("endpoints", i, "backend_url"), "missing backend: a published endpoint needs a URL")
    seen_tools: dict[str, int] = {}
    seen_routes: set[tuple[str, str]] = set()
    for i, ep in enumerate(endpoints):
        if ep.llm is not None and ep.llm.tool_name:
            if ep.llm.tool_name in seen_tools:
                first = seen_tools[ep.llm.tool_name]
                r.bad(("endpoints", i, "llm", "tool_name"),
                      f"duplicate tool name {ep.llm.tool_name!r} (also endpoints[{first}])")
            seen_tools.setdefault(ep.llm.tool_name, i)
        for m in ep.methods:
            if (m, ep.path) in seen_routes:
                r.bad(("endpoints", i), f"{m} {ep.path} is declared twice")
            seen_routes.add((m, ep.path))
    if r.problems:
        return None, r.problems
    return Contract(
        name=name, version=version, tenant_id=tenant, classification=classification,
        endpoints=tuple(endpoints), display_name=r.string(merged, "display_name"),
        description=r.string(merged, "description"), required_policies=tuple(policies),
        status=status, file=file, base=base,
    ), []
