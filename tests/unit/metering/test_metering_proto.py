"""The committed stoa_proto package matches proto/ (regenerated into a temporary directory)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_generated_code_is_current(tmp_path: Path) -> None:
    written = _generator().generate(tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in written}
    committed = {
        p.relative_to(ROOT): p.read_bytes()
        for p in (ROOT / "stoa_proto").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert set(fresh) == set(committed), "run: python scripts/gen_proto.py"
    stale = sorted(str(name) for name, data in fresh.items() if committed[name] != data)
    assert not stale, f"stale generated files {stale}; run: python scripts/gen_proto.py"


def test_messages_carry_the_contract_fields() -> None:
    from stoa_proto import ErrorSnapshot, MeteringEvent
    from tests.unit.metering.contract_fields import CONTRACT_FIELDS

    assert set(MeteringEvent.DESCRIPTOR.fields_by_name) >= CONTRACT_FIELDS
    snapshot_fields = set(ErrorSnapshot.DESCRIPTOR.fields_by_name)
    assert snapshot_fields >= CONTRACT_FIELDS
    assert {
        "error_type", "error_message", "request_path", "request_method", "response_status",
        "request", "response", "timing", "pii_found", "replay_command",
    } <= snapshot_fields
    # The shared fields keep the metering numbers, so the two messages stay aligned.
    for name in CONTRACT_FIELDS:
        assert (
            MeteringEvent.DESCRIPTOR.fields_by_name[name].number
            == ErrorSnapshot.DESCRIPTOR.fields_by_name[name].number
        ), name
