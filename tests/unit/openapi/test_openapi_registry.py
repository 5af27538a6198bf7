"""``kind: OpenAPIImport`` in the files registry: the document's operations are the tenant's Tools, kept in sync."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from link.registry import FileSource, ToolRegistry
from link.validate import validate_paths

BILLING = Path(__file__).parent / "specs" / "billing-3.0.yaml"


def touch_write(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # visible within one mtime tick


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def entry(path: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "OpenAPIImport",
            "metadata": {"name": "billing", "namespace": "tenant-acme"},
            "spec": {"openapi": {"path": path}, **spec}}


async def test_an_import_entry_becomes_tools_and_follows_its_document(tmp_path: Path) -> None:
    spec_doc = yaml.safe_load(BILLING.read_text())
    # The document lies beside the entry: it is data for the import, never refused as a manifest.
    touch_write(tmp_path / "billing.yaml", yaml.safe_dump(spec_doc))
    touch_write(tmp_path / "entry.yaml", yaml.safe_dump(entry("billing.yaml", baseUrl="${BILLING_URL}",
                                                              prefix="b-")))
    reg = ToolRegistry()
    src = FileSource(reg, tmp_path, interval=0.05, env={"BILLING_URL": "http://127.0.0.1:9/api"})
    await src.start()
    try:
        names = [t.name for t in reg.tools("tenant-acme")]
        assert names == ["b-create-invoice", "b-delete-invoices-by-invoice-id", "b-get-categories",
                         "b-get-invoice", "b-list-invoices"]
        assert reg.errors() == {} and src.file_errors() == {}
        got = reg.tool("tenant-acme", "b-get-invoice")
        assert got is not None and got.endpoint == "http://127.0.0.1:9/api/invoices/{invoiceId}"
        # An operation added and one removed in the document: the Tools follow.
        del spec_doc["paths"]["/categories"]
        spec_doc["paths"]["/refunds"] = {"post": {"operationId": "refund", "summary": "Refund",
                                                  "responses": {"200": {"description": "ok"}}}}
        touch_write(tmp_path / "billing.yaml", yaml.safe_dump(spec_doc))
        await eventually(lambda: reg.tool("tenant-acme", "b-refund") is not None)
        assert reg.tool("tenant-acme", "b-get-categories") is None
        # A document that breaks keeps the last good Tools and says why.
        spec_doc["paths"]["/refunds"]["post"]["operationId"] = "getInvoice"
        touch_write(tmp_path / "billing.yaml", yaml.safe_dump(spec_doc))
        await eventually(lambda: bool(src.file_errors()))
        assert "duplicate operationId 'getInvoice'" in next(iter(src.file_errors().values()))
        assert reg.tool("tenant-acme", "b-refund") is not None
        # Removing the entry removes its Tools.
        (tmp_path / "entry.yaml").unlink()
        await eventually(lambda: reg.tools("tenant-acme") == [])
    finally:
        await src.stop()


async def test_an_entry_whose_document_is_missing_is_a_readable_file_error(tmp_path: Path) -> None:
    touch_write(tmp_path / "entry.yaml", yaml.safe_dump(entry("nowhere.yaml")))
    reg = ToolRegistry()
    src = FileSource(reg, tmp_path, interval=0.05)
    await src.start()
    try:
        [why] = src.file_errors().values()
        assert "spec.openapi.path" in why and "cannot read" in why
        # The document appears later: its Tools come without touching the entry.
        touch_write(tmp_path / "nowhere.yaml", BILLING.read_text())
        await eventually(lambda: reg.tool("tenant-acme", "get-invoice") is not None)
    finally:
        await src.stop()


def test_validate_checks_import_entries_and_accepts_documents_beside_them(tmp_path: Path) -> None:
    (tmp_path / "billing.yaml").write_text(BILLING.read_text())
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump(entry("billing.yaml")))
    assert validate_paths([str(tmp_path)]) == []
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump(entry("missing.yaml")))
    [finding] = validate_paths([str(tmp_path)])
    assert finding.field == "spec.openapi.path" and "cannot read" in finding.reason


async def test_an_entry_may_carry_its_document_inline(tmp_path: Path) -> None:
    """The cluster's form works in files too: the Tools change with the entry itself."""
    doc = yaml.safe_load(BILLING.read_text())
    inline = {**entry("unused"), "spec": {"openapi": {"document": doc}, "prefix": "i-"}}
    touch_write(tmp_path / "entry.yaml", yaml.safe_dump(inline))
    reg = ToolRegistry()
    src = FileSource(reg, tmp_path, interval=0.05)
    await src.start()
    try:
        assert reg.tool("tenant-acme", "i-get-invoice") is not None and src.file_errors() == {}
        del doc["paths"]["/categories"]
        touch_write(tmp_path / "entry.yaml", yaml.safe_dump(inline))
        await eventually(lambda: reg.tool("tenant-acme", "i-get-categories") is None)
        # Both a path and a document: which one was meant is not guessed.
        inline["spec"]["openapi"]["path"] = "billing.yaml"
        touch_write(tmp_path / "entry.yaml", yaml.safe_dump(inline))
        await eventually(lambda: bool(src.file_errors()))
        assert "spec.openapi: give path or document, not both" in next(iter(src.file_errors().values()))
    finally:
        await src.stop()


def test_validate_takes_the_inline_form_a_cluster_uses(tmp_path: Path) -> None:
    doc = yaml.safe_load(BILLING.read_text())
    inline = {**entry("unused"), "spec": {"openapi": {"document": doc}}}
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump(inline))
    assert validate_paths([str(tmp_path)]) == []
    (tmp_path / "again.yaml").write_text(yaml.safe_dump({**inline, "metadata": {**inline["metadata"], "name": "b2"}}))
    findings = validate_paths([str(tmp_path)])
    assert findings and all(f.field == "spec.openapi.document" and "duplicate tool name" in f.reason for f in findings)
    doc["openapi"] = "2.0"
    (tmp_path / "again.yaml").unlink()
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump(inline))
    [finding] = validate_paths([str(tmp_path)])
    assert finding.field == "spec.openapi.document" and "not supported" in finding.reason
