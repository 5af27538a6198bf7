"""Small builders shared by the snapshot tests."""

from __future__ import annotations

import uuid
from typing import Any

from link.events import Exchange, HttpMessage


def doc(tenant: str = "acme", status: int = 502, pad: int = 0, **extra: Any) -> dict[str, Any]:
    """A minimal snapshot document (what build_snapshot produces, reduced to what the store reads)."""
    return {
        "snapshot_id": str(uuid.uuid4()),
        "tenant_id": tenant,
        "response_status": status,
        "route": "orders",
        "request_method": "GET",
        "request_path": "/orders/1",
        "error_type": "upstream_5xx",
        "trace_id": "",
        "pad": "x" * pad,
        **extra,
    }


def exchange(status: int = 502, tenant: str = "acme", body: bytes = b'{"email": "a@b.io"}') -> Exchange:
    return Exchange(
        request_id=str(uuid.uuid4()), timestamp=1_700_000_000.0, method="POST", path="/orders", status=status,
        request=HttpMessage(headers={"content-type": "application/json", "authorization": "Bearer zzzzzzzz"},
                            body=body),
        response=HttpMessage(headers={"content-type": "application/json"},
                             body=b'{"error": "upstream down"}'),
        tenant=tenant, route="orders", timing_ms={"identity": 0.1, "upstream": 12.0},
    )
