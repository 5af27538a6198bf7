"""How much masking costs the snapshot writer, against a JSON round trip of the same body.

    python bench/bench_masking.py [--seconds 1.0]

Prints microseconds per operation and the ratio to the baseline (json.loads +
json.dumps of the same body), measured in the same run. Masking runs on the
snapshot writer thread, never on the request path; the last line of each case
tells how many snapshots per second one writer thread keeps up with.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from link.events import Exchange, HttpMessage
from link.settings import SnapshotSettings
from link.snapshots import PiiMasker, SnapshotOrigin, SnapshotStore, build_snapshot

HEADERS = {"content-type": "application/json"}


def _body(pii: bool, size: int = 4096) -> bytes:
    """A JSON document of about ``size`` bytes: an order list, with or without PII in each item."""
    items: list[dict[str, Any]] = []
    while len(json.dumps({"items": items})) < size:
        i = len(items)
        item: dict[str, Any] = {"id": i, "sku": f"SKU-{i:06d}", "qty": i % 7, "price": 12.5 + i,
                                "status": "backordered"}
        if pii:
            item.update({"email": f"user{i}@example.com", "card": "4111 1111 1111 1111",
                         "iban": "DE89 3704 0044 0532 0130 00", "phone": "+33 6 12 34 56 78", "password": "x"})
        items.append(item)
    return json.dumps({"items": items}).encode()


def _us_per_call(fn: Callable[[], object], seconds: float) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            fn()
        n += 20
    return elapsed / n * 1e6


def _store_cost(docs: list[dict[str, Any]], seconds: float) -> float:
    """Microseconds per snapshot written, in batches like the writer thread's."""
    with tempfile.TemporaryDirectory() as d:
        store = SnapshotStore(Path(d) / "b.db", retention_s=86_400, max_bytes=1 << 30)
        store.open()
        batches = iter(range(1 << 30))

        def put() -> None:
            b = next(batches)
            store.put_many([dict(doc, snapshot_id=f"{b}-{k}") for k, doc in enumerate(docs)])

        try:
            return _us_per_call(put, seconds) / len(docs)
        finally:
            store.close()


def _case(label: str, body: bytes, masker: PiiMasker, seconds: float) -> None:
    row = "{:<44}{:>10.1f}{:>12.2f}"
    base = _us_per_call(lambda: json.dumps(json.loads(body)), seconds)
    print(row.format(f"json round trip ({label})", base, 1.0))
    masked = _us_per_call(lambda: masker.mask_body(body, HEADERS, False, set()), seconds)
    print(row.format(f"mask_body ({label})", masked, masked / base))
    excerpt = body[: len(body) // 2]
    cut = _us_per_call(lambda: masker.mask_body(excerpt, HEADERS, True, set()), seconds)
    print(row.format(f"mask_body, cut excerpt ({label})", cut, cut / base))
    exchange = Exchange(request_id="r", timestamp=time.time(), method="POST", path="/orders?email=a@b.io",
                        status=502, request=HttpMessage(dict(HEADERS, authorization="Bearer x"), body),
                        response=HttpMessage(dict(HEADERS), body))
    origin = SnapshotOrigin("gw", "bench", "sidecar")
    snap = _us_per_call(lambda: build_snapshot(exchange, masker, origin), seconds)
    print(row.format(f"build_snapshot, 2 bodies ({label})", snap, snap / base))
    write = _store_cost([build_snapshot(exchange, masker, origin) for _ in range(50)], seconds)
    print(row.format(f"store write per snapshot ({label})", write, write / base))
    print(f"  -> one writer thread keeps up with ~{1e6 / (snap + write):,.0f} snapshots/s")


def main() -> None:
    parser = argparse.ArgumentParser(description="Cost of PII masking for error snapshots.")
    parser.add_argument("--seconds", type=float, default=1.0, help="time spent on each measurement")
    args = parser.parse_args()
    masker = PiiMasker(SnapshotSettings().mask_keys)
    print(f"{'case':<44}{'us/op':>10}{'x baseline':>12}")
    _case("clean 4 KiB", _body(pii=False), masker, args.seconds)
    _case("PII-rich 4 KiB", _body(pii=True), masker, args.seconds)


if __name__ == "__main__":
    main()
