"""``stoa-link validate PATH...``: check Tool, ToolSet and UAC manifests and Rego policies before deploying.

Prints one line per problem, ``FILE:LINE: field: reason`` (the line is that of
the field when the YAML says it), and returns 1 when there is any, 0 otherwise.
Directories are walked; ``.rego`` files are compiled together per directory
(a policy may span modules), ``.tar.gz`` files are read as OPA bundles, and
YAML/JSON documents are recognised by their ``kind`` (Tool, ToolSet, a UAC
contract). Rules across documents: a tool name is unique per tenant (Tool
names, ToolSet aliases and contract ``llm.tool_name``), a contract name is unique.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from link.contracts.model import is_contract_document, parse_contract
from link.contracts.source import Document, DocumentError, field_path, iter_files, load_documents
from link.policy.engine import PolicyCompileError, compile_policy
from link.policy.sources import SourceError, load_sources
from link.registry.model import ResourceError, parse_tool, parse_toolset
from link.registry.source import expand_env

__all__ = ["Finding", "main", "validate_paths"]

_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_BUNDLE_SUFFIXES = (".tar.gz", ".tgz")
_FIELD_SPLIT = str.maketrans({"[": ".", "]": ""})


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
    kind = data.get("kind")
    try:
        # Manifests may use ${VAR} / ${VAR:-default} like the file source expands them at load.
        data = expand_env(data, os.environ)
        resource = parse_tool(data) if kind == "Tool" else parse_toolset(data)
    except ResourceError as exc:
        return [Finding(doc.file, doc.line_of(_path_of(exc.field)), exc.field, exc.reason)]
    out: list[Finding] = []
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


def _contract(doc: Document, names: _Names) -> list[Finding]:
    contract, problems = parse_contract(doc.data, doc.file)
    out = [Finding(doc.file, doc.line_of(p.path), field_path(p.path), p.reason) for p in problems]
    if contract is None:
        return out
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


def _manifest_file(path: str, names: _Names) -> list[Finding]:
    try:
        docs = load_documents(path)
    except DocumentError as exc:
        return [Finding(exc.file, exc.line, "", exc.reason)]
    out: list[Finding] = []
    for doc in docs:
        data = doc.data
        if not isinstance(data, dict):
            out.append(Finding(path, doc.line, "", "expected a mapping (a Tool, ToolSet or UAC contract)"))
        elif data.get("kind") in ("Tool", "ToolSet"):
            out.extend(_resource(doc, names))
        elif is_contract_document(data):
            out.extend(_contract(doc, names))
        else:
            kind = data.get("kind")
            out.append(Finding(path, doc.line_of(("kind",)), "kind",
                               f"unknown kind {kind!r}: expected Tool, ToolSet or a UAC contract"
                               if kind is not None else "not a Tool, ToolSet or UAC contract"))
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


def validate_paths(paths: Iterable[str], query: str = "data.envoy.authz.allow") -> list[Finding]:
    """Every problem found under ``paths``, sorted by file and line."""
    findings: list[Finding] = []
    names = _Names()
    rego_dirs: dict[str, list[str]] = {}
    for path in paths:
        if not os.path.exists(path):
            findings.append(Finding(path, 0, "", "does not exist"))
            continue
        for file in iter_files([path], (*_MANIFEST_SUFFIXES, ".rego", *_BUNDLE_SUFFIXES)):
            if file.endswith(".rego"):
                if not file.endswith("_test.rego"):
                    rego_dirs.setdefault(os.path.dirname(file) or ".", []).append(file)
            elif file.endswith(_BUNDLE_SUFFIXES):
                findings.extend(_policies([file], query))
            elif file.endswith(_MANIFEST_SUFFIXES):
                findings.extend(_manifest_file(file, names))
            else:
                findings.append(Finding(file, 0, "", "not a .rego, .tar.gz, .yaml, .yml or .json file"))
    for files in rego_dirs.values():
        findings.extend(_rego_group(files, query))
    return sorted(set(findings))


def _rego_group(files: list[str], query: str) -> list[Finding]:
    """Compile the modules of one directory together; the query's rule need not be there."""
    findings = _policies(files, query)
    if findings and all("no rule or package answers" in f.reason for f in findings):
        # A library directory answers no decision query by itself: compile it against its own package.
        package = _first_package(files)
        findings = _policies(files, f"data.{package}") if package else []
    return findings


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


def main(paths: list[str], out: TextIO | None = None) -> int:
    """Entry point of ``stoa-link validate``: print problems, return the exit code."""
    stream = out if out is not None else sys.stdout
    if not paths:
        print("usage: stoa-link validate PATH...", file=sys.stderr)
        return 2
    findings = validate_paths(paths)
    for finding in findings:
        print(finding, file=stream)
    return 1 if findings else 0


def _cli(argv: list[str] | None = None) -> Any:
    return main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(_cli())
