"""The /admin/snapshots API through Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from link.snapshots.admin import snapshot_routes
from link.snapshots.store import SnapshotStore
from tests.unit.snapshots.support import doc

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SnapshotStore]:
    s = SnapshotStore(tmp_path / "s.db", retention_s=86_400, max_bytes=1 << 24)
    s.open()
    yield s
    s.close()


@pytest.fixture
def client(store: SnapshotStore) -> Iterator[TestClient]:
    with TestClient(Starlette(routes=snapshot_routes(store, TOKEN))) as c:
        yield c


def test_without_a_configured_token_the_api_is_disabled(store: SnapshotStore) -> None:
    with TestClient(Starlette(routes=snapshot_routes(store, None))) as c:
        for method, path in (("GET", "/admin/snapshots"), ("GET", "/admin/snapshots/x"),
                             ("DELETE", "/admin/snapshots/x")):
            r = c.request(method, path, headers=AUTH)
            assert r.status_code == 403
            assert r.json() == {"error": "admin API disabled"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}])
def test_requests_without_the_token_are_refused(client: TestClient, store: SnapshotStore,
                                                headers: dict[str, str]) -> None:
    d = doc()
    store.put_many([d])
    assert client.get("/admin/snapshots", headers=headers).status_code == 401
    r = client.delete(f"/admin/snapshots/{d['snapshot_id']}", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert store.get(d["snapshot_id"]) == d


def test_list_fetch_delete(client: TestClient, store: SnapshotStore) -> None:
    a, b, c = doc(tenant="acme", status=502), doc(tenant="acme", status=404), doc(tenant="globex", status=503)
    store.put_many([a, b, c])
    listing = client.get("/admin/snapshots", headers=AUTH).json()
    assert listing["count"] == 3
    assert {s["id"] for s in listing["snapshots"]} == {a["snapshot_id"], b["snapshot_id"], c["snapshot_id"]}
    acme_5xx = client.get("/admin/snapshots", params={"tenant": "acme", "status": "5xx"}, headers=AUTH).json()
    assert [s["id"] for s in acme_5xx["snapshots"]] == [a["snapshot_id"]]
    assert acme_5xx["snapshots"][0]["tenant_id"] == "acme"
    assert client.get("/admin/snapshots", params={"status": "404"}, headers=AUTH).json()["count"] == 1
    assert client.get("/admin/snapshots", params={"limit": "2"}, headers=AUTH).json()["count"] == 2

    got = client.get(f"/admin/snapshots/{c['snapshot_id']}", headers=AUTH)
    assert got.status_code == 200
    assert got.json() == c
    assert client.delete(f"/admin/snapshots/{c['snapshot_id']}", headers=AUTH).status_code == 204
    assert client.get(f"/admin/snapshots/{c['snapshot_id']}", headers=AUTH).status_code == 404
    assert client.delete(f"/admin/snapshots/{c['snapshot_id']}", headers=AUTH).status_code == 404
    assert client.get("/admin/snapshots", headers=AUTH).json()["count"] == 2


@pytest.mark.parametrize(("params", "message"), [
    ({"status": "abc"}, "status:"),
    ({"status": "99"}, "status:"),
    ({"limit": "0"}, "limit:"),
    ({"limit": "10000"}, "limit:"),
    ({"since": "yesterday"}, "since:"),
    ({"tenantt": "acme"}, "unknown parameter"),
])
def test_bad_parameters_get_a_clear_400(client: TestClient, params: dict[str, str], message: str) -> None:
    r = client.get("/admin/snapshots", params=params, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"].startswith(message)
