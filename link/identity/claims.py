"""From verified token claims to a :class:`~link.model.Principal`.

Keycloak shapes: ``azp`` names the client (our consumer), ``scope`` is a
space-separated string, realm roles sit in ``realm_access.roles`` and client
roles in ``resource_access.<client>.roles``. Other providers use ``client_id``
and ``scp``; both spellings are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from link.model import CredentialKind, Principal

__all__ = ["TenantMapping", "principal_from_claims", "roles_of", "scopes_of"]


@dataclass(frozen=True, slots=True)
class TenantMapping:
    """How a caller's tenant is found: a claim, else a consumer -> tenant map, else a default."""

    claim: str = "tenant"  # a dotted path reaches into nested claims ("org.tenant")
    consumer_tenants: Mapping[str, str] = field(default_factory=dict)
    default_tenant: str | None = None

    def tenant_for(self, consumer: str, claimed: str | None = None) -> str:
        if claimed:
            return claimed
        return self.consumer_tenants.get(consumer) or self.default_tenant or ""

    def claimed_tenant(self, claims: Mapping[str, Any]) -> str | None:
        """The tenant claim's value when it is one non-empty string (or a list of exactly one)."""
        value: Any = claims
        for part in self.claim.split("."):
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        return value if isinstance(value, str) and value else None


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """Scopes from ``scope`` (space-separated) and ``scp`` (a list or a string)."""
    out: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            out.update(value.split())
        elif isinstance(value, list):
            out.update(v for v in value if isinstance(v, str) and v)
    return frozenset(out)


def _role_list(node: Any) -> list[str]:
    roles = node.get("roles") if isinstance(node, Mapping) else None
    return [r for r in roles if isinstance(r, str) and r] if isinstance(roles, list) else []


def roles_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """Realm roles as-is; client roles as ``<client>:<role>`` so two clients' roles never collide."""
    out = set(_role_list(claims.get("realm_access")))
    resource_access = claims.get("resource_access")
    if isinstance(resource_access, Mapping):
        for client, node in resource_access.items():
            out.update(f"{client}:{role}" for role in _role_list(node))
    return frozenset(out)


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    return value if isinstance(value, str) else ""


def principal_from_claims(
    claims: dict[str, Any],
    *,
    issuer: str,
    token: str,
    expires_at: float | None,
    tenants: TenantMapping,
) -> Principal:
    """The caller a verified token describes.

    The consumer is the client (``azp``, else ``client_id``, else the subject);
    the subject falls back to the consumer for client-credential tokens without ``sub``.
    """
    subject = _text(claims, "sub")
    consumer = _text(claims, "azp") or _text(claims, "client_id") or subject
    return Principal(
        kind=CredentialKind.JWT,
        subject=subject or consumer,
        consumer=consumer,
        tenant=tenants.tenant_for(consumer, tenants.claimed_tenant(claims)),
        scopes=scopes_of(claims),
        roles=roles_of(claims),
        claims=claims,
        issuer=issuer,
        token=token,
        expires_at=expires_at,
    )
