"""The decision pipeline: named phases run in order on one RequestContext.

Each phase is a small object with a ``name`` and an async ``__call__`` that
returns ``None`` to let the request continue, or a refusing :class:`Decision`
to stop it. The response phase always runs last on allowed requests and turns
what the phases gathered into the allowing decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from link.model import Decision, Outcome, Request, RequestContext, RouteMatch

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

    def add_observer(self, observer: DecisionObserver) -> None:
        self._observers.append(observer)

    @property
    def phases(self) -> tuple[Phase, ...]:
        return self._phases

    def phase(self, name: str) -> Phase | None:
        for p in self._phases:
            if p.name == name:
                return p
        return None

    @property
    def response_builder(self) -> ResponseBuilder:
        return self._response

    def resolve_route(self, request: Request) -> RouteMatch | None:
        return self._resolver.resolve(request)

    def readiness(self) -> dict[str, tuple[bool, str]]:
        return {p.name: p.readiness() for p in self._phases if isinstance(p, ReadinessAware)}

    async def run(self, request: Request, ctx: RequestContext | None = None) -> PipelineResult:
        """Decide on one request; never raises for bad input (a phase bug is a 500 decision)."""
        request.ensure_request_id()
        if ctx is None:
            ctx = RequestContext(request=request)
        if ctx.route is None:
            ctx.route = self._resolver.resolve(request)
        decision: Decision | None = None
        for phase in self._phases:
            start = time.perf_counter_ns()
            try:
                decision = await phase(ctx)
            except Exception as exc:  # a bug in one phase must not crash the server
                decision = Decision.deny(500, Outcome.ERROR, "internal_error", "internal error")
                ctx.metadata["error"] = f"{phase.name}: {type(exc).__name__}"
                _log.exception("phase %s failed", phase.name)
            ctx.timings_ns[phase.name] = time.perf_counter_ns() - start
            if decision is not None:
                break
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

    async def decide(self, request: Request) -> Decision:
        return (await self.run(request)).decision
