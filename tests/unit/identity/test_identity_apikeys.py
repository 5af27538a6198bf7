"""API keys: hashes only, file or Secret directory, rotation without restart."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import yaml

from link.identity.apikeys import ApiKeyStore, hash_api_key
from link.model import CredentialKind, RouteMatch
from tests.unit.identity.support import PhaseFactory, ctx_for

KEY_A, KEY_B = "sk-acme-0123456789", "sk-globex-9876543210"


def entry(consumer: str, tenant: str, scopes: object = None) -> dict[str, object]:
    e: dict[str, object] = {"consumer": consumer, "tenant": tenant}
    if scopes is not None:
        e["scopes"] = scopes
    return e


def write_keys(path: Path, mapping: dict[str, dict[str, object]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(mapping))
    os.replace(tmp, path)  # atomic, like a config-management tool would


def test_file_maps_hashes_to_consumer_and_tenant(tmp_path: Path) -> None:
    f = tmp_path / "keys.yaml"
    write_keys(
        f,
        {
            hash_api_key(KEY_A): entry("billing-app", "acme", ["invoices:read"]),
            hash_api_key(KEY_B).upper(): entry("crm", "globex", "a b"),
        },
    )
    store = ApiKeyStore(str(f))
    a = store.lookup(KEY_A)
    assert a is not None and (a.kind, a.consumer, a.subject, a.tenant, a.scopes) == (
        CredentialKind.API_KEY,
        "billing-app",
        "billing-app",
        "acme",
        {"invoices:read"},
    )
    b = store.lookup(KEY_B)
    assert b is not None and b.scopes == {"a", "b"}
    assert store.lookup("sk-unknown") is None and store.lookup("") is None
    assert store.lookup(hash_api_key(KEY_A)) is None  # the stored hash is not itself a key
    assert store.readiness() == (True, "2 API keys")


def test_json_file_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "keys.json"
    f.write_text(json.dumps({hash_api_key(KEY_A): entry("billing-app", "acme")}))
    assert ApiKeyStore(str(f)).lookup(KEY_A) is not None


@pytest.mark.parametrize(
    "doc, complaint",
    [
        ({KEY_A: entry("a", "t")}, "not a SHA-256 hex digest"),
        ({hash_api_key(KEY_A): entry("", "t")}, "consumer is required"),
        ({hash_api_key(KEY_A): {"consumer": "a"}}, "tenant is required"),
        ({hash_api_key(KEY_A): entry("a", "t", 5)}, "scopes must be"),
        ({hash_api_key(KEY_A): {**entry("a", "t"), "key": KEY_A}}, "unknown fields"),
        (["a list"], "expected a mapping"),
    ],
)
def test_bad_file_is_refused_with_a_clear_message(tmp_path: Path, doc: object, complaint: str) -> None:
    f = tmp_path / "keys.yaml"
    f.write_text(yaml.safe_dump(doc))
    store = ApiKeyStore(str(f))
    ready, detail = store.readiness()
    assert ready is False and complaint in detail
    assert KEY_A not in detail  # a raw key put in the file by mistake is not echoed


def test_missing_file_is_not_ready(tmp_path: Path) -> None:
    ready, detail = ApiKeyStore(str(tmp_path / "absent.yaml")).readiness()
    assert ready is False and "not loaded" in detail


def test_rotation_and_a_broken_edit_keep_the_last_good_keys(tmp_path: Path) -> None:
    f = tmp_path / "keys.yaml"
    write_keys(f, {hash_api_key(KEY_A): entry("billing-app", "acme")})
    store = ApiKeyStore(str(f))
    assert store.reload_if_changed() is False  # unchanged content: nothing to do

    write_keys(f, {hash_api_key(KEY_B): entry("crm", "globex")})  # rotate: A revoked, B issued
    assert store.reload_if_changed() is True
    assert store.lookup(KEY_A) is None and store.lookup(KEY_B) is not None

    f.write_text("{broken: [")
    assert store.reload_if_changed() is False
    assert store.lookup(KEY_B) is not None
    ready, detail = store.readiness()
    assert ready is True and "last reload failed" in detail


def make_secret_dir(root: Path, version: str, files: dict[str, dict[str, dict[str, object]]]) -> None:
    """The layout kubelet gives a mounted Secret: files are links into ..data, swapped atomically."""
    data = root / f"..{version}"
    data.mkdir()
    for name, mapping in files.items():
        (data / name).write_text(yaml.safe_dump(mapping))
    link = root / "..data_tmp"
    link.symlink_to(data.name)
    os.replace(link, root / "..data")
    for name in files:
        if not (root / name).is_symlink():
            (root / name).symlink_to(f"..data/{name}")


def test_secret_directory_is_read_and_rotated(tmp_path: Path) -> None:
    make_secret_dir(
        tmp_path,
        "v1",
        {
            "acme.yaml": {hash_api_key(KEY_A): entry("billing-app", "acme")},
            "globex.yaml": {hash_api_key(KEY_B): entry("crm", "globex")},
        },
    )
    store = ApiKeyStore(str(tmp_path))
    assert store.lookup(KEY_A) is not None and store.lookup(KEY_B) is not None
    make_secret_dir(
        tmp_path, "v2", {"acme.yaml": {}, "globex.yaml": {hash_api_key(KEY_B): entry("crm", "globex")}}
    )
    assert store.reload_if_changed() is True
    assert store.lookup(KEY_A) is None and store.lookup(KEY_B) is not None


def test_the_same_hash_in_two_files_is_refused(tmp_path: Path) -> None:
    make_secret_dir(
        tmp_path,
        "v1",
        {"a.yaml": {hash_api_key(KEY_A): entry("x", "t")}, "b.yaml": {hash_api_key(KEY_A): entry("y", "u")}},
    )
    ready, detail = ApiKeyStore(str(tmp_path)).readiness()
    assert ready is False and "defined twice" in detail


async def test_phase_accepts_keys_and_picks_up_revocation_without_restart(
    tmp_path: Path, make_phase: PhaseFactory
) -> None:
    f = tmp_path / "keys.yaml"
    write_keys(f, {hash_api_key(KEY_A): entry("billing-app", "acme", ["invoices:read"])})
    phase = make_phase(issuers=[], api_keys_file=str(f), api_keys_reload_s=0.01, api_key_header="X-Key")
    await phase.start()
    try:
        ctx = ctx_for({"x-key": KEY_A})
        assert await phase(ctx) is None
        assert (ctx.principal.kind, ctx.principal.consumer, ctx.principal.tenant) == (
            CredentialKind.API_KEY,
            "billing-app",
            "acme",
        )
        write_keys(f, {hash_api_key(KEY_B): entry("crm", "globex")})
        for _ in range(300):
            if phase.authenticator.api_keys is not None and phase.authenticator.api_keys.lookup(KEY_B):
                break
            await asyncio.sleep(0.01)
        refused = await phase(ctx_for({"x-key": KEY_A}))
        assert refused is not None and (refused.http_status, refused.reason) == (401, "invalid_api_key")
        assert 'error="invalid_token"' in refused.response_headers["www-authenticate"]
        assert await phase(ctx_for({"x-key": KEY_B})) is None
        # Route-level credentials: a JWT-only route does not take API keys.
        jwt_only = RouteMatch(name="r", credentials=(CredentialKind.JWT,))
        refused = await phase(ctx_for({"x-key": KEY_B}, route=jwt_only))
        assert refused is not None and refused.reason == "missing_credentials"
    finally:
        await phase.stop()
