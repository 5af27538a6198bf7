"""Checking one request against one contract endpoint.

The endpoint's ``input_schema`` describes the call's arguments the way a Tool's
does: path parameters, query parameters and the JSON body's fields together in
one object. Path and query values arrive as text and are converted to the type
the schema declares (``integer``, ``number``, ``boolean``) before validation.
When the body was not forwarded (Envoy sent headers only) the fields it would
carry are not required: the check covers what Link has.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from jsonschema import FormatChecker
from jsonschema import validators as js_validators
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from link import bodyjson, jsonsafe
from link.contracts.fastcheck import Check, compile_check
from link.contracts.model import Contract, Endpoint
from link.model import Request
from link.routes import compile_template

__all__ = ["CompiledEndpoint", "Violation"]

_INT = re.compile(r"^-?\d+$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
               type(None): "null"}


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a request does not meet its contract: HTTP status, field and reason."""

    status: int
    field: str
    reason: str
    kind: str  # invalid_params | invalid_body | body_too_large | unknown_endpoint | method_not_allowed

    @property
    def message(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _declared_type(schema: Mapping[str, Any] | None, name: str) -> Any:
    if not schema:
        return None
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return None
    prop = props.get(name)
    return prop.get("type") if isinstance(prop, Mapping) else None


def _coerce(text: str, declared: Any) -> Any:
    types = declared if isinstance(declared, list) else [declared]
    if "integer" in types and _INT.match(text):
        return int(text)
    if "number" in types:
        try:
            return float(text) if not _INT.match(text) else int(text)
        except ValueError:
            pass
    if "boolean" in types and text in ("true", "false"):
        return text == "true"
    return text


def _field_of(error: ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = [r for r in error.validator_value if r not in error.instance]
        if missing:
            return f"{path}.{missing[0]}" if path else str(missing[0])
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        props = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        extra = [k for k in error.instance if k not in props]
        if extra:
            return f"{path}.{extra[0]}" if path else str(extra[0])
    return path or "(arguments)"


def _reason_of(error: ValidationError) -> str:
    if error.validator == "required":
        return "is required"
    if error.validator == "type":
        return f"expected {error.validator_value}, got {_json_type(error.instance)}"
    if error.validator == "additionalProperties":
        return "is not allowed"
    if error.validator == "enum":
        return f"must be one of {json.dumps(error.validator_value)[:120]}"
    return str(error.message)[:200]


class CompiledEndpoint:
    """One contract endpoint with its path regex and pre-built validators."""

    def __init__(self, contract: Contract, endpoint: Endpoint) -> None:
        self.contract = contract
        self.endpoint = endpoint
        self.pattern = compile_template(endpoint.path)
        self.methods = frozenset(endpoint.methods)
        self.literal_segments = sum(1 for s in endpoint.path.split("/") if s and "{" not in s)
        schema = dict(endpoint.input_schema) if endpoint.input_schema is not None else None
        self._full: Validator | None = None
        self._partial: Validator | None = None
        # A compiled check of the whole schema for the common case (link.contracts.fastcheck): a
        # valid body passes without jsonschema; anything else is left to jsonschema to explain.
        self._fast: Check | None = None
        if schema is not None:
            cls = js_validators.validator_for(schema, default=js_validators.Draft202012Validator)
            self._full = cls(schema, format_checker=FormatChecker())
            relaxed = {k: v for k, v in schema.items() if k not in ("required", "dependentRequired",
                                                                    "minProperties")}
            self._partial = cls(relaxed, format_checker=FormatChecker())
            self._fast = compile_check(schema, cls.__name__)
        self.description = self._describe()

    def _describe(self) -> dict[str, Any]:
        c, ep = self.contract, self.endpoint
        llm = ep.llm
        return {
            "name": c.name,
            "version": c.version,
            "tenant_id": c.tenant_id,
            "classification": c.classification,
            "status": c.status,
            "required_policies": list(c.required_policies),
            "endpoint": {
                "path": ep.path,
                "methods": list(ep.methods),
                "operation_id": ep.operation_id,
                "backend_url": ep.backend_url,
                "side_effects": llm.side_effects if llm else None,
                "tool_name": llm.tool_name if llm else None,
                "safe_for_agents": llm.safe_for_agents if llm else None,
                "requires_human_approval": llm.requires_human_approval if llm else None,
            },
        }

    def match_path(self, path: str) -> dict[str, str] | None:
        m = self.pattern.match(path)
        return {k: unquote(v) for k, v in m.groupdict().items()} if m else None

    def validate(self, request: Request, params: Mapping[str, str], max_body_bytes: int) -> tuple[
            Violation | None, str]:
        """(violation or None, what was checked: "full" or "partial" — the body was not available)."""
        schema = self.endpoint.input_schema
        declared_length = request.headers.get("content-length", "")
        length = int(declared_length) if declared_length.isdigit() else None
        body = request.body
        size = len(body) if body is not None else 0
        if size > max_body_bytes or (length is not None and length > max_body_bytes):
            return Violation(413, "body", f"larger than {max_body_bytes} bytes", "body_too_large"), "full"

        args: dict[str, Any] = {}
        body_fields: set[str] = set()
        body_known = True
        expects_body = request.method.upper() in _BODY_METHODS
        if body is None or request.body_truncated:
            has_body = (length or 0) > 0 or "transfer-encoding" in request.headers or request.body_truncated
            body_known = not has_body
        elif body:
            ctype = request.headers.get("content-type", "")
            if "json" not in ctype:
                return Violation(400, "body", f"expected application/json, got {ctype or 'no content type'}",
                                 "invalid_body"), "full"
            try:
                parsed = bodyjson.strict(request, body)  # the policy's parse too (size bounded above)
            except jsonsafe.JsonRefused as exc:
                reason = "not valid JSON" if exc.reason == "invalid_json" else str(exc)
                return Violation(400, "body", reason, "invalid_body"), "full"
            if not isinstance(parsed, dict):
                return Violation(422, "body", f"expected a JSON object, got {_json_type(parsed)}",
                                 "invalid_body"), "full"
            args.update(parsed)
            body_fields = set(parsed)
        if request.query:
            for key, values in parse_qs(request.query, keep_blank_values=True).items():
                declared = _declared_type(schema, key)
                if declared == "array":
                    args[key] = [_coerce(v, _item_type(schema, key)) for v in values]
                else:
                    items = [_coerce(v, declared) for v in values]
                    args[key] = items[0] if len(items) == 1 else items
        for key, value in params.items():
            args[key] = _coerce(value, _declared_type(schema, key))

        validator = self._full if body_known else self._partial
        if validator is None:
            return None, "full" if body_known else "partial"
        if body_known and self._fast is not None and self._fast(args):
            return None, "full"
        error = best_match(validator.iter_errors(args))
        checked = "full" if body_known else "partial"
        if error is None:
            return None, checked
        field = _field_of(error)
        top = field.split(".", 1)[0].split("[", 1)[0]
        in_body = top in body_fields or (error.validator == "required" and expects_body and top not in params)
        if in_body:
            return Violation(422, field, _reason_of(error), "invalid_body"), checked
        return Violation(400, field, _reason_of(error), "invalid_params"), checked


def _item_type(schema: Mapping[str, Any] | None, name: str) -> Any:
    props = schema.get("properties") if schema else None
    prop = props.get(name) if isinstance(props, Mapping) else None
    items = prop.get("items") if isinstance(prop, Mapping) else None
    return items.get("type") if isinstance(items, Mapping) else None
