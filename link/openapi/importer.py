"""``stoa-link import openapi SPEC --namespace TENANT --out DIR``: write Tool manifests (and a contract).

Exit codes follow ``stoa-link validate``: 0 written, 2 the document cannot be
imported (the message names the place), 1 what was written does not validate.
Notes (parts of the document a Tool cannot carry) go to stderr, one a line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from link.openapi.contract import build_contract
from link.openapi.document import Document, OpenAPIError, load_document
from link.openapi.tools import Operation, Options, build_tools, operations
from link.registry.model import _NAMESPACE

__all__ = ["Imported", "add_import_parser", "import_document", "run_import"]


@dataclass(slots=True)
class Imported:
    """What one import produced."""

    tools: list[dict[str, Any]]
    contract: dict[str, Any] | None
    notes: list[str]


def import_document(doc: Document, options: Options, *, contract: bool = False, publish: bool = False,
                    classification: str = "H") -> Imported:
    """Tools (and optionally the contract) of an already loaded document; raises OpenAPIError."""
    if not _NAMESPACE.match(options.namespace):
        raise OpenAPIError("--namespace", f"{options.namespace!r} is not a valid namespace (tenant) name")
    ops: list[Operation] = operations(doc, options)
    tools = build_tools(doc, ops, options)
    uac = build_contract(doc, ops, options.namespace, classification=classification, publish=publish) \
        if contract else None
    notes = list(dict.fromkeys([*doc.notes, *(n for op in ops for n in op.notes)]))
    # A JSON round trip unshares schemas resolved from one $ref, so YAML writes no anchors/aliases.
    return Imported(tools=json.loads(json.dumps(tools)), contract=json.loads(json.dumps(uac)), notes=notes)


def import_file(spec: str | Path, options: Options, **kw: Any) -> Imported:
    return import_document(load_document(spec), options, **kw)


def add_import_parser(sub: Any) -> None:
    imp = sub.add_parser("import", help="turn an API description into Tool manifests (and a UAC contract)")
    what = imp.add_subparsers(dest="import_kind", required=True)
    oas = what.add_parser("openapi", help="an OpenAPI 3.0/3.1 document (a local .yaml or .json file)")
    oas.add_argument("spec", metavar="SPEC")
    oas.add_argument("--namespace", required=True, metavar="TENANT", help="the tenant the Tools belong to")
    oas.add_argument("--out", required=True, metavar="DIR", help="where to write <spec>.tools.yaml")
    oas.add_argument("--base-url", metavar="URL", help="the API's URL (default: servers[0] of the document)")
    oas.add_argument("--prefix", default="", help="prepended to every tool name")
    oas.add_argument("--contract", action="store_true", help="also write <spec>.contract.yaml (a UAC contract)")
    oas.add_argument("--contract-out", metavar="DIR",
                     help="where the contract goes (default --out; the MCP registry directory serves only Tools)")
    oas.add_argument("--classification", default="H", choices=["H", "VH", "VVH"])
    oas.add_argument("--publish", action="store_true", help="contract status published instead of draft")


def run_import(args: argparse.Namespace, err: TextIO | None = None) -> int:
    stream = err if err is not None else sys.stderr
    options = Options(namespace=args.namespace, base_url=args.base_url, prefix=args.prefix)
    try:
        result = import_file(args.spec, options, contract=args.contract, publish=args.publish,
                             classification=args.classification)
    except OpenAPIError as exc:
        print(f"stoa-link import: {exc}", file=stream)
        return 2
    out = Path(args.out)
    stem = Path(args.spec).name.rsplit(".", 1)[0]
    try:
        out.mkdir(parents=True, exist_ok=True)
        tools_file = out / f"{stem}.tools.yaml"
        tools_file.write_text(yaml.safe_dump_all(result.tools, sort_keys=False, allow_unicode=True))
        written = [tools_file]
        if result.contract is not None:
            contract_dir = Path(getattr(args, "contract_out", None) or out)
            contract_dir.mkdir(parents=True, exist_ok=True)
            contract_file = contract_dir / f"{stem}.contract.yaml"
            contract_file.write_text(yaml.safe_dump(result.contract, sort_keys=False, allow_unicode=True))
            written.append(contract_file)
    except OSError as exc:
        print(f"stoa-link import: {args.out}: {exc.strerror or exc}", file=stream)
        return 2
    for note in result.notes:
        print(f"note: {note}", file=stream)
    from link.validate import validate_paths

    findings = validate_paths([str(p) for p in written])
    for finding in findings:
        print(finding, file=stream)
    print(f"wrote {len(result.tools)} tools to {tools_file}"
          + (f" and a contract to {written[1]}" if len(written) > 1 else ""), file=stream)
    return 1 if findings else 0
