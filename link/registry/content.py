"""Resource and Prompt resources (gostoa.dev/v1alpha1): MCP resources and prompts as registry entries.

A ``Resource`` is one MCP resource (a fixed ``uri``) or a family of them (a
``uriTemplate`` with ``{var}`` segments, RFC 6570 level 1). Its content is
inline (``text`` or base64 ``blob``) or fetched from an HTTP ``endpoint`` with
the same auth/headers/timeout a Tool has; ``{var}`` placeholders of the
endpoint take the template's variables, ``{{var}}`` placeholders of inline text
too. A ``Prompt`` is a list of message templates whose ``{{arg}}``
placeholders take the prompt's arguments.

Parsing refuses unknown keys, bad URI templates and oversize inline content with
a :class:`~link.registry.model.ResourceError` naming the field; the namespace is
the tenant, as for tools.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from link.rates import parse_rate
from link.registry.model import (
    ResourceError,
    Tool,
    ToolAuth,
    _headers,
    _http_url,
    _mapping,
    _metadata,
    _string,
    _tool_auth,
    freeze,
    parse_duration,
)

__all__ = [
    "MAX_INLINE_BYTES",
    "Prompt",
    "PromptArgument",
    "Resource",
    "parse_prompt",
    "parse_resource",
    "render",
]

# Inline content lives in etcd and in every Link's memory: keep it small; bigger content has an endpoint.
MAX_INLINE_BYTES = 256 * 1024
MAX_COMPLETIONS = 100
MAX_MESSAGES = 64
MAX_ARGUMENTS = 32

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]*$")
_TEMPLATE_PART = re.compile(r"\{([^{}]*)\}")
_MUSTACHE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ROLES = ("user", "assistant")
_AUDIENCE = ("user", "assistant")

_RESOURCE_KEYS = {"uri", "uriTemplate", "title", "description", "mimeType", "text", "blob", "endpoint",
                  "auth", "headers", "timeout", "size", "annotations", "rateLimit", "completions"}
_PROMPT_KEYS = {"title", "description", "arguments", "messages", "rateLimit"}
_ARGUMENT_KEYS = {"name", "description", "required", "completions"}


@dataclass(frozen=True, slots=True)
class Resource:
    """One MCP resource (or resource template) of a tenant."""

    tenant: str
    name: str
    uri: str = ""  # a fixed URI, or ""
    uri_template: str = ""  # a URI template, or ""
    title: str = ""
    description: str = ""
    mime_type: str = ""
    text: str | None = None
    blob: bytes | None = None
    endpoint: str = ""
    auth: ToolAuth = field(default_factory=ToolAuth)
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    timeout_s: float = 30.0
    size: int | None = None
    annotations: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    rate_limit: str | None = None
    completions: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    generation: int = 0
    resource_version: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.name)

    @property
    def is_template(self) -> bool:
        return bool(self.uri_template)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(_TEMPLATE_PART.findall(self.uri_template))

    def match(self, uri: str) -> dict[str, str] | None:
        """The template variables ``uri`` binds (``{}`` for the fixed URI), or None when it is not ours."""
        if not self.is_template:
            return {} if uri == self.uri else None
        m = _template_regex(self.uri_template).fullmatch(uri)
        return dict(m.groupdict()) if m is not None else None

    def as_tool(self) -> Tool:
        """The endpoint as a GET tool, so the upstream call reuses the tools' invoker (auth, secrets, limits)."""
        return Tool(tenant=self.tenant, name=self.name, display_name=self.title or self.name,
                    description=self.description, endpoint=self.endpoint, method="GET", auth=self.auth,
                    timeout_s=self.timeout_s, headers=self.headers)


@dataclass(frozen=True, slots=True)
class PromptArgument:
    name: str
    description: str = ""
    required: bool = False
    completions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Prompt:
    """One MCP prompt of a tenant: argument declarations and message templates."""

    tenant: str
    name: str
    title: str = ""
    description: str = ""
    arguments: tuple[PromptArgument, ...] = ()
    messages: tuple[Mapping[str, Any], ...] = ()
    rate_limit: str | None = None
    generation: int = 0
    resource_version: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.name)

    def argument(self, name: str) -> PromptArgument | None:
        return next((a for a in self.arguments if a.name == name), None)


# -- helpers ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _template_regex(template: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _TEMPLATE_PART.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        # A level-1 variable is one path segment: it never spans '/', '?' or '#'.
        out.append(f"(?P<{m.group(1)}>[^/?#]+)")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


def render(value: Any, variables: Mapping[str, str]) -> Any:
    """``value`` (a JSON value) with ``{{name}}`` placeholders of its strings replaced."""
    if isinstance(value, str):
        return _MUSTACHE.sub(lambda m: variables.get(m.group(1), ""), value)
    if isinstance(value, Mapping):
        return {k: render(v, variables) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, variables) for v in value]
    return value


def _unknown_keys(spec: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(str(k) for k in spec if k not in allowed)
    if extra:
        raise ResourceError(f"{where}.{extra[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _uri(value: str, where: str) -> None:
    if len(value) > 2048 or not _URI.match(value):
        raise ResourceError(where, f"expected an absolute URI such as file:///x or app://y, got {value[:80]!r}")


def _uri_template(value: str, where: str) -> tuple[str, ...]:
    probe = _TEMPLATE_PART.sub("x", value)
    if "{" in probe or "}" in probe:
        raise ResourceError(where, "unbalanced '{' or '}'")
    names = _TEMPLATE_PART.findall(value)
    if not names:
        raise ResourceError(where, "a URI template has at least one {variable}; use uri for a fixed URI")
    for name in names:
        if not _VAR.match(name):
            raise ResourceError(where, f"{{{name}}} is not a simple variable (RFC 6570 level 1: letters, digits, _)")
    if len(set(names)) != len(names):
        raise ResourceError(where, "a variable appears twice")
    if re.search(r"\}\{", value):
        raise ResourceError(where, "two variables must be separated by a literal")
    _uri(probe, where)
    return tuple(names)


def _completions(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ResourceError(where, "expected a list of strings")
    if len(value) > MAX_COMPLETIONS:
        raise ResourceError(where, f"at most {MAX_COMPLETIONS} values")
    return tuple(value)


def _rate(value: Any, where: str) -> str | None:
    raw = _string(value, where) or None
    if raw is not None:
        try:
            parse_rate(raw)
        except ValueError as exc:
            raise ResourceError(where, str(exc)) from None
    return raw


def _resource_annotations(value: Any) -> Mapping[str, Any]:
    ann = dict(_mapping(value, "spec.annotations"))
    _unknown_keys(ann, {"audience", "priority", "lastModified"}, "spec.annotations")
    audience = ann.get("audience")
    if audience is not None and (not isinstance(audience, list) or any(a not in _AUDIENCE for a in audience)):
        raise ResourceError("spec.annotations.audience", "expected a list of user/assistant")
    priority = ann.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int | float)
                                 or not 0 <= priority <= 1):
        raise ResourceError("spec.annotations.priority", "expected a number from 0 to 1")
    if "lastModified" in ann and not isinstance(ann["lastModified"], str):
        raise ResourceError("spec.annotations.lastModified", "expected an ISO 8601 timestamp string")
    return freeze(ann)  # type: ignore[no-any-return]


# -- Resource -------------------------------------------------------------------------------


def parse_resource(manifest: Mapping[str, Any]) -> Resource:
    """Parse and check a ``kind: Resource`` manifest; raises :class:`ResourceError`."""
    if not isinstance(manifest, Mapping):
        raise ResourceError("manifest", "expected a mapping")
    name, tenant, generation, rv = _metadata(manifest, "Resource")
    if not _NAME.match(name):
        raise ResourceError("metadata.name", "a resource name is 1-128 characters of A-Z a-z 0-9 _ - .")
    spec = _mapping(manifest.get("spec"), "spec", required=True)
    _unknown_keys(spec, _RESOURCE_KEYS, "spec")
    uri = _string(spec.get("uri"), "spec.uri")
    template = _string(spec.get("uriTemplate"), "spec.uriTemplate")
    if bool(uri) == bool(template):
        raise ResourceError("spec.uri", "exactly one of uri or uriTemplate is required")
    variables: tuple[str, ...] = ()
    if uri:
        _uri(uri, "spec.uri")
    else:
        variables = _uri_template(template, "spec.uriTemplate")
    text = spec.get("text")
    if text is not None and not isinstance(text, str):
        raise ResourceError("spec.text", "expected a string")
    blob_raw = _string(spec.get("blob"), "spec.blob") or None
    endpoint = _string(spec.get("endpoint"), "spec.endpoint")
    sources = [k for k, v in (("text", text), ("blob", blob_raw), ("endpoint", endpoint)) if v]
    if len(sources) != 1:
        raise ResourceError("spec.text", "exactly one of text, blob or endpoint is required"
                            + (f" (got {', '.join(sources)})" if sources else ""))
    if text is not None and len(text.encode("utf-8", "replace")) > MAX_INLINE_BYTES:
        raise ResourceError("spec.text", f"inline content is limited to {MAX_INLINE_BYTES} bytes; use endpoint")
    blob: bytes | None = None
    if blob_raw is not None:
        if len(blob_raw) > MAX_INLINE_BYTES * 4 // 3 + 4:
            raise ResourceError("spec.blob", f"inline content is limited to {MAX_INLINE_BYTES} bytes; use endpoint")
        try:
            blob = base64.b64decode(blob_raw, validate=True)
        except (binascii.Error, ValueError):
            raise ResourceError("spec.blob", "expected base64") from None
    if endpoint:
        _http_url(endpoint, "spec.endpoint", allow_placeholders=True)
        for ph in _TEMPLATE_PART.findall(endpoint):
            if ph not in variables:
                raise ResourceError("spec.endpoint", f"placeholder {{{ph}}} is not a variable of the uriTemplate")
    elif spec.get("auth") is not None or spec.get("headers") is not None:
        raise ResourceError("spec.auth", "auth and headers apply to an endpoint only")
    size = spec.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ResourceError("spec.size", "expected a non-negative integer (bytes)")
    completions_raw = _mapping(spec.get("completions"), "spec.completions")
    completions: dict[str, tuple[str, ...]] = {}
    for var, values in completions_raw.items():
        if var not in variables:
            raise ResourceError(f"spec.completions.{var}", "not a variable of the uriTemplate")
        completions[var] = _completions(values, f"spec.completions.{var}")
    timeout = 30.0
    if spec.get("timeout") is not None:
        timeout = parse_duration(spec["timeout"], "spec.timeout")
    mime = _string(spec.get("mimeType"), "spec.mimeType")
    if mime and not re.match(r"^[\w.+\-]+/[\w.+\-]+(\s*;.*)?$", mime):
        raise ResourceError("spec.mimeType", f"{mime!r} is not a media type")
    return Resource(
        tenant=tenant, name=name, uri=uri, uri_template=template,
        title=_string(spec.get("title"), "spec.title"),
        description=_string(spec.get("description"), "spec.description"),
        mime_type=mime, text=text, blob=blob, endpoint=endpoint,
        auth=_tool_auth(spec.get("auth")) if endpoint else ToolAuth(),
        headers=_headers(spec.get("headers"), "spec.headers"), timeout_s=timeout,
        size=size if size is not None else (len(blob) if blob is not None else
                                            len(text.encode()) if text is not None and not template else None),
        annotations=_resource_annotations(spec.get("annotations")),
        rate_limit=_rate(spec.get("rateLimit"), "spec.rateLimit"),
        completions=MappingProxyType(completions), generation=generation, resource_version=rv,
    )


# -- Prompt ---------------------------------------------------------------------------------


def _arguments(value: Any) -> tuple[PromptArgument, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ResourceError("spec.arguments", "expected a list")
    if len(value) > MAX_ARGUMENTS:
        raise ResourceError("spec.arguments", f"at most {MAX_ARGUMENTS} arguments")
    out: list[PromptArgument] = []
    for i, item in enumerate(value):
        where = f"spec.arguments[{i}]"
        entry = _mapping(item, where, required=True)
        _unknown_keys(entry, _ARGUMENT_KEYS, where)
        name = _string(entry.get("name"), f"{where}.name", required=True)
        if not _VAR.match(name):
            raise ResourceError(f"{where}.name", "an argument name is letters, digits and _ (not first a digit)")
        if any(a.name == name for a in out):
            raise ResourceError(f"{where}.name", f"argument {name!r} is declared twice")
        required = entry.get("required", False)
        if not isinstance(required, bool):
            raise ResourceError(f"{where}.required", "expected true or false")
        out.append(PromptArgument(name=name, description=_string(entry.get("description"), f"{where}.description"),
                                  required=required, completions=_completions(entry.get("completions"),
                                                                              f"{where}.completions")))
    return tuple(out)


def _content(value: Any, where: str) -> Mapping[str, Any]:
    content = _mapping(value, where, required=True)
    kind = content.get("type")
    if kind == "text":
        _unknown_keys(content, {"type", "text"}, where)
        _string(content.get("text"), f"{where}.text", required=True)
    elif kind in ("image", "audio"):
        _unknown_keys(content, {"type", "data", "mimeType"}, where)
        data = _string(content.get("data"), f"{where}.data", required=True)
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ResourceError(f"{where}.data", "expected base64") from None
        _string(content.get("mimeType"), f"{where}.mimeType", required=True)
    elif kind == "resource":
        _unknown_keys(content, {"type", "resource"}, where)
        res = _mapping(content.get("resource"), f"{where}.resource", required=True)
        _unknown_keys(res, {"uri", "mimeType", "text", "blob"}, f"{where}.resource")
        _string(res.get("uri"), f"{where}.resource.uri", required=True)
        if not isinstance(res.get("text"), str) and not isinstance(res.get("blob"), str):
            raise ResourceError(f"{where}.resource", "text or blob is required")
    else:
        raise ResourceError(f"{where}.type", f"expected text, image, audio or resource, got {kind!r}")
    return content


def parse_prompt(manifest: Mapping[str, Any]) -> Prompt:
    """Parse and check a ``kind: Prompt`` manifest; raises :class:`ResourceError`."""
    if not isinstance(manifest, Mapping):
        raise ResourceError("manifest", "expected a mapping")
    name, tenant, generation, rv = _metadata(manifest, "Prompt")
    if not _NAME.match(name):
        raise ResourceError("metadata.name", "a prompt name is 1-128 characters of A-Z a-z 0-9 _ - .")
    spec = _mapping(manifest.get("spec"), "spec", required=True)
    _unknown_keys(spec, _PROMPT_KEYS, "spec")
    arguments = _arguments(spec.get("arguments"))
    raw = spec.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ResourceError("spec.messages", "at least one message is required")
    if len(raw) > MAX_MESSAGES:
        raise ResourceError("spec.messages", f"at most {MAX_MESSAGES} messages")
    messages: list[Mapping[str, Any]] = []
    size = 0
    declared = {a.name for a in arguments}
    for i, item in enumerate(raw):
        where = f"spec.messages[{i}]"
        msg = _mapping(item, where, required=True)
        _unknown_keys(msg, {"role", "content"}, where)
        role = msg.get("role")
        if role not in _ROLES:
            raise ResourceError(f"{where}.role", f"expected user or assistant, got {role!r}")
        content = _content(msg.get("content"), f"{where}.content")
        for text in _strings(content):
            size += len(text.encode("utf-8", "replace"))
            for used in _MUSTACHE.findall(text):
                if used not in declared:
                    raise ResourceError(f"{where}.content", f"placeholder {{{{{used}}}}} is not a declared argument")
        messages.append(freeze({"role": role, "content": dict(content)}))
    if size > MAX_INLINE_BYTES:
        raise ResourceError("spec.messages", f"messages are limited to {MAX_INLINE_BYTES} bytes")
    return Prompt(tenant=tenant, name=name, title=_string(spec.get("title"), "spec.title"),
                  description=_string(spec.get("description"), "spec.description"), arguments=arguments,
                  messages=tuple(messages), rate_limit=_rate(spec.get("rateLimit"), "spec.rateLimit"),
                  generation=generation, resource_version=rv)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []
