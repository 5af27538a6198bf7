"""Contract phase: requests checked against their UAC contract.

A route bound to a contract (``routes[].contract``) is checked against that
contract's endpoints; other requests against any contract endpoint that
matches their method and path (none: the phase lets them pass). Path and
query parameters and the JSON body are validated against the endpoint's
``input_schema``; the body is capped at ``contracts.max_body_bytes``.

``enforce`` refuses: 400 (bad parameters, malformed body), 422 (a well-formed
body that breaks the schema), 413 (body too large), 404/405 (no endpoint of
the route's contract fits) — each naming the field and the reason.
``observe`` only counts and marks ``ctx.record``.

Whatever the mode, what the contract requires of the caller (its
``required_policies``, see :mod:`link.contracts.compliance`) is enforced on
every request it governs, HTTP or MCP (a tool named by an endpoint's
``llm.tool_name``): a contract Link cannot keep stops start-up instead.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from link.contracts import ContractCatalog, ContractError, Violation, load_catalog
from link.contracts.compliance import CallerRequirements, requirements_of, unenforceable
from link.metrics import REGISTRY
from link.model import Decision, Outcome, RequestContext
from link.settings import ConfigError, ContractSettings, Settings

__all__ = ["ContractPhase", "build_contract_phase"]

_log = logging.getLogger("stoa.link.contracts")

CHECKS = Counter(
    "stoa_link_contract_checks_total",
    "Requests checked against a contract, by contract and result "
    "(valid, partial: body not available, or the violation kind).",
    ["contract", "result", "mode"],
    registry=REGISTRY,
)


class ContractPhase:
    """The contract step of the pipeline."""

    name = "contract"

    def __init__(self, settings: ContractSettings, catalog: ContractCatalog, *,
                 trust_xfcc: bool = False) -> None:
        self._mode = settings.mode
        self._max_body = settings.max_body_bytes
        self._reject_unknown = settings.reject_unknown_paths
        self.catalog = catalog
        self._requirements = requirements_of(catalog.contracts.values())
        self._trust_xfcc = trust_xfcc

    def _caller_refusal(self, ctx: RequestContext, contract: str) -> Decision | None:
        required: CallerRequirements | None = self._requirements.get(contract)
        if required is None:
            return None
        trusted_cert = self._trust_xfcc and bool(ctx.request.headers.get("x-forwarded-client-cert"))
        refusal = required.refusal(ctx, trusted_client_cert=trusted_cert)
        if refusal is not None:
            CHECKS.labels(contract, refusal.reason, self._mode).inc()
            ctx.record.contract_violation = refusal.message
        return refusal

    @property
    def max_body_bytes(self) -> int:
        """The largest request body a contract check reads (``contracts.max_body_bytes``); more is 413."""
        return self._max_body

    def readiness(self) -> tuple[bool, str]:
        return True, f"{len(self.catalog)} contract(s), mode {self._mode}"

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        req = ctx.request
        bound = ctx.route.contract if ctx.route is not None else None
        found = self.catalog.match(req.method, req.path, bound)
        if found is None:
            tool_contract = self.catalog.for_tool(req.tool_tenant, req.tool_name) if req.tool_name else None
            if tool_contract is None:
                return None
            # An MCP call of a contract's tool: the gateway validates the arguments; the caller's
            # obligations are the contract's.
            ctx.record.contract = tool_contract.name
            ctx.record.contract_version = tool_contract.version
            return self._caller_refusal(ctx, tool_contract.name)
        contract = found.contract
        ctx.record.contract = contract.name
        ctx.record.contract_version = contract.version
        refusal = self._caller_refusal(ctx, contract.name)
        if refusal is not None:
            return refusal
        if found.endpoint is None:
            if not self._reject_unknown:
                ctx.record.contract_violation = f"no endpoint matches {req.method} {req.path}"
                return None
            violation: Violation | None
            if found.allowed_methods:
                violation = Violation(405, "method", f"{req.method} is not declared for this path "
                                      f"(allowed: {', '.join(found.allowed_methods)})", "method_not_allowed")
            else:
                violation = Violation(404, "path", f"no endpoint of contract {contract.name} matches "
                                      f"{req.method} {req.path}", "unknown_endpoint")
            return self._refuse(ctx, contract.name, violation, found.allowed_methods)
        if found.endpoint.endpoint.operation_id:
            ctx.record.operation_id = found.endpoint.endpoint.operation_id
        violation, checked = found.endpoint.validate(req, found.params, self._max_body)
        if violation is None:
            CHECKS.labels(contract.name, "valid" if checked == "full" else "partial", self._mode).inc()
            if checked != "full":
                ctx.record.contract_body = "unavailable"
            return None
        return self._refuse(ctx, contract.name, violation, ())

    def _refuse(self, ctx: RequestContext, contract: str, violation: Violation,
                allowed: tuple[str, ...]) -> Decision | None:
        CHECKS.labels(contract, violation.kind, self._mode).inc()
        ctx.record.contract_violation = violation.message
        if self._mode == "observe":
            ctx.record.contract_mode = "observe"
            return None
        outcome = Outcome.NOT_FOUND if violation.status == 404 else Outcome.INVALID
        headers = {"allow": ", ".join(allowed)} if violation.status == 405 and allowed else None
        return Decision.deny(violation.status, outcome, violation.kind, violation.message, headers)


def build_contract_phase(settings: Settings) -> ContractPhase:
    """Load the contracts (a bad one stops start-up) and check that every route's contract exists."""
    cfg = settings.contracts
    try:
        catalog = load_catalog(cfg.paths, strict=cfg.mode == "enforce")
    except ContractError as exc:
        raise ConfigError("contracts.paths", str(exc)) from None
    for i, route in enumerate(settings.routes):
        if route.contract and route.contract not in catalog.contracts:
            raise ConfigError(f"routes[{i}].contract", f"no contract named {route.contract!r} is loaded")
        bound = catalog.contracts.get(route.contract or "")
        if bound is not None and route.anonymous and "auth-jwt" in bound.required_policies:
            raise ConfigError(f"routes[{i}].anonymous", f"route {route.name!r} is anonymous but its contract "
                              f"{bound.name!r} requires auth-jwt")
    # In either mode: a contract whose required policies Link cannot keep is not loaded as if it could.
    problems = [p for c in catalog.contracts.values() for p in unenforceable(c, settings)]
    if problems:
        raise ConfigError("contracts.paths", "; ".join(problems))
    _log.info("%d contract(s) loaded, mode %s", len(catalog), cfg.mode)
    return ContractPhase(cfg, catalog, trust_xfcc=settings.identity.mtls_trust_xfcc)
