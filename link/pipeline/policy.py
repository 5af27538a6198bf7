"""Policy phase: OPA/Rego policies, compatible with OPA-Envoy.

The phase builds OPA-Envoy's input document from the request (plus
``input.stoa``: principal, route or tool, contract), asks the engine (embedded
rego-cpp, or a remote OPA) for ``policy.query`` and maps the answer onto the
request as OPA-Envoy does (docs/opa-envoy.md): headers for the upstream and the
client, headers and query parameters to set or remove, the policy's dynamic
metadata, or a refusal that is exactly the policy's status, headers and body.

A request whose input cannot be built (malformed JSON, form or multipart body,
a bad escape in path or query) is refused 400 before the policy runs. An
undefined decision, or a result OPA-Envoy would not accept (a status outside
Envoy's ``StatusCode``), is an error of the policy: ``policy.failure_mode``
decides, like for an engine that cannot answer.

Embedded policies come from files, directories and bundles and are reloaded
when they change; a policy that fails to load never replaces the one in force
(last known good). With no ``policy.paths`` the built-in default policy
(``link/policy/default.rego``: authenticated callers, and anonymous ones only
on anonymous routes and public MCP tenants) is in force. Until a first policy
loads the phase is not ready and
``policy.failure_mode`` decides (closed: 503). Every decision gets an id
(``ctx.decision_id``, dynamic metadata ``decision_id``) and, when configured,
a line in the decision log. Dry-run allows everything and counts what the
policy would have refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from link.component import cancel_task
from link.ids import new_id
from link.metrics import bound_counter, bound_histogram
from link.model import Decision, Outcome, PolicyEffects, RequestContext
from link.policy.decisionlog import DecisionEntry, DecisionLog
from link.policy.default import default_source
from link.policy.engine import UNDEFINED, CompiledPolicy, EvalError, PolicyCompileError, compile_policy
from link.policy.inputdoc import ContractLookup, InputError, ParsedRequest, build_input, parse_request
from link.policy.metrics import DECISIONS, EVAL_SECONDS, LAST_LOAD_SUCCESS, LOADED_AT, RELOADS
from link.policy.refs import prune
from link.policy.remote import RemoteEngine
from link.policy.sources import PolicySource, SourceError, fingerprint, load_sources
from link.policy.verdict import DecisionFormatError, UndefinedDecision, Verdict, read_verdict
from link.settings import PolicySettings, Settings

__all__ = ["PolicyPhase", "build_policy_phase"]

_log = logging.getLogger("stoa.link.policy")

_RESULTS = ("allow", "deny", "error", "dry_run_deny", "unavailable")


class PolicyPhase:
    """The policy step of the pipeline; also a Component (reload task, decision-log writer)."""

    name = "policy"

    def __init__(self, settings: PolicySettings, contracts: ContractLookup | None = None,
                 gateway_id: str | None = None, *, anonymous_routes: tuple[str, ...] = (),
                 public_tenants: tuple[str, ...] = ()) -> None:
        self._cfg = settings
        # What the built-in default policy (no policy.paths) lets anonymous callers reach.
        self._anonymous_routes = anonymous_routes
        self._public_tenants = public_tenants
        self._contracts = contracts
        self._engine_name = settings.engine
        self._policy: CompiledPolicy | None = None
        self._remote = RemoteEngine(settings.remote_url, settings.remote_timeout_ms) \
            if settings.engine == "remote" and settings.remote_url else None
        self._fingerprint: tuple[tuple[str, int, int], ...] | None = None
        self._last_error = "not loaded yet"
        self._task: asyncio.Task[None] | None = None
        self._decision_log = DecisionLog(settings.decision_log, settings.decision_log_redact) \
            if settings.decision_log else None
        self._labels = {"id": gateway_id} if gateway_id else {}
        self._count = {r: bound_counter(DECISIONS, settings.engine, r) for r in _RESULTS}
        self._eval_seconds = bound_histogram(EVAL_SECONDS, settings.engine)
        self._next_failure_log = 0.0
        if self._remote is None:
            self.reload()

    # -- loading -------------------------------------------------------------
    @property
    def policy(self) -> CompiledPolicy | None:
        """The policy in force (None before the first successful load, or with a remote engine)."""
        return self._policy

    @property
    def last_error(self) -> str:
        return self._last_error

    def reload(self) -> bool:
        """Load the configured policies now; on failure keep the current ones. Returns success."""
        paths = self._cfg.paths
        self._fingerprint = fingerprint(paths)
        try:
            compiled = compile_policy(self._source(paths), self._cfg.query, self._cfg.cache_size)
        except (SourceError, PolicyCompileError) as exc:
            self._last_error = str(exc)
            RELOADS.labels("failure").inc()
            LAST_LOAD_SUCCESS.set(0)
            kept = f"; keeping revision {self._policy.revision}" if self._policy else "; no policy in force"
            _log.error("policy load failed: %s%s", exc, kept)
            return False
        previous = self._policy.revision if self._policy else None
        self._policy = compiled
        self._last_error = ""
        RELOADS.labels("success").inc()
        LAST_LOAD_SUCCESS.set(1)
        LOADED_AT.set(time.time())
        _log.info("policy revision %s loaded (was %s); cache %s", compiled.revision, previous,
                  "on" if compiled.cache_size else "off")
        return True

    def _source(self, paths: list[str]) -> PolicySource:
        """The configured policies; with none configured, the built-in default (link/policy/default.rego)."""
        if not paths:
            return default_source(self._cfg.query, self._anonymous_routes, self._public_tenants)
        return load_sources(paths)

    async def _watch(self) -> None:
        interval = self._cfg.reload_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                current = await asyncio.to_thread(fingerprint, self._cfg.paths)
                if current != self._fingerprint:
                    await asyncio.to_thread(self.reload)
            except Exception:  # the watcher must survive anything a file system throws at it
                _log.exception("policy watch failed")

    # -- Component -------------------------------------------------------------
    async def start(self) -> None:
        if self._remote is not None:
            await self._remote.start()
        elif self._task is None:
            self._task = asyncio.create_task(self._watch(), name="policy-reload")
        if self._decision_log is not None:
            await self._decision_log.start()

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        if self._remote is not None:
            await self._remote.stop()
        if self._decision_log is not None:
            await self._decision_log.stop()

    def readiness(self) -> tuple[bool, str]:
        if self._remote is not None:
            return True, f"remote {self._remote.url}"
        if self._policy is None:
            return False, f"no policy loaded: {self._last_error}"
        if self._last_error:
            return True, f"revision {self._policy.revision} (last reload failed: {self._last_error})"
        return True, f"revision {self._policy.revision}"

    # -- deciding --------------------------------------------------------------
    async def _evaluate(self, ctx: RequestContext, parsed: ParsedRequest
                        ) -> tuple[Any, Mapping[str, Any] | None, str]:
        """(value, the whole input, revision); raises EvalError.

        The whole input is built once and pruned to what the policy reads, so a decision log
        (which records the whole input) does not cost a second build.
        """
        if self._remote is not None:
            doc = build_input(ctx, None, self._contracts, parsed)
            return await self._remote.evaluate(doc), doc, self._remote.revision
        policy = self._policy
        if policy is None:
            raise EvalError(f"no policy loaded ({self._last_error})")
        if self._decision_log is None or policy.needs is None:
            doc = build_input(ctx, policy.needs, self._contracts, parsed)
            return policy.evaluate(doc), doc, policy.revision
        full = build_input(ctx, None, self._contracts, parsed)
        return policy.evaluate(prune(full, policy.needs)), full, policy.revision

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        start = time.perf_counter_ns()
        decision_id = new_id()
        ctx.decision_id = decision_id
        ctx.record.decision_id = decision_id
        try:
            # OPA-Envoy parses path, query and body before any policy runs, and answers 400 when it cannot.
            parsed = parse_request(ctx.request)
        except InputError as exc:
            refusal = self._unparsable(ctx, str(exc))
            if self._decision_log is not None:  # like OPA-Envoy: logged with the error, no input, no result
                self._decision_log.record(DecisionEntry(
                    decision_id=decision_id, timestamp=time.time(), query=self._cfg.query, input=None,
                    result=None, allowed=refusal is None, latency_us=(time.perf_counter_ns() - start) / 1000,
                    revision=self._policy.revision if self._policy else "", engine=self._engine_name,
                    dry_run=self._cfg.dry_run, error=str(exc), request_id=ctx.request.request_id,
                    labels=self._labels,
                ))
            return refusal
        doc: Mapping[str, Any] | None = None
        revision = ""
        value: Any = UNDEFINED
        error = ""
        verdict: Verdict | None = None
        try:
            value, doc, revision = await self._evaluate(ctx, parsed)
            verdict = read_verdict(value, undefined=value is UNDEFINED)
        except UndefinedDecision as exc:
            error = str(exc)
            ctx.record.policy_undefined = True
        except (EvalError, DecisionFormatError) as exc:
            error = str(exc)
        elapsed_us = (time.perf_counter_ns() - start) / 1000
        self._eval_seconds.observe(elapsed_us / 1e6)
        decision = self._apply(ctx, verdict, error)
        if self._decision_log is not None:
            # doc is the whole input here (None only when the engine failed before building it).
            full = doc if doc is not None else build_input(ctx, None, self._contracts, parsed)
            self._decision_log.record(DecisionEntry(
                decision_id=decision_id, timestamp=time.time(), query=self._cfg.query, input=full,
                result=None if value is UNDEFINED else value,
                allowed=decision is None, latency_us=elapsed_us, revision=revision,
                engine=self._engine_name,
                dry_run=self._cfg.dry_run and verdict is not None and not verdict.allowed,
                error=error, request_id=ctx.request.request_id, labels=self._labels,
            ))
        return decision

    def _unparsable(self, ctx: RequestContext, error: str) -> Decision | None:
        """The input cannot be built (malformed body, bad escape): refused 400 before the policy."""
        ctx.record.policy_input_error = error
        if self._cfg.dry_run:  # dry-run never refuses; the count shows what enforcing would do
            self._count["dry_run_deny"].inc()
            ctx.dry_run_denials.append(self.name)
            ctx.record.policy_dry_run = "request_parse_error"
            return None
        self._count["deny"].inc()
        return Decision.deny(400, Outcome.INVALID, "request_parse_error", error)

    def _apply(self, ctx: RequestContext, verdict: Verdict | None, error: str) -> Decision | None:
        if verdict is None:
            return self._failure(ctx, error)
        effects = PolicyEffects(metadata=verdict.dynamic_metadata)
        if not verdict.allowed:
            if self._cfg.dry_run:
                self._count["dry_run_deny"].inc()
                ctx.dry_run_denials.append(self.name)
                ctx.record.policy_dry_run = "deny"
                ctx.policy = effects  # OPA-Envoy's dry run keeps the policy's metadata too
                return None
            self._count["deny"].inc()
            # The policy defines the whole response: its status, its headers, its body (empty if none).
            effects.response_headers = verdict.headers
            decision = Decision.deny(verdict.http_status, Outcome.POLICY_DENIED, "policy_denied",
                                     "request denied by policy")
            decision.body = verdict.body.encode()
            decision.policy = effects
            decision.policy_response = True
            return decision
        self._count["allow"].inc()
        effects.upstream_headers = verdict.headers
        effects.response_headers = verdict.response_headers_to_add
        effects.query_to_set = verdict.query_parameters_to_set
        effects.query_to_remove = verdict.query_parameters_to_remove
        ctx.remove_headers.extend(verdict.request_headers_to_remove)
        ctx.policy = effects
        return None

    def _failure(self, ctx: RequestContext, error: str) -> Decision | None:
        unavailable = self._policy is None and self._remote is None
        self._count["unavailable" if unavailable else "error"].inc()
        ctx.record.policy_error = error
        now = time.monotonic()
        if now >= self._next_failure_log:  # one line per 10 s in an outage, the metric counts each request
            self._next_failure_log = now + 10.0
            _log.warning("policy could not decide (failure mode %s): %s", self._cfg.failure_mode, error)
        if self._cfg.failure_mode == "open":
            return None
        if unavailable:
            return Decision.deny(503, Outcome.ERROR, "policy_unavailable", "policy decision unavailable")
        if ctx.record.policy_undefined:
            return Decision.deny(503, Outcome.ERROR, "policy_undefined", "policy decision undefined")
        return Decision.deny(503, Outcome.ERROR, "policy_error", "policy decision unavailable")


def _contract_lookup(settings: Settings) -> ContractLookup | None:
    """input.stoa.contract: the request's UAC contract endpoint, when contracts are configured."""
    if not settings.contracts.enabled or not settings.contracts.paths:
        return None
    from link.contracts import ContractError, load_catalog

    try:
        catalog = load_catalog(settings.contracts.paths, strict=False)
    except ContractError as exc:
        _log.warning("policy input will carry no contract: %s", exc)
        return None
    return catalog.describe


def build_policy_phase(settings: Settings) -> PolicyPhase:
    return PolicyPhase(settings.policy, _contract_lookup(settings), settings.gateway_id,
                       anonymous_routes=tuple(r.name for r in settings.routes if r.anonymous),
                       public_tenants=tuple(settings.mcp.public_tenants))
