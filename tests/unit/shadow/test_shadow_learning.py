"""Shadow mode's learning: shapes, path templates, masking of samples, the bounded store."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from link.shadow.infer import infer_operations
from link.shadow.sample import Observation, SampleBuilder
from link.shadow.shape import Shape
from link.shadow.store import SampleStore

KEY = b"k" * 32


def _builder() -> SampleBuilder:
    return SampleBuilder("erp", "tenant-a", KEY)


def _get(path: str, **kw: object) -> Observation:
    return Observation("GET", path, dict(kw.get("headers", {})), int(kw.get("status", 200)))  # type: ignore[arg-type]


def _templates(paths: list[str]) -> set[str]:
    b = _builder()
    return {o.template for o in infer_operations(b.build(_get(p)) for p in paths)}


@pytest.mark.parametrize(("paths", "expected"), [
    ([f"/users/{i}" for i in range(10)], {"/users/{userId}"}),
    ([f"/users/{uuid.uuid4()}" for _ in range(5)], {"/users/{userId}"}),
    ([f"/reports/2026-01-{d:02d}" for d in range(1, 9)], {"/reports/{date}"}),
    ([f"/users/{i}/orders/{i * 7}" for i in range(6)], {"/users/{userId}/orders/{orderId}"}),
    # A frequent word beside ids stays a route of its own.
    ([f"/users/{i}" for i in range(6)] + ["/users/me"] * 4, {"/users/{userId}", "/users/me"}),
    # Few route words, each seen often: routes, not a parameter.
    ([f"/api/{r}" for r in ("users", "orders", "items", "products", "invoices", "customers")] * 5,
     {f"/api/{r}" for r in ("users", "orders", "items", "products", "invoices", "customers")}),
    # Many distinct words seen once each (user names): a parameter.
    ([f"/profiles/{n}" for n in ("alice", "bob", "carol", "dave", "erin", "frank", "grace")],
     {"/profiles/{profile}"}),
    (["/v2/categories/books/items/" + str(i) for i in range(5)], {"/v2/categories/books/items/{itemId}"}),
    (["/"], {"/"}),
])
def test_path_templates(paths: list[str], expected: set[str]) -> None:
    assert _templates(paths) == expected


def test_query_required_by_frequency_and_types() -> None:
    b = _builder()
    obs = [_get(f"/search?q=x&page={i}" if i % 2 else "/search?q=y&flag=true") for i in range(10)]
    (op,) = infer_operations(b.build(o) for o in obs)
    assert op.query["q"]["required"] is True
    assert op.query["page"] == {"schema": {"type": "integer"}, "required": False, "samples": 5}
    assert op.query["flag"]["schema"] == {"type": "boolean"}


def test_body_schema_merges_required_and_optional_fields() -> None:
    b = _builder()
    bodies = [{"a": 1, "b": "x", "nested": {"c": [1, 2]}}, {"a": 2.5, "nested": {"c": []}, "d": None}]
    obs = [Observation("POST", "/things", {"content-type": "application/json"}, 201,
                       request_body=json.dumps(doc).encode()) for doc in bodies]
    (op,) = infer_operations(b.build(o) for o in obs)
    schema = op.request_schema
    assert schema is not None
    assert schema["required"] == ["a", "nested"]
    assert schema["properties"]["a"]["type"] == "number"
    assert schema["properties"]["nested"]["properties"]["c"]["items"]["type"] == "integer"
    assert schema["properties"]["b"]["x-stoa-samples"] == 1


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
                    max_leaves=20))
def test_shape_round_trips_and_merges_counts(value: object) -> None:
    a = Shape.of(value)
    assert Shape.from_dict(json.loads(json.dumps(a.to_dict()))).to_dict() == a.to_dict()
    b = Shape.of(value)
    b.merge(a)
    assert b.count == 2 * a.count
    assert b.schema()["x-stoa-samples"] == 2


def test_hostile_documents_are_bounded() -> None:
    deep: object = 1
    for _ in range(200):
        deep = [deep]
    wide = {f"k{i}": i for i in range(1000)}
    assert Shape.of(deep).truncated
    shape = Shape.of(wide)
    assert shape.truncated and len(shape.properties) == 64
    b = _builder()
    sample = b.build(Observation("POST", "/x", {"content-type": "application/json"}, 200,
                                 request_body=b"[" * 100_000))
    assert sample.request_shape is None  # unparseable: no structure, no crash


# Personal data in every place a request carries it; none may survive into a sample.
PII = {
    "email": "jane.doe@example.com",
    "card": "4111111111111111",
    "iban": "DE89370400440532013000",
    "phone": "+33612345678",
}


@pytest.mark.parametrize("kind", sorted(PII))
@pytest.mark.parametrize("place", ["path", "query", "query-encoded", "body-value", "body-key", "form", "header"])
def test_no_raw_personal_value_in_a_sample(kind: str, place: str) -> None:
    value = PII[kind]
    enc = value.replace("@", "%40").replace("+", "%2B")
    headers: dict[str, str] = {}
    body = b""
    path = "/customers/1"
    if place == "path":
        path = f"/customers/{enc}"
    elif place == "query":
        path = f"/customers?who={value}"
    elif place == "query-encoded":
        path = f"/customers?who={enc}"
    elif place == "body-value":
        headers["content-type"] = "application/json"
        body = json.dumps({"contact": {"value": value, "list": [value]}}).encode()
    elif place == "body-key":
        headers["content-type"] = "application/json"
        body = json.dumps({value: 1}).encode()
    elif place == "form":
        headers["content-type"] = "application/x-www-form-urlencoded"
        body = f"who={enc}".encode()
    else:
        headers["x-contact"] = value
    sample = _builder().build(Observation("POST", path, headers, 200, request_body=body))
    stored = json.dumps(sample.to_dict())
    assert value not in stored and enc not in stored


def test_credentials_reduced_to_their_scheme() -> None:
    b = _builder()
    for headers, auth in [({"authorization": "Bearer abc.def"}, "bearer"), ({"authorization": "Basic dXNlcjpw"}, "basic"),
                          ({"x-api-key": "k-123"}, "api_key:x-api-key"), ({"cookie": "sid=1"}, "cookie"), ({}, "none")]:
        sample = b.build(_get("/x", headers=headers))
        assert sample.auth == auth
        assert all(v not in json.dumps(sample.to_dict()) for v in headers.values())


def test_store_bounds_retention_and_purge(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SampleStore(tmp_path, retention_days=31)
    store = SampleStore(tmp_path, retention_days=2, max_bytes=1 << 16, max_pending=10)
    b = _builder()
    now = 1_800_000_000.0
    for i in range(15):
        store.add(b.build(_get(f"/u/{i}"), now=now - 86_400 * (i % 5)))
    assert store.dropped == 5
    store.flush(now=now)
    days = {p.name for p in store.files()}
    # Older than 2 days: purged at flush.
    assert len(days) == 3, days
    assert all(s.ts >= now - 2 * 86_400 for s in store.samples(now=now))
    # The byte cap removes the oldest day first.
    big = SampleStore(tmp_path / "big", retention_days=30, max_bytes=1 << 16, max_pending=100_000)
    rnd = random.Random(1)
    for day in range(6):
        for i in range(400):
            big.add(b.build(_get(f"/u/{rnd.randrange(10**6)}?q={i}"), now=now - 86_400 * day))
    big.flush(now=now)
    assert sum(p.stat().st_size for p in big.files()) <= 1 << 16


def test_pseudonym_key_is_kept_private(tmp_path: Path) -> None:
    store = SampleStore(tmp_path, retention_days=1)
    key = store.pseudonym_key()
    assert store.pseudonym_key() == key
    assert (tmp_path / "pseudonym.key").stat().st_mode & 0o077 == 0
