"""Policy phase: OPA/Rego policies, compatible with OPA-Envoy.

The phase builds OPA-Envoy's input document from the request (plus
``input.stoa``: principal, route or tool, contract), asks the engine (embedded
rego-cpp, or a remote OPA) for ``policy.query`` and maps the answer onto the
request: headers for the upstream and the client, headers to remove, dynamic
metadata, or a refusal with the policy's status and body.

Embedded policies come from files, directories and bundles and are reloaded
when they change; a policy that fails to load never replaces the one in force
(last known good). Until a first policy loads the phase is not ready and
``policy.failure_mode`` decides (closed: 503). Every decision gets an id
(``ctx.decision_id``, dynamic metadata ``decision_id``) and, when configured,
a line in the decision log. Dry-run allows everything and counts what the
policy would have refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from link.component import cancel_task
from link.model import Decision, Outcome, RequestContext
from link.policy.decisionlog import DecisionEntry, DecisionLog
from link.policy.engine import UNDEFINED, CompiledPolicy, EvalError, PolicyCompileError, compile_policy
from link.policy.inputdoc import ContractLookup, build_input
from link.policy.metrics import DECISIONS, EVAL_SECONDS, LAST_LOAD_SUCCESS, LOADED_AT, RELOADS
from link.policy.remote import RemoteEngine
from link.policy.sources import SourceError, fingerprint, load_sources
from link.policy.verdict import DecisionFormatError, Verdict, read_verdict
from link.settings import PolicySettings, Settings

__all__ = ["PolicyPhase", "build_policy_phase"]

_log = logging.getLogger("stoa.link.policy")

_RESULTS = ("allow", "deny", "error", "dry_run_deny", "unavailable")


class PolicyPhase:
    """The policy step of the pipeline; also a Component (reload task, decision-log writer)."""

    name = "policy"

    def __init__(self, settings: PolicySettings, contracts: ContractLookup | None = None,
                 gateway_id: str | None = None) -> None:
        self._cfg = settings
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
        self._count = {r: DECISIONS.labels(settings.engine, r) for r in _RESULTS}
        self._eval_seconds = EVAL_SECONDS.labels(settings.engine)
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
            compiled = compile_policy(load_sources(paths), self._cfg.query, self._cfg.cache_size)
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
    async def _evaluate(self, ctx: RequestContext) -> tuple[Any, Mapping[str, Any] | None, str]:
        """(value, the input used, revision); raises EvalError."""
        if self._remote is not None:
            doc = build_input(ctx, None, self._contracts)
            return await self._remote.evaluate(doc), doc, self._remote.revision
        policy = self._policy
        if policy is None:
            raise EvalError(f"no policy loaded ({self._last_error})")
        doc = build_input(ctx, policy.needs, self._contracts)
        return policy.evaluate(doc), doc, policy.revision

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        start = time.perf_counter_ns()
        decision_id = uuid.uuid4().hex
        ctx.decision_id = decision_id
        ctx.metadata["decision_id"] = decision_id
        doc: Mapping[str, Any] | None = None
        revision = ""
        value: Any = UNDEFINED
        error = ""
        try:
            value, doc, revision = await self._evaluate(ctx)
            verdict = read_verdict(value, undefined=value is UNDEFINED)
        except (EvalError, DecisionFormatError) as exc:
            error = str(exc)
            verdict = None
        elapsed_us = (time.perf_counter_ns() - start) / 1000
        self._eval_seconds.observe(elapsed_us / 1e6)
        decision = self._apply(ctx, verdict, error)
        if self._decision_log is not None:
            whole = doc is not None and (self._policy is None or self._policy.needs is None)
            full = doc if whole else build_input(ctx, None, self._contracts)
            self._decision_log.record(DecisionEntry(
                decision_id=decision_id, timestamp=time.time(), query=self._cfg.query, input=full,
                result=None if value is UNDEFINED else value,
                allowed=decision is None, latency_us=elapsed_us, revision=revision,
                engine=self._engine_name,
                dry_run=self._cfg.dry_run and verdict is not None and not verdict.allowed,
                error=error, request_id=ctx.request.request_id, labels=self._labels,
            ))
        return decision

    def _apply(self, ctx: RequestContext, verdict: Verdict | None, error: str) -> Decision | None:
        if verdict is None:
            return self._failure(ctx, error)
        if not verdict.allowed:
            if self._cfg.dry_run:
                self._count["dry_run_deny"].inc()
                ctx.dry_run_denials.append(self.name)
                ctx.metadata["policy_dry_run"] = "deny"
                return None
            self._count["deny"].inc()
            ctx.metadata.update(verdict.dynamic_metadata)
            headers = dict(verdict.headers)
            content_type = headers.pop("content-type", "text/plain; charset=utf-8")
            decision = Decision.deny(
                verdict.http_status, Outcome.POLICY_DENIED,
                "policy_undefined" if verdict.undefined else "policy_denied",
                "request denied by policy", headers,
            )
            if verdict.body is not None:
                decision.body = verdict.body.encode()
                decision.content_type = content_type
            return decision
        self._count["allow"].inc()
        ctx.upstream_headers.update(verdict.headers)
        ctx.response_headers.update(verdict.response_headers_to_add)
        ctx.remove_headers.extend(verdict.request_headers_to_remove)
        ctx.metadata.update(verdict.dynamic_metadata)
        return None

    def _failure(self, ctx: RequestContext, error: str) -> Decision | None:
        unavailable = self._policy is None and self._remote is None
        self._count["unavailable" if unavailable else "error"].inc()
        ctx.metadata["policy_error"] = error
        now = time.monotonic()
        if now >= self._next_failure_log:  # one line per 10 s in an outage, the metric counts each request
            self._next_failure_log = now + 10.0
            _log.warning("policy could not decide (failure mode %s): %s", self._cfg.failure_mode, error)
        if self._cfg.failure_mode == "open":
            return None
        return Decision.deny(503, Outcome.ERROR, "policy_unavailable" if unavailable else "policy_error",
                             "policy decision unavailable")


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
    return PolicyPhase(settings.policy, _contract_lookup(settings), settings.gateway_id)
