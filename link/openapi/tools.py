"""OpenAPI operations -> Tool manifests (gostoa.dev/v1alpha1).

One Tool per operation. Arguments follow the Tool contract (CONTRACTS.md):
``{name}`` placeholders take path parameters; the other arguments go to the
query string for GET/DELETE and to the JSON body for POST/PUT/PATCH. So the
input schema holds the path parameters, the query parameters of GET/DELETE and
the fields of a JSON object body. What the Tool contract cannot carry (header
and cookie parameters, query parameters beside a body, non-object bodies,
HEAD/OPTIONS) is left out and noted; an operation that *requires* such a
thing is skipped and noted, never imported half working.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from link.openapi.document import Document, OpenAPIError
from link.registry.model import API_VERSION, ResourceError, parse_tool

__all__ = ["Operation", "Options", "build_tools", "operations", "tool_name"]

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
TOOL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_BODY_METHODS = ("POST", "PUT", "PATCH")
_SAFE = ("GET", "HEAD", "OPTIONS")
_IDEMPOTENT = ("GET", "PUT", "DELETE", "HEAD", "OPTIONS")
_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_MAX_NAME = 128


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line adds to the document."""

    namespace: str
    base_url: str | None = None
    prefix: str = ""


@dataclass(slots=True)
class Operation:
    """One operation with everything resolved: the unit both Tools and the contract are built from."""

    method: str
    path: str
    where: str  # JSON pointer of the operation, for messages
    operation_id: str
    name: str
    summary: str
    description: str
    base_url: str
    params: list[dict[str, Any]]  # resolved parameter objects (path level merged with operation level)
    body: dict[str, Any] | None  # resolved JSON schema of the request body
    body_required: bool
    output: dict[str, Any] | None
    security: list[Mapping[str, Any]]  # the requirement alternatives in force
    notes: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return self.base_url.rstrip("/") + self.path


def tool_name(raw: str, prefix: str = "") -> str:
    """A registry tool name: kebab-case of ``raw`` (camelCase split), 1-128 of a-z 0-9 - .

    Lower-case kebab is both a valid MCP tool name and a valid Kubernetes
    object name, so the same manifests load from files and from the cluster.
    """
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", raw)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1-\2", s)
    s = re.sub(r"[^a-z0-9.]+", "-", s.lower()).strip("-.")
    s = re.sub(r"-{2,}", "-", s)
    s = (prefix + s) if s else prefix + "operation"
    if len(s) > _MAX_NAME:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        s = s[: _MAX_NAME - 9].rstrip("-.") + "-" + digest
    return s


def _method_path_name(method: str, path: str) -> str:
    parts = []
    for seg in path.strip("/").split("/"):
        m = _PLACEHOLDER.fullmatch(seg)
        parts.append(f"by-{m.group(1)}" if m else seg)
    return "-".join([method.lower(), *[p for p in parts if p]])


def _server_url(doc: Document, servers: Any, where: str) -> str | None:
    if not isinstance(servers, list) or not servers:
        return None
    first = servers[0]
    if not isinstance(first, Mapping) or not isinstance(first.get("url"), str):
        raise OpenAPIError(f"{where}/servers/0/url", "required: a string")
    url: str = first["url"]
    variables = first.get("variables") or {}
    for var in _PLACEHOLDER.findall(url):
        spec = variables.get(var) if isinstance(variables, Mapping) else None
        if not isinstance(spec, Mapping) or "default" not in spec:
            raise OpenAPIError(f"{where}/servers/0/variables/{var}", "the server variable has no default")
        url = url.replace("{" + var + "}", str(spec["default"]))
    return url


def _absolute(url: str | None, where: str) -> str:
    if url is None:
        raise OpenAPIError(where, "no servers[0].url in the document: pass --base-url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OpenAPIError(where, f"server URL {url!r} is not an absolute http(s) URL: pass --base-url")
    return url


def _json_media(content: Any) -> Any:
    """The media type object for JSON in a ``content`` map (``application/json`` first, then ``*+json``)."""
    if not isinstance(content, Mapping):
        return None
    for key in sorted(content, key=lambda k: (k.split(";")[0].strip() != "application/json", k)):
        base = key.split(";")[0].strip().lower()
        if base == "application/json" or base.endswith("+json"):
            return content[key]
    return None


def _output(doc: Document, op: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    responses = op.get("responses")
    if not isinstance(responses, Mapping):
        return None
    codes = sorted((str(c) for c in responses if str(c).startswith("2")), key=lambda c: (c.upper() == "2XX", c))
    for code in codes:
        resp = doc.deref(responses[code], f"{where}/responses/{code}")
        media = _json_media(resp.get("content") if isinstance(resp, Mapping) else None)
        if isinstance(media, Mapping) and media.get("schema") is not None:
            return doc.schema(media["schema"], f"{where}/responses/{code}/content/schema")
    return None


def operations(doc: Document, options: Options) -> list[Operation]:
    """Every operation of the document, resolved, in (path, method) order, with unique tool names."""
    paths = doc.data.get("paths") or {}
    global_security = doc.data.get("security") or []
    doc_server = options.base_url or _server_url(doc, doc.data.get("servers"), "#")
    out: list[Operation] = []
    seen_ids: dict[str, str] = {}
    for path in sorted(paths):
        if not isinstance(path, str) or not path.startswith("/"):
            raise OpenAPIError(f"#/paths/{path}", "a path must start with '/'")
        pwhere = "#/paths/" + path.replace("~", "~0").replace("/", "~1")
        item = doc.deref(paths[path], pwhere)
        if not isinstance(item, Mapping):
            raise OpenAPIError(pwhere, "expected a path item mapping")
        path_server = None if options.base_url else _server_url(doc, item.get("servers"), pwhere)
        for method in HTTP_METHODS:
            op = item.get(method)
            if op is None:
                continue
            where = f"{pwhere}/{method}"
            if not isinstance(op, Mapping):
                raise OpenAPIError(where, "expected an operation mapping")
            op_id = op.get("operationId")
            if op_id is not None:
                if not isinstance(op_id, str) or not op_id:
                    raise OpenAPIError(f"{where}/operationId", "expected a non-empty string")
                if op_id in seen_ids:
                    raise OpenAPIError(f"{where}/operationId",
                                       f"duplicate operationId {op_id!r} (also {seen_ids[op_id]})")
                seen_ids[op_id] = where
            server = (None if options.base_url else _server_url(doc, op.get("servers"), where)) \
                or path_server or doc_server
            out.append(_operation(doc, options, method.upper(), path, where, item, op, server, global_security))
    _unique_names(out)
    return out


def _parameters(doc: Document, item: Mapping[str, Any], op: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for level, raw in (("", item.get("parameters")), (where, op.get("parameters"))):
        if raw is None:
            continue
        if not isinstance(raw, list):
            raise OpenAPIError(f"{level or where}/parameters", "expected a list")
        for i, p in enumerate(raw):
            pw = f"{level or where}/parameters/{i}"
            param = doc.deref(p, pw)
            if not isinstance(param, Mapping) or not isinstance(param.get("name"), str) \
                    or param.get("in") not in ("path", "query", "header", "cookie"):
                raise OpenAPIError(pw, "a parameter needs a name and in: path|query|header|cookie")
            schema_raw = param.get("schema")
            if schema_raw is None:
                media = param.get("content")
                first = next(iter(media.values()), None) if isinstance(media, Mapping) and media else None
                schema_raw = first.get("schema") if isinstance(first, Mapping) else None
            schema = doc.schema(schema_raw, f"{pw}/schema") if schema_raw is not None else {"type": "string"}
            if param.get("description") and "description" not in schema:
                schema = {**schema, "description": param["description"]}
            # An operation-level parameter overrides the path-level one of the same name and place.
            merged[(param["name"], param["in"])] = {
                "name": param["name"], "in": param["in"], "schema": schema,
                "required": bool(param.get("required")) or param["in"] == "path",
            }
    return list(merged.values())


def _operation(doc: Document, options: Options, method: str, path: str, where: str, item: Mapping[str, Any],
               op: Mapping[str, Any], server: str | None, global_security: Any) -> Operation:
    params = _parameters(doc, item, op, where)
    declared = {p["name"] for p in params if p["in"] == "path"}
    for ph in _PLACEHOLDER.findall(path):
        if ph not in declared:
            raise OpenAPIError(where, f"path parameter {{{ph}}} is not declared in parameters")
    body: dict[str, Any] | None = None
    body_required = False
    if op.get("requestBody") is not None:
        rb = doc.deref(op["requestBody"], f"{where}/requestBody")
        if isinstance(rb, Mapping):
            body_required = bool(rb.get("required"))
            media = _json_media(rb.get("content"))
            if isinstance(media, Mapping) and media.get("schema") is not None:
                body = doc.schema(media["schema"], f"{where}/requestBody/content/schema")
            elif rb.get("content"):
                body = {"x-non-json": sorted(rb["content"])}
    security = op.get("security", global_security)
    if not isinstance(security, list):
        raise OpenAPIError(f"{where}/security", "expected a list of requirements")
    summary = op["summary"] if isinstance(op.get("summary"), str) else ""
    description = op["description"] if isinstance(op.get("description"), str) else ""
    op_id = op.get("operationId") or ""
    return Operation(
        method=method, path=path, where=where, operation_id=op_id,
        name=tool_name(op_id or _method_path_name(method, path), options.prefix),
        summary=summary.strip(), description=description.strip(),
        base_url=_absolute(server, f"{where} (servers)"),
        params=params, body=body, body_required=body_required, output=_output(doc, op, where),
        security=[s for s in security if isinstance(s, Mapping)],
    )


def _unique_names(ops: list[Operation]) -> None:
    """Collisions after normalisation get -2, -3 … in (path, method) order, so re-imports are stable."""
    taken: set[str] = set()
    for op in ops:
        name, n = op.name, 1
        while name in taken:
            n += 1
            suffix = f"-{n}"
            name = op.name[: _MAX_NAME - len(suffix)] + suffix
        if name != op.name:
            op.notes.append(f"{op.where}: tool name {op.name!r} already taken, named {name!r}")
        op.name = name
        taken.add(name)


# -- input schema -------------------------------------------------------------


def _body_object(body: dict[str, Any]) -> tuple[dict[str, Any], list[str], dict[str, Any] | None]:
    """(properties, required, rest): a flat object body, or rest = the schema to keep under allOf."""
    parts = body.get("allOf") if set(body) <= {"allOf", "type", "description", "title"} else None
    if isinstance(parts, list) and all(isinstance(p, Mapping) and set(p) <= {"type", "properties", "required",
                                                                             "description", "title",
                                                                             "additionalProperties"}
                                       for p in parts):
        props: dict[str, Any] = {}
        required: list[str] = []
        for part in parts:
            props.update(part.get("properties") or {})
            required += [r for r in part.get("required") or [] if r not in required]
        return props, required, None
    if body.get("type", "object") == "object" and not any(k in body for k in ("oneOf", "anyOf", "allOf", "not")):
        return dict(body.get("properties") or {}), list(body.get("required") or []), None
    return {}, [], body


def is_object_schema(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    if kind is not None:
        return kind == "object" or (isinstance(kind, list) and "object" in kind)
    return any(k in schema for k in ("properties", "allOf", "oneOf", "anyOf"))


@dataclass(slots=True)
class _Schema:
    properties: dict[str, Any] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    all_of: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, schema: Any, required: bool, where: str) -> None:
        if name in self.properties:
            raise OpenAPIError(where, f"argument {name!r} is both a parameter and a body field")
        self.properties[name] = schema
        if required and name not in self.required:
            self.required.append(name)

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object", "properties": self.properties}
        if self.required:
            out["required"] = self.required
        if self.all_of:
            out["allOf"] = self.all_of
        return out


def input_schema(op: Operation, *, for_tool: bool) -> dict[str, Any] | None:
    """The arguments' schema; None (with a note) when a Tool cannot carry a required part of the call.

    ``for_tool=False`` is the contract's view: there query parameters beside a
    body are fine (the data plane sees the real request).
    """
    s = _Schema()
    body_method = op.method in _BODY_METHODS
    for p in op.params:
        name, place = p["name"], p["in"]
        carried = place == "path" or (place == "query" and (not body_method or not for_tool))
        if not carried:
            if p["required"]:
                op.notes.append(f"{op.where}: skipped: required {place} parameter {name!r} cannot be sent by a Tool")
                return None
            op.notes.append(f"{op.where}: optional {place} parameter {name!r} left out")
            continue
        if place == "path" and not _ARG.match(name):
            op.notes.append(f"{op.where}: skipped: path parameter {name!r} is not a valid argument name")
            return None
        s.add(name, p["schema"], p["required"], op.where)
    if op.body is not None:
        if "x-non-json" in op.body:
            if op.body_required:
                kinds = ", ".join(op.body["x-non-json"])
                op.notes.append(f"{op.where}: skipped: the request body is not JSON ({kinds})")
                return None
            op.notes.append(f"{op.where}: optional non-JSON request body left out")
        elif not body_method and for_tool:
            op.notes.append(f"{op.where}: request body of a {op.method} left out (a Tool sends none)")
        elif not is_object_schema(op.body):
            if op.body_required:
                op.notes.append(f"{op.where}: skipped: the request body is not a JSON object")
                return None
            op.notes.append(f"{op.where}: optional non-object request body left out")
        else:
            props, required, rest = _body_object(op.body)
            for name, schema in props.items():
                s.add(name, schema, op.body_required and name in required, op.where)
            if rest is not None:
                s.all_of.append(rest)
    return s.render()


# -- auth and annotations ------------------------------------------------------------


def _secret_name(scheme: str) -> str:
    return tool_name(scheme) or "api-credentials"


def auth_for(doc: Document, op: Operation) -> dict[str, Any] | None:
    """``spec.auth`` from the first security alternative a Tool can satisfy; None = anonymous."""
    if not op.security or any(not req for req in op.security):
        return None  # no requirement, or an empty alternative: anonymous access is allowed
    schemes = (doc.data.get("components") or {}).get("securitySchemes") or {}
    for req in op.security:
        if len(req) != 1:
            continue  # a Tool sends one credential
        [name] = list(req)
        raw = schemes.get(name) if isinstance(schemes, Mapping) else None
        if raw is None:
            raise OpenAPIError(f"{op.where}/security", f"security scheme {name!r} is not in components.securitySchemes")
        scheme = doc.deref(raw, f"#/components/securitySchemes/{name}")
        kind = scheme.get("type") if isinstance(scheme, Mapping) else None
        if kind == "apiKey" and scheme.get("in") == "header" and isinstance(scheme.get("name"), str):
            return {"type": "api_key", "headerName": scheme["name"], "secretRef": _secret_name(name)}
        if kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer":
            return {"type": "bearer", "secretRef": _secret_name(name)}
        if kind in ("oauth2", "openIdConnect"):
            # A token the operator provisions; token exchange needs an audience the document does not give.
            return {"type": "bearer", "secretRef": _secret_name(name)}
    op.notes.append(f"{op.where}: no security alternative a Tool can send (header API key, bearer, OAuth 2): "
                    "auth left out")
    return None


def tool_annotations(op: Operation) -> dict[str, Any]:
    ann: dict[str, Any] = {
        "readOnlyHint": op.method in _SAFE,
        "destructiveHint": op.method == "DELETE",
        "idempotentHint": op.method in _IDEMPOTENT,
        "openWorldHint": True,
    }
    if op.summary:
        ann["title"] = op.summary
    return ann


def build_tools(doc: Document, ops: list[Operation], options: Options) -> list[dict[str, Any]]:
    """The Tool manifests, each already checked by the registry's own parser."""
    out: list[dict[str, Any]] = []
    for op in ops:
        if op.method not in TOOL_METHODS:
            op.notes.append(f"{op.where}: skipped: a Tool cannot use {op.method}")
            continue
        schema = input_schema(op, for_tool=True)
        if schema is None:
            continue
        spec: dict[str, Any] = {
            "displayName": op.summary or op.operation_id or f"{op.method} {op.path}",
            "description": op.description or op.summary or f"{op.method} {op.path}",
            "endpoint": op.endpoint,
            "method": op.method,
            "inputSchema": schema,
        }
        if op.output is not None:
            if op.output.get("type", "object") == "object" and "oneOf" not in op.output and "anyOf" not in op.output:
                spec["outputSchema"] = op.output
            else:
                op.notes.append(f"{op.where}: the 2xx response is not a JSON object: no outputSchema")
        auth = auth_for(doc, op)
        if auth is not None:
            spec["auth"] = auth
        spec["annotations"] = tool_annotations(op)
        manifest = {
            "apiVersion": API_VERSION, "kind": "Tool",
            "metadata": {"name": op.name, "namespace": options.namespace},
            "spec": spec,
        }
        try:
            parse_tool(manifest)
        except ResourceError as exc:
            raise OpenAPIError(op.where, f"the Tool would be invalid: {exc}") from None
        out.append(manifest)
    return out
