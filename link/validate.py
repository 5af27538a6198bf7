"""``stoa-link validate PATH...``: check everything Link loads before deploying it.

Prints one line per problem, ``FILE:LINE: field: reason`` (the line is that of
the field when the YAML says it), every problem of a file and not only the first,
and returns 1 when there is any, 0 otherwise. Directories are walked:

- ``.rego`` files are compiled together per directory (a policy may span modules),
  ``.tar.gz`` files are read as OPA bundles; the policy must answer the decision
  Link asks for: ``policy.query`` of a settings file among the inputs, else
  ``--query``, else ``data.envoy.authz.allow``;
- YAML/JSON documents are recognised by their content: Tool and ToolSet (``kind``;
  unknown ``spec`` keys are refused with the closest known one), a UAC contract,
  an API keys file (SHA-256 hex digests mapped to consumer/tenant/scopes) and
  Link's own settings (``--config``; their policy files must answer their query).

Rules across documents: a tool name is unique per tenant (Tool names, ToolSet
aliases and contract ``llm.tool_name``), a contract name is unique.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from link.contracts.compliance import policy_problems
from link.contracts.model import is_contract_document, parse_contract
from link.contracts.source import Document, DocumentError, field_path, iter_files, load_documents
from link.openapi import sync as openapi_sync
from link.policy.engine import PolicyCompileError, compile_policy
from link.policy.sources import SourceError, load_sources
from link.registry.content import parse_prompt, parse_resource
from link.registry.model import ResourceError
from link.registry.source import expand_env
from link.settings import Settings
from link.validate_resources import resource_problems
from link.validate_settings import (
    api_key_problems,
    is_api_keys_document,
    is_settings_document,
    policy_files,
    settings_problems,
)

__all__ = ["Finding", "main", "validate_paths"]

_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_BUNDLE_SUFFIXES = (".tar.gz", ".tgz")
_FIELD_SPLIT = str.maketrans({"[": ".", "]": ""})
_KINDS = "a Tool, ToolSet, Resource, Prompt, UAC contract, API keys file or Link settings file"
DEFAULT_QUERY = "data.envoy.authz.allow"
# MCP resources and prompts (link.registry.content): their parser's first problem is reported.
_CONTENT_PARSERS: dict[str, Any] = {"Resource": parse_resource, "Prompt": parse_prompt}


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """One problem: where and why."""

    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


@dataclass(slots=True)
class _Names:
    """Tool names seen per tenant, to report duplicates across files."""

    seen: dict[tuple[str, str], str] = field(default_factory=dict)
    contracts: dict[str, str] = field(default_factory=dict)

    def tool(self, tenant: str, name: str, where: str) -> str | None:
        first = self.seen.get((tenant, name))
        if first is None:
            self.seen[(tenant, name)] = where
        return first


def _path_of(dotted: str) -> tuple[str | int, ...]:
    """``spec.tools[0].alias`` -> ``("spec", "tools", 0, "alias")``."""
    parts: list[str | int] = []
    for part in dotted.translate(_FIELD_SPLIT).split("."):
        if part:
            parts.append(int(part) if part.isdigit() else part)
    return tuple(parts)


def _resource(doc: Document, names: _Names) -> list[Finding]:
    data = doc.data
    kind = str(data.get("kind"))
    # Manifests may use ${VAR} / ${VAR:-default} like the file source expands them at load.
    try:
        expanded = expand_env(data, os.environ)
        if kind in _CONTENT_PARSERS:
            _CONTENT_PARSERS[kind](expanded)
            return []
    except ResourceError as exc:
        return [Finding(doc.file, doc.line_of(_path_of(exc.field)), exc.field, exc.reason)]
    resource, problems = resource_problems(expanded, kind)
    out = [Finding(doc.file, doc.line_of(_path_of(f)), f, reason) for f, reason in problems]
    if resource is None:
        return out
    if kind == "Tool":
        first = names.tool(resource.tenant, resource.name, f"{doc.file}:{doc.line}")
        if first is not None:
            out.append(Finding(doc.file, doc.line_of(("metadata", "name")), "metadata.name",
                               f"duplicate tool name {resource.name!r} in tenant {resource.tenant} "
                               f"(also {first})"))
    else:
        for i, sel in enumerate(getattr(resource, "tools", ())):
            if sel.alias and sel.enabled:
                first = names.tool(resource.tenant, sel.alias, f"{doc.file}:{doc.line}")
                if first is not None:
                    out.append(Finding(doc.file, doc.line_of(("spec", "tools", i, "alias")),
                                       f"spec.tools[{i}].alias",
                                       f"duplicate tool name {sel.alias!r} in tenant {resource.tenant} "
                                       f"(also {first})"))
    return out


def _openapi_import(doc: Document, names: _Names) -> list[Finding]:
    """An OpenAPIImport: its document must import, and its Tools' names must not collide."""
    try:
        tools = openapi_sync.expand_import(expand_env(doc.data, os.environ), doc.file)
    except (openapi_sync.ImportError_, ResourceError) as exc:
        field_name, reason = (exc.field, exc.reason)
        return [Finding(doc.file, doc.line_of(_path_of(field_name)), field_name, reason)]
    out: list[Finding] = []
    inline = isinstance(doc.data.get("spec"), dict) and "document" in (doc.data["spec"].get("openapi") or {})
    where = "spec.openapi.document" if inline else "spec.openapi.path"
    for tool in tools:
        tenant, name = tool["metadata"]["namespace"], tool["metadata"]["name"]
        first = names.tool(tenant, name, f"{doc.file}:{doc.line}")
        if first is not None:
            out.append(Finding(doc.file, doc.line, where,
                               f"duplicate tool name {name!r} in tenant {tenant} (also {first})"))
    return out


def _api_keys(doc: Document) -> list[Finding]:
    return [Finding(doc.file, doc.line_of(path), "", reason) for path, reason in api_key_problems(doc.data, doc.file)]


def _settings(doc: Document, found: list[tuple[str, Settings]]) -> list[Finding]:
    settings, problems = settings_problems(doc.data)
    if settings is not None:
        found.append((doc.file, settings))
    return [Finding(doc.file, doc.line_of(loc), field_path(loc), reason) for loc, reason in problems]


def _contract(doc: Document, names: _Names) -> list[Finding]:
    contract, problems = parse_contract(doc.data, doc.file)
    out = [Finding(doc.file, doc.line_of(p.path), field_path(p.path), p.reason) for p in problems]
    if contract is None:
        return out
    policies_path = (*contract.base, "required_policies")
    out += [Finding(doc.file, doc.line_of(policies_path), field_path(policies_path), reason)
            for reason in policy_problems(contract)]
    name_path = (*contract.base, "name")
    first = names.contracts.get(contract.name)
    if first is not None:
        out.append(Finding(doc.file, doc.line_of(name_path), field_path(name_path),
                           f"duplicate contract name {contract.name!r} (also {first})"))
    else:
        names.contracts[contract.name] = f"{doc.file}:{doc.line}"
    for i, ep in enumerate(contract.endpoints):
        if ep.llm is None or not ep.llm.tool_name:
            continue
        tool_path = (*contract.base, "endpoints", i, "llm", "tool_name")
        first = names.tool(contract.tenant_id, ep.llm.tool_name, f"{doc.file}:{doc.line_of(tool_path)}")
        if first is not None:
            out.append(Finding(doc.file, doc.line_of(tool_path), field_path(tool_path),
                               f"duplicate tool name {ep.llm.tool_name!r} in tenant {contract.tenant_id} "
                               f"(also {first})"))
    return out


def _manifest_file(path: str, names: _Names, settings: list[tuple[str, Settings]]) -> list[Finding]:
    try:
        docs = load_documents(path)
    except DocumentError as exc:
        return [Finding(exc.file, exc.line, "", exc.reason)]
    out: list[Finding] = []
    for doc in docs:
        data = doc.data
        if data is None:
            continue  # an empty document (a trailing ---, a file of comments)
        if not isinstance(data, dict):
            out.append(Finding(path, doc.line, "", f"expected a mapping ({_KINDS})"))
        elif data.get("kind") in ("Tool", "ToolSet", *_CONTENT_PARSERS):
            out.extend(_resource(doc, names))
        elif openapi_sync.is_import(data):
            out.extend(_openapi_import(doc, names))
        elif openapi_sync.is_openapi_document(data):
            continue  # the document an OpenAPIImport points at: checked through that entry
        elif is_contract_document(data):
            out.extend(_contract(doc, names))
        elif is_api_keys_document(data):
            out.extend(_api_keys(doc))
        elif is_settings_document(data):
            out.extend(_settings(doc, settings))
        else:
            kind = data.get("kind")
            out.append(Finding(path, doc.line_of(("kind",)), "kind",
                               f"unknown kind {kind!r}: expected Tool, ToolSet, Resource or Prompt"
                               if kind is not None else f"not one of: {_KINDS}"))
    return out


def _policies(paths: Sequence[str], query: str) -> list[Finding]:
    try:
        source = load_sources(paths)
        compile_policy(source, query)
    except SourceError as exc:
        return [Finding(exc.file, exc.line, "", exc.reason)]
    except PolicyCompileError as exc:
        return [Finding(p.file, p.line, "", p.message) for p in exc.problems]
    return []


def validate_paths(paths: Iterable[str], query: str | None = None) -> list[Finding]:
    """Every problem found under ``paths``, sorted by file and line.

    The decision policies must answer: ``query`` if given, else the ``policy.query`` of the one
    settings file among the inputs, else ``data.envoy.authz.allow``.
    """
    findings: list[Finding] = []
    names = _Names()
    settings: list[tuple[str, Settings]] = []
    rego_dirs: dict[str, list[str]] = {}
    bundles: list[str] = []
    for path in paths:
        if not os.path.exists(path):
            findings.append(Finding(path, 0, "", "does not exist"))
            continue
        for file in iter_files([path], (*_MANIFEST_SUFFIXES, ".rego", *_BUNDLE_SUFFIXES)):
            if file.endswith(".rego"):
                if not file.endswith("_test.rego"):
                    rego_dirs.setdefault(os.path.dirname(file) or ".", []).append(file)
            elif file.endswith(_BUNDLE_SUFFIXES):
                bundles.append(file)
            elif file.endswith(_MANIFEST_SUFFIXES):
                findings.extend(_manifest_file(file, names, settings))
            else:
                findings.append(Finding(file, 0, "", "not a .rego, .tar.gz, .yaml, .yml or .json file"))
    queries = {s.policy.query for _, s in settings}
    asked = query or (queries.pop() if len(queries) == 1 else DEFAULT_QUERY)
    for file, s in settings:
        findings.extend(_settings_policy(file, s))
    findings.extend(f for bundle in bundles for f in _policies([bundle], asked))
    answered = False
    library_only: list[Finding] = []
    for files in rego_dirs.values():
        group, answers = _rego_group(files, asked)
        findings.extend(group)
        answered = answered or answers
        if not answers and not group:
            library_only.append(Finding(sorted(files)[0], 0, "", f"no rule answers {asked}, the decision Link "
                                        "asks for (set policy.query, or --query, if this policy answers another)"))
    if rego_dirs and not answered and not bundles and not any(s.policy.paths for _, s in settings):
        findings.extend(library_only)  # modules that answer nothing, and no policy among them that does
    return sorted(set(findings))


def _settings_policy(file: str, settings: Settings) -> list[Finding]:
    """The settings' own policy files must compile and answer the settings' query."""
    p = settings.policy
    if not p.enabled or p.engine != "embedded" or not p.paths:
        return []  # off, remote, or Link's built-in default policy
    line = 0
    try:
        docs = load_documents(file)
        line = next((d.line_of(("policy", "paths")) for d in docs if isinstance(d.data, dict)), 0)
    except DocumentError:
        pass
    out = []
    for f in _policies(policy_files(settings, file), p.query):
        if "no rule or package answers" in f.reason:
            out.append(Finding(file, line, "policy.paths",
                               f"{f.file}: no rule answers {p.query} (policy.query); "
                               "fix the package or rule name, or policy.query"))
        elif f.reason == "does not exist":
            out.append(Finding(file, line, "policy.paths", f"{f.file} does not exist"))
        else:
            out.append(f)
    return out


def _rego_group(files: list[str], query: str) -> tuple[list[Finding], bool]:
    """Compile the modules of one directory together: ``(problems, whether they answer query)``."""
    findings = _policies(files, query)
    if findings and all("no rule or package answers" in f.reason for f in findings):
        # A library directory answers no decision query by itself: compile it against its own package.
        package = _first_package(files)
        return (_policies(files, f"data.{package}") if package else []), False
    return findings, True


def _first_package(files: list[str]) -> str | None:
    for file in files:
        try:
            with open(file, encoding="utf-8") as fh:
                m = re.search(r"^\s*package\s+([A-Za-z_][\w.]*)", fh.read(), re.MULTILINE)
        except OSError:
            continue
        if m is not None:
            return m.group(1)
    return None


def main(paths: list[str], out: TextIO | None = None, query: str | None = None) -> int:
    """Entry point of ``stoa-link validate``: print problems, return the exit code."""
    stream = out if out is not None else sys.stdout
    if not paths:
        print("usage: stoa-link validate PATH...", file=sys.stderr)
        return 2
    findings = validate_paths(paths, query)
    for finding in findings:
        print(finding, file=stream)
    return 1 if findings else 0


def _cli(argv: list[str] | None = None) -> Any:
    return main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(_cli())
