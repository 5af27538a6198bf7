"""Human in the loop: ``stoa-link shadow review DIR`` and ``stoa-link shadow promote DIR OP… --to PATH``.

``review`` prints what was learned (operations, their fields, confidence) and
what changed since the previous review, then remembers this state as reviewed.
``promote`` writes the chosen operations as a published UAC contract and Tool
manifests into a directory the registry and the contract loader read; only
then are they served and enforced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

import yaml

from link.shadow.infer import Operation
from link.shadow.output import LEARNED, contract_document, operation_from_record, tool_document, tool_name

__all__ = ["PromoteError", "promote", "review"]

_STATE = ".review/last.json"


class PromoteError(Exception):
    """A promotion that cannot be done (unknown operation, nothing learned)."""


def _load(out_dir: Path) -> tuple[list[Operation], dict[str, str]]:
    path = out_dir / LEARNED
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise PromoteError(f"{path}: nothing learned yet ({exc.strerror})") from None
    except ValueError as exc:
        raise PromoteError(f"{path}: not valid JSON ({exc})") from None
    return [operation_from_record(o) for o in data.get("operations", [])], dict(data.get("targets", {}))


def _fields(op: Operation) -> dict[str, str]:
    """Every field of an operation as name -> type, for change detection."""
    out = {f"path.{p.name}": str(p.schema.get("type")) for p in op.path_params}
    out.update({f"query.{n}": str(q["schema"].get("type")) for n, q in op.query.items()})
    out.update({f"header.{n}": str(h["schema"].get("type")) for n, h in op.headers.items()})
    if op.request_schema:
        for n, s in (op.request_schema.get("properties") or {}).items():
            out[f"body.{n}"] = str(s.get("type"))
    for status in op.statuses:
        out[f"status.{status}"] = "seen"
    return out


def review(out_dir: str | Path, stream: TextIO, remember: bool = True) -> int:
    """Print the summary; returns the number of operations."""
    root = Path(out_dir)
    ops, _targets = _load(root)
    state_path = root / _STATE
    try:
        previous: dict[str, dict[str, str]] = json.loads(state_path.read_text())
    except (OSError, ValueError):
        previous = {}
    current = {op.key: _fields(op) for op in ops}
    print(f"{len(ops)} operations learned in {root}", file=stream)
    for op in ops:
        marker = "new" if op.key not in previous else "changed" if previous[op.key] != current[op.key] else ""
        print(f"\n{op.key}   [{op.api}] {op.samples} samples, {op.confidence} confidence"
              f"{'   (' + marker + ')' if marker else ''}", file=stream)
        print(f"  operation id: {op.operation_id}   tool: {tool_name(op)}", file=stream)
        statuses = ", ".join(f"{s} x{n}" for s, n in op.statuses.items())
        print(f"  statuses: {statuses}   auth: {', '.join(sorted(op.auth))}", file=stream)
        for p in op.path_params:
            print(f"  path  {p.name}: {_type(p.schema)} ({p.distinct} distinct values)", file=stream)
        for n, q in op.query.items():
            need = "required" if q["required"] else "optional"
            print(f"  query {n}: {_type(q['schema'])} {need} ({q['samples']}/{op.samples})", file=stream)
        if op.request_schema:
            props = op.request_schema.get("properties") or {}
            req = set(op.request_schema.get("required", []))
            for n, s in props.items():
                need = "required" if n in req else "optional"
                print(f"  body  {n}: {_type(s)} {need} ({s.get('x-stoa-samples', 0)}/{op.samples})", file=stream)
        if op.pii_kinds:
            print(f"  personal data seen (masked, never stored): {', '.join(op.pii_kinds)}", file=stream)
        if marker == "changed":
            before, now = previous[op.key], current[op.key]
            for k in sorted(set(before) | set(now)):
                if before.get(k) != now.get(k):
                    print(f"  ~ {k}: {before.get(k, '-')} -> {now.get(k, '-')}", file=stream)
    gone = sorted(set(previous) - set(current))
    for key in gone:
        print(f"\n{key}   (no longer seen)", file=stream)
    if remember:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(current, indent=1, sort_keys=True))
    return len(ops)


def _type(schema: dict[str, Any]) -> str:
    t = schema.get("type", "any")
    fmt = schema.get("format")
    return f"{t} ({fmt})" if fmt else str(t)


def promote(out_dir: str | Path, operations: list[str], to: str | Path) -> list[Path]:
    """Write the chosen operations (operation id, tool name or ``"METHOD /template"``) as served files."""
    root = Path(out_dir)
    ops, targets = _load(root)
    chosen: list[Operation] = []
    for wanted in operations:
        match = [o for o in ops if wanted in (o.operation_id, tool_name(o), o.key)]
        if not match:
            known = ", ".join(o.operation_id for o in ops) or "none"
            raise PromoteError(f"no learned operation {wanted!r} (known: {known})")
        chosen += [m for m in match if m not in chosen]
    dest = Path(to)
    written: list[Path] = []
    by_api: dict[str, list[Operation]] = {}
    for op in chosen:
        by_api.setdefault(op.api, []).append(op)
    for api, group in by_api.items():
        doc = contract_document(api, group[0].tenant, targets.get(api, ""), group)
        doc["status"] = "published"
        doc["description"] = doc["description"].replace("Review before promotion.", "Reviewed and promoted.")
        path = dest / "contracts" / f"{doc['name']}.yaml"
        _write_yaml(path, doc)
        written.append(path)
        for op in group:
            tool = tool_document(op, targets.get(api, ""))
            annotations = tool["metadata"]["annotations"]
            annotations.pop("gostoa.dev/draft", None)
            annotations["gostoa.dev/promoted-from"] = "shadow"
            path = dest / "tools" / f"{tool['metadata']['name']}.yaml"
            _write_yaml(path, tool)
            written.append(path)
    return written


def _write_yaml(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
