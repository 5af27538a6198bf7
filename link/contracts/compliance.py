"""What a contract's ``required_policies`` demand, checked at load and on every request it governs.

The platform's compliance rules (classification H: ``rate-limit``, ``auth-jwt``;
VH adds ``mtls``, ``audit-logging``; VVH adds ``data-encryption``,
``geo-restriction``) are promises about traffic. Link keeps each one it can
and refuses to load a contract that asks for one it cannot, rather than
pretending:

=================  ==================================================================
``auth-jwt``       per request: the caller authenticated with a JWT (an API key, a
                   client certificate alone or no credential: 401)
``mtls``           per request: the connection carried a client certificate Envoy
                   verified (or a trusted ``x-forwarded-client-cert``): else 403
``rate-limit``     at load: the rate-limit phase is on and some limit can apply to the
                   contract's traffic; per request: a limit did apply, else 503 (a
                   configuration gap fails closed, never open)
``audit-logging``  at load: metering is on with a broker, so every request governed by
                   the contract leaves an at-least-once event (who, what, outcome)
``data-encryption`` at load: every backend URL is ``https://``; per request: the
                   request reached Envoy over TLS, else 403
``geo-restriction`` refused at load: Link has no source of caller location
=================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from link.contracts.model import Contract
from link.model import CredentialKind, Decision, Outcome, RequestContext
from link.settings import Settings

__all__ = [
    "KNOWN_POLICIES",
    "CallerRequirements",
    "policy_problems",
    "requirements_of",
    "unenforceable",
]

KNOWN_POLICIES = frozenset(
    {"rate-limit", "auth-jwt", "mtls", "audit-logging", "data-encryption", "geo-restriction"}
)
_REALM = "stoa"


def _can_rate_limit(contract: Contract, settings: Settings) -> bool:
    rl = settings.ratelimit
    if not rl.enabled:
        return False
    if rl.tenant_default or rl.consumer_default or rl.consumers or contract.tenant_id in rl.tenants:
        return True
    return any(r.contract == contract.name and r.rate_limit for r in settings.routes)


def policy_problems(contract: Contract) -> list[str]:
    """Required policies Link can never keep, whatever the settings (``stoa-link validate`` reports them)."""
    problems: list[str] = []
    for policy in contract.required_policies:
        if policy not in KNOWN_POLICIES:
            problems.append(f"requires {policy!r}, a policy Link does not know "
                            f"(known: {', '.join(sorted(KNOWN_POLICIES))})")
    if "geo-restriction" in contract.required_policies:
        problems.append("requires 'geo-restriction', which Link cannot enforce "
                        "(it has no source of caller location); enforce it in front of Envoy and "
                        "remove the contract from contracts.paths until then")
    return problems


def unenforceable(contract: Contract, settings: Settings) -> list[str]:
    """Why Link cannot keep what ``contract`` requires (empty when it can), each naming the policy."""
    where = f"contract {contract.name!r}" + (f" ({contract.file})" if contract.file else "")
    problems = [f"{where} {p}" for p in policy_problems(contract)]
    required = set(contract.required_policies)
    if "rate-limit" in required and not _can_rate_limit(contract, settings):
        problems.append(f"{where} requires 'rate-limit' but no limit can apply to its traffic: enable "
                        "ratelimit and set ratelimit.tenant_default, a ratelimit.tenants entry for "
                        f"{contract.tenant_id!r}, or a rate_limit on the routes bound to it")
    if "audit-logging" in required and not (settings.metering.enabled and settings.metering.bootstrap_servers):
        problems.append(f"{where} requires 'audit-logging': enable metering with a broker "
                        "(metering.bootstrap_servers), the at-least-once record of every request")
    if "data-encryption" in required:
        plain = [ep.backend_url for ep in contract.endpoints if ep.backend_url.startswith("http://")]
        if plain:
            problems.append(f"{where} requires 'data-encryption' but backend {plain[0]} is plain http")
    return problems


def _challenge(error: str, description: str) -> str:
    return f'Bearer realm="{_REALM}", error="{error}", error_description="{description}"'


@dataclass(frozen=True, slots=True)
class CallerRequirements:
    """The per-request part of a contract's required policies."""

    contract: str
    jwt: bool = False
    mtls: bool = False
    rate_limit: bool = False
    tls: bool = False

    @classmethod
    def of(cls, contract: Contract) -> CallerRequirements:
        required = set(contract.required_policies)
        return cls(contract=contract.name, jwt="auth-jwt" in required, mtls="mtls" in required,
                   rate_limit="rate-limit" in required, tls="data-encryption" in required)

    @property
    def any(self) -> bool:
        return self.jwt or self.mtls or self.rate_limit or self.tls

    def refusal(self, ctx: RequestContext, trusted_client_cert: bool = False) -> Decision | None:
        """The refusal of a request that does not meet the requirements, else None.

        ``trusted_client_cert``: the request carries a client certificate the operator trusts
        outside Envoy's own TLS (a trusted ``x-forwarded-client-cert``).
        """
        kind = ctx.principal.kind
        if self.jwt and kind is not CredentialKind.JWT:
            text = f"contract {self.contract} requires a JWT bearer token"
            error = "invalid_request" if kind is CredentialKind.ANONYMOUS else "invalid_token"
            return Decision.deny(401, Outcome.UNAUTHENTICATED, "contract_requires_jwt", text,
                                 {"www-authenticate": _challenge(error, text)})
        peer = ctx.request.peer
        if self.mtls and not ((peer is not None and peer.principal) or trusted_client_cert
                              or kind is CredentialKind.MTLS):
            return Decision.deny(403, Outcome.POLICY_DENIED, "contract_requires_mtls",
                                 f"contract {self.contract} requires a verified client certificate")
        if self.tls and ctx.request.scheme != "https":
            return Decision.deny(403, Outcome.POLICY_DENIED, "contract_requires_tls",
                                 f"contract {self.contract} requires TLS (https)")
        if self.rate_limit and not ctx.record.ratelimit_applied:
            # A gap in the rate-limit configuration for this caller: fail closed, loudly.
            return Decision.deny(503, Outcome.ERROR, "contract_rate_limit_missing",
                                 f"contract {self.contract} requires a rate limit and none applies",
                                 {"retry-after": "60"})
        return None


def requirements_of(contracts: Iterable[Contract]) -> dict[str, CallerRequirements]:
    """The per-request requirements of each contract that has some, by contract name."""
    out = {c.name: CallerRequirements.of(c) for c in contracts}
    return {name: req for name, req in out.items() if req.any}
