"""Claims -> principal, Keycloak-shaped and otherwise."""

from __future__ import annotations

from link.identity.claims import TenantMapping, principal_from_claims, roles_of, scopes_of
from link.model import CredentialKind

KEYCLOAK_ACCESS_TOKEN = {
    "iss": "https://login.example.test/realms/stoa",
    "sub": "f3b1-user",
    "azp": "billing-app",
    "scope": "openid invoices:read  profile",
    "tenant": "acme",
    "realm_access": {"roles": ["offline_access", "uma_authorization"]},
    "resource_access": {"billing-api": {"roles": ["reader"]}, "account": {"roles": ["manage-account"]}},
}


def test_keycloak_token_maps_to_principal() -> None:
    p = principal_from_claims(
        dict(KEYCLOAK_ACCESS_TOKEN),
        issuer="iss",
        token="SECRET-TOKEN",
        expires_at=5.0,
        tenants=TenantMapping(),
    )
    assert p.kind is CredentialKind.JWT
    assert (p.subject, p.consumer, p.tenant, p.issuer, p.expires_at) == (
        "f3b1-user",
        "billing-app",
        "acme",
        "iss",
        5.0,
    )
    assert p.scopes == {"openid", "invoices:read", "profile"}
    assert p.roles == {"offline_access", "uma_authorization", "billing-api:reader", "account:manage-account"}
    assert p.token == "SECRET-TOKEN" and "SECRET-TOKEN" not in repr(p)


def test_scp_list_and_string_are_read() -> None:
    assert scopes_of({"scp": ["a", "b", 3, ""]}) == {"a", "b"}
    assert scopes_of({"scp": "a b", "scope": "c"}) == {"a", "b", "c"}
    assert scopes_of({"scope": 42}) == frozenset()


def test_malformed_roles_are_ignored() -> None:
    assert roles_of({"realm_access": {"roles": "admin"}, "resource_access": {"x": ["admin"]}}) == frozenset()
    assert roles_of({"realm_access": ["admin"], "resource_access": "admin"}) == frozenset()


def test_consumer_falls_back_to_client_id_then_subject() -> None:
    m = TenantMapping()
    assert (
        principal_from_claims(
            {"client_id": "c1", "sub": "s"}, issuer="", token="", expires_at=None, tenants=m
        ).consumer
        == "c1"
    )
    p = principal_from_claims({"sub": "s"}, issuer="", token="", expires_at=None, tenants=m)
    assert (p.consumer, p.subject) == ("s", "s")
    p = principal_from_claims({"azp": "svc"}, issuer="", token="", expires_at=None, tenants=m)
    assert (p.consumer, p.subject) == ("svc", "svc")


def test_tenant_claim_then_consumer_map_then_default() -> None:
    m = TenantMapping(claim="org.tenant", consumer_tenants={"billing-app": "acme"}, default_tenant="public")
    assert m.tenant_for("billing-app", m.claimed_tenant({"org": {"tenant": "globex"}})) == "globex"
    assert m.tenant_for("billing-app", m.claimed_tenant({"org": {"tenant": ["initech"]}})) == "initech"
    assert m.tenant_for("billing-app", m.claimed_tenant({"org": {"tenant": ["a", "b"]}})) == "acme"
    assert m.tenant_for("billing-app", m.claimed_tenant({"org": "flat"})) == "acme"
    assert m.tenant_for("other-app", m.claimed_tenant({})) == "public"
    assert TenantMapping().tenant_for("x", None) == ""
