"""``Pipeline.run`` itself: phase order, a refusal stops the rest, a crashing phase is a 500 with
Link's JSON body, observers can neither break nor change a decision.

The phases are small recording stand-ins; the response builder is the real one, since the body
of a refusal is what clients see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from link.model import Decision, Outcome, Request, RequestContext, RouteMatch
from link.pipeline.base import Pipeline
from link.pipeline.response import ResponsePhase
from link.settings import IdentitySettings

NAMES = ("identity", "policy", "ratelimit", "contract")


@dataclass
class Recorder:
    """A phase that notes that it ran and then does what it was told."""

    name: str
    ran: list[str]
    answer: Decision | None = None
    crash: BaseException | None = None

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        self.ran.append(self.name)
        if self.crash is not None:
            raise self.crash
        return self.answer


class NoRoute:
    def resolve(self, request: Request) -> RouteMatch | None:
        return None


@dataclass
class Seen:
    decisions: list[Decision] = field(default_factory=list)

    def observe(self, ctx: RequestContext, decision: Decision) -> None:
        self.decisions.append(decision)


class Broken:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.calls = 0

    def observe(self, ctx: RequestContext, decision: Decision) -> None:
        self.calls += 1
        raise self.exc


def pipeline(ran: list[str], observers: tuple[object, ...] = (), **special: Recorder) -> Pipeline:
    phases = [special.get(n) or Recorder(n, ran) for n in NAMES]
    return Pipeline(NoRoute(), phases, ResponsePhase(IdentitySettings()), observers)  # type: ignore[arg-type]


def request(request_id: str = "req-7") -> Request:
    return Request(method="GET", path="/api/orders", headers={}, request_id=request_id)


async def test_phases_run_in_order_and_an_allowed_request_is_built_by_the_response_phase() -> None:
    ran: list[str] = []
    result = await pipeline(ran).run(request())
    assert ran == list(NAMES)
    assert result.decision.allowed and result.decision.http_status == 200
    assert set(NAMES) | {"response"} <= set(result.ctx.timings_ns)
    assert result.decision.response_headers["x-request-id"] == "req-7"


@pytest.mark.parametrize("at", NAMES)
async def test_a_refusal_stops_the_later_phases(at: str) -> None:
    ran: list[str] = []
    refusal = Decision.deny(403, Outcome.POLICY_DENIED, f"{at}_says_no", f"refused by {at}")
    result = await pipeline(ran, **{at: Recorder(at, ran, answer=refusal)}).run(request())
    assert ran == list(NAMES[:NAMES.index(at) + 1])
    decision = result.decision
    assert not decision.allowed and decision.http_status == 403 and decision.reason == f"{at}_says_no"
    assert json.loads(decision.body or b"") == {"error": "forbidden", "reason": f"refused by {at}",
                                                "request_id": "req-7"}


SECRET = "dsn=postgres://admin:hunter2@db"  # what an exception message may hold; never sent to clients
CRASHES = [ValueError(SECRET), KeyError(SECRET), RuntimeError(SECRET), ZeroDivisionError(SECRET),
           RecursionError(SECRET), AttributeError(SECRET), TypeError(SECRET)]


@pytest.mark.parametrize("at", NAMES)
@pytest.mark.parametrize("crash", CRASHES, ids=[type(c).__name__ for c in CRASHES])
async def test_a_crashing_phase_is_a_500_with_the_json_body(at: str, crash: Exception) -> None:
    ran: list[str] = []
    result = await pipeline(ran, **{at: Recorder(at, ran, crash=crash)}).run(request(""))
    decision = result.decision
    assert ran == list(NAMES[:NAMES.index(at) + 1])  # nothing after the crash runs
    assert not decision.allowed and decision.http_status == 500 and decision.outcome is Outcome.ERROR
    body = json.loads(decision.body or b"")
    # The request had no id: the one Link made up is in the body and in the response header.
    assert body == {"error": "internal_error", "reason": "internal error", "request_id": result.ctx.request.request_id}
    assert body["request_id"] and decision.response_headers["x-request-id"] == body["request_id"]
    assert decision.content_type == "application/json"
    assert result.ctx.record.error == f"{at}: {type(crash).__name__}"
    assert b"hunter2" not in (decision.body or b"")  # the exception text stays in the log


async def test_a_cancelled_phase_is_not_turned_into_a_decision() -> None:
    import asyncio

    ran: list[str] = []
    with pytest.raises(asyncio.CancelledError):
        await pipeline(ran, policy=Recorder("policy", ran, crash=asyncio.CancelledError())).run(request())


def _shape(d: Decision) -> tuple[object, ...]:
    return (d.allowed, d.http_status, d.outcome, d.reason, d.body, dict(d.upstream_headers), list(d.remove_headers))


@pytest.mark.parametrize("case", ["allowed", "refused", "crashed"])
async def test_an_observer_that_raises_changes_nothing(case: str) -> None:
    def special(ran: list[str]) -> dict[str, Recorder]:
        if case == "refused":
            return {"policy": Recorder("policy", ran, answer=Decision.deny(429, Outcome.RATE_LIMITED, "limit", "slow"))}
        if case == "crashed":
            return {"contract": Recorder("contract", ran, crash=ValueError("x"))}
        return {}

    quiet_ran: list[str] = []
    quiet = await pipeline(quiet_ran, **special(quiet_ran)).run(request())
    ran: list[str] = []
    broken = [Broken(RuntimeError("observer bug")), Broken(ValueError("another"))]
    seen = Seen()
    noisy = await pipeline(ran, (broken[0], seen, broken[1]), **special(ran)).run(request())
    assert ran == quiet_ran
    assert _shape(noisy.decision) == _shape(quiet.decision)
    # Every observer was called, the ones after a raising one too, with the decision returned.
    assert [b.calls for b in broken] == [1, 1] and seen.decisions == [noisy.decision]
