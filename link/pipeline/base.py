"""The decision pipeline: named phases run in order on one RequestContext.

Each phase is a small object with a ``name`` and an async ``__call__`` that
returns ``None`` to let the request continue, or a refusing :class:`Decision`
to stop it. The response phase always runs last on allowed requests and turns
what the phases gathered into the allowing decision.

Every caller enters through the pipeline's public surface, never by a phase's
name:

- :meth:`Pipeline.run`: a request as a decision transport sees it (ext_authz,
  ext_proc deciding alone); the route comes from ``settings.routes``.
- :meth:`Pipeline.identify`: only who is calling (the MCP server's HTTP layer,
  which must answer 401 with its OAuth challenge before the protocol starts).
- :meth:`Pipeline.run_with_principal`: a request whose caller the transport
  already authenticated, on a route the transport knows (an MCP call: the
  registry entry is the route); the identity phase applies the route's rules
  to that caller without authenticating again.
- :meth:`Pipeline.permits`: the policy alone, for listings (is this tool
  visible to this caller?).
- :meth:`Pipeline.check_body`: the contract check of a body that arrived after
  the headers were decided (ext_proc).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from link.model import Decision, Outcome, Principal, Request, RequestContext, RouteMatch
from link.paths import PathRefused, normalize_path

_log = logging.getLogger("stoa.link.pipeline")


@runtime_checkable
class Phase(Protocol):
    """One step of the pipeline."""

    name: str

    async def __call__(self, ctx: RequestContext) -> Decision | None: ...


@runtime_checkable
class ReadinessAware(Protocol):
    """A phase whose readiness matters (policies loaded, keys fetched…)."""

    def readiness(self) -> tuple[bool, str]: ...


@runtime_checkable
class IdentityStep(Protocol):
    """The phase that says who is calling; it can also admit a caller a transport authenticated."""

    name: str

    async def __call__(self, ctx: RequestContext) -> Decision | None: ...

    def admit(self, ctx: RequestContext, principal: Principal) -> Decision | None: ...


@runtime_checkable
class BodyCheckStep(Protocol):
    """The phase that checks request bodies, bounded by the largest body it reads."""

    name: str

    @property
    def max_body_bytes(self) -> int: ...

    async def __call__(self, ctx: RequestContext) -> Decision | None: ...


class RouteResolver(Protocol):
    """Finds the configured route (API or tool) of a request."""

    def resolve(self, request: Request) -> RouteMatch | None: ...


class DecisionObserver(Protocol):
    """Called with every finished decision (metrics, traces); must be cheap and never raise."""

    def observe(self, ctx: RequestContext, decision: Decision) -> None: ...


class ResponseBuilder(Protocol):
    def allow(self, ctx: RequestContext) -> Decision: ...

    def finish_denial(self, ctx: RequestContext, decision: Decision) -> Decision: ...


@dataclass(slots=True)
class PipelineResult:
    decision: Decision
    ctx: RequestContext


@dataclass(slots=True)
class Identified:
    """Who is calling (``principal``), or the refusal to answer with."""

    principal: Principal | None = None
    refusal: Decision | None = None


class Pipeline:
    """identity -> policy -> rate limit -> contract -> response."""

    def __init__(
        self,
        resolver: RouteResolver,
        phases: Sequence[Phase],
        response: ResponseBuilder,
        observers: Sequence[DecisionObserver] = (),
    ) -> None:
        self._resolver = resolver
        self._phases = tuple(phases)
        self._response = response
        self._observers = list(observers)
        # The pipeline knows its own steps; callers reach them only through the methods below.
        self._identity = next((p for p in self._phases if isinstance(p, IdentityStep)), None)
        self._policy = next((p for p in self._phases if p.name == "policy"), None)
        self._body_check = next((p for p in self._phases if isinstance(p, BodyCheckStep)), None)

    def add_observer(self, observer: DecisionObserver) -> None:
        self._observers.append(observer)

    @property
    def phases(self) -> tuple[Phase, ...]:
        return self._phases

    def resolve_route(self, request: Request) -> RouteMatch | None:
        """The route of ``request`` on its normalized path; None if unrouted or the path is refused."""
        try:
            request.path = normalize_path(request.path)
        except PathRefused:
            return None
        return self._resolver.resolve(request)

    def readiness(self) -> dict[str, tuple[bool, str]]:
        return {p.name: p.readiness() for p in self._phases if isinstance(p, ReadinessAware)}

    async def run(self, request: Request, ctx: RequestContext | None = None) -> PipelineResult:
        """Decide on one request; never raises for bad input (a phase bug is a 500 decision)."""
        request.ensure_request_id()
        if ctx is None:
            ctx = RequestContext(request=request)
        decision = _normalize_path(request)  # before the route: routes match the path Envoy forwards
        if decision is None:
            if ctx.route is None:
                ctx.route = self._resolver.resolve(request)
            decision = await self._run_phases(ctx, None)
        return self._finish(ctx, decision)

    async def run_with_principal(
        self, request: Request, principal: Principal, route: RouteMatch, ctx: RequestContext | None = None
    ) -> PipelineResult:
        """Decide on a request whose caller is already authenticated, on the route the caller knows.

        ``settings.routes`` is not consulted: the transport's route (an MCP registry entry) is the
        route. The identity phase admits ``principal`` under that route's rules (anonymous routes,
        accepted credential kinds, scopes) instead of authenticating the request again.
        """
        request.ensure_request_id()
        if ctx is None:
            ctx = RequestContext(request=request)
        ctx.route = route
        decision = _normalize_path(request)
        if decision is None:
            decision = await self._run_phases(ctx, principal)
        return self._finish(ctx, decision)

    async def identify(self, request: Request, route: RouteMatch, ctx: RequestContext | None = None) -> Identified:
        """Only who is calling, under ``route``'s rules: the principal, or the refusal (not finished)."""
        if self._identity is None:
            return Identified(refusal=Decision.deny(503, Outcome.ERROR, "no_identity", "identity is not configured"))
        if ctx is None:
            ctx = RequestContext(request=request)
        ctx.route = route
        refusal = await self._identity(ctx)
        if refusal is not None:
            return Identified(refusal=refusal)
        return Identified(principal=ctx.principal)

    @property
    def authorizes(self) -> bool:
        """Whether a policy decides (without one, :meth:`permits` is always True)."""
        return self._policy is not None

    async def permits(self, ctx: RequestContext, principal: Principal) -> bool:
        """The policy alone, for a caller already known (listings); a failing policy permits nothing."""
        if self._policy is None:
            return True
        ctx.principal = principal
        try:
            return await self._policy(ctx) is None
        except Exception:  # a failing policy hides the entry rather than failing the listing
            _log.exception("policy failed on a listing")
            return False

    @property
    def checks_bodies(self) -> bool:
        """Whether a phase checks request bodies (contracts)."""
        return self._body_check is not None

    async def check_body(self, ctx: RequestContext, body: bytes, *, complete: bool) -> Decision | None:
        """Check a body that arrived after its headers were decided: None, or the finished refusal.

        ``complete`` says the whole body arrived. The check reads at most the contract's limit (plus
        one byte, so an oversized body is the contract's 413); a governed body that could not be seen
        whole is refused 413, never passed.
        """
        check = self._body_check
        if check is None:
            return None
        limit = check.max_body_bytes or len(body)
        over = len(body) > limit
        ctx.request.body = bytes(body[: limit + 1])
        ctx.request.body_truncated = not complete and not over
        start = time.perf_counter_ns()
        try:
            decision = await check(ctx)
        except Exception as exc:  # a bug in the check must not crash the stream
            decision = _crashed(ctx, check.name, exc)
        ctx.timings_ns["contract_body"] = time.perf_counter_ns() - start
        if decision is None and ctx.request.body_truncated and ctx.record.contract_body == "unavailable":
            decision = Decision.deny(413, Outcome.INVALID, "body_too_large",
                                     "body larger than can be checked against its contract")
        if decision is None:
            return None
        return self._response.finish_denial(ctx, decision)

    def _finish(self, ctx: RequestContext, decision: Decision | None) -> PipelineResult:
        start = time.perf_counter_ns()
        if decision is None:
            decision = self._response.allow(ctx)
        else:
            decision = self._response.finish_denial(ctx, decision)
        ctx.timings_ns["response"] = time.perf_counter_ns() - start
        for observer in self._observers:
            try:
                observer.observe(ctx, decision)
            except Exception:
                _log.exception("decision observer failed")
        return PipelineResult(decision=decision, ctx=ctx)

    async def _run_phases(self, ctx: RequestContext, known: Principal | None) -> Decision | None:
        """The phases in order; the first refusal stops them. A ``known`` caller is admitted, not authenticated."""
        if known is not None and self._identity is None:
            ctx.principal = known
        for phase in self._phases:
            start = time.perf_counter_ns()
            try:
                if known is not None and phase is self._identity:
                    decision = self._identity.admit(ctx, known)
                else:
                    decision = await phase(ctx)
            except Exception as exc:  # a bug in one phase must not crash the server
                decision = _crashed(ctx, phase.name, exc)
            ctx.timings_ns[phase.name] = time.perf_counter_ns() - start
            if decision is not None:
                return decision
        return None

    async def decide(self, request: Request) -> Decision:
        return (await self.run(request)).decision


def _normalize_path(request: Request) -> Decision | None:
    """Every transport's path read once, the way Envoy forwards it; an ambiguous one is a 400."""
    try:
        request.path = normalize_path(request.path)
    except PathRefused as refused:
        return Decision.deny(400, Outcome.INVALID, refused.reason, refused.message)
    return None


def _crashed(ctx: RequestContext, phase: str, exc: Exception) -> Decision:
    """A phase raised: Link's 500 (the type of error on the record, the traceback in the log only)."""
    ctx.record.error = f"{phase}: {type(exc).__name__}"
    _log.exception("phase %s failed", phase)
    return Decision.deny(500, Outcome.ERROR, "internal_error", "internal error")
