"""One JSON parse of a request body for the contract and the policy input, with each phase's own answer.

The contract reads bodies strictly (duplicate keys refused) and the policy's ``parsed_body`` leniently
(the last duplicate wins, as OPA-Envoy's Go decoder): whichever phase runs first, each must answer
exactly what it answers on a request of its own, on ordinary and on hostile bodies, and the body is
parsed once unless the strict parse refuses a duplicate key.
"""

from __future__ import annotations

from typing import Any

import pytest

from link import jsonsafe
from link.contracts.model import Contract, Endpoint
from link.contracts.validation import CompiledEndpoint
from link.model import Request
from link.policy.bodies import InputError, parse_body
from tests.unit.contracts.test_contract_hostile_json import HOSTILE

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}, "x": {"type": "object"}}}
ENDPOINT = CompiledEndpoint(
    Contract(name="things", version="1.0.0", tenant_id="t", classification="H",
             endpoints=(Endpoint(path="/things", methods=("POST",), input_schema=SCHEMA),)),
    Endpoint(path="/things", methods=("POST",), input_schema=SCHEMA))

BODIES = {
    **HOSTILE,
    "object": b'{"n": 1, "x": {"a": [1, 2.5, "three", null, true]}}',
    "wrong-type": b'{"n": "one"}',
    "array": b"[1, 2]",
    "nested-duplicate": b'{"x": {"a": 1, "a": 2}}',
    "duplicate-then-garbage": b'{"n": 1, "n": 2, }',
    "escaped-duplicate": b'{"n": 1, "\\u006e": 2}',
    "not-json": b"n=1",
    "empty-object": b"{}",
}


def _request(body: bytes) -> Request:
    return Request(method="POST", path="/things", body=body,
                   headers={"content-type": "application/json", "content-length": str(len(body))})


def _policy(request: Request) -> Any:
    try:
        return ("ok", parse_body(request))
    except InputError as exc:
        return ("refused", str(exc))


def _contract(request: Request) -> Any:
    violation, checked = ENDPOINT.validate(request, {}, 1 << 20)
    return checked, None if violation is None else (violation.status, violation.message, violation.reason)


class _Counting:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = jsonsafe.loads

        def loads(raw: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(raw, **kwargs)

        monkeypatch.setattr(jsonsafe, "loads", loads)


@pytest.mark.parametrize("contract_first", [True, False], ids=["contract-first", "policy-first"])
@pytest.mark.parametrize("case", sorted(BODIES))
def test_each_phase_answers_as_on_a_request_of_its_own_and_the_body_is_parsed_once(
    case: str, contract_first: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = BODIES[case]
    alone_policy, alone_contract = _policy(_request(body)), _contract(_request(body))
    counting = _Counting(monkeypatch)
    shared = _request(body)
    if contract_first:
        contract, policy = _contract(shared), _policy(shared)
    else:
        policy, contract = _policy(shared), _contract(shared)
    assert (policy, contract) == (alone_policy, alone_contract)
    duplicate = isinstance(shared.body_json, tuple) and isinstance(shared.body_json[2], jsonsafe.JsonRefused) \
        and shared.body_json[2].reason == "duplicate_key"
    assert counting.calls == (2 if duplicate else 1)


def test_a_duplicate_key_is_the_contracts_400_and_the_policys_last_value() -> None:
    request = _request(b'{"n": 1, "n": 2}')
    assert _contract(request)[1][:2] == (400, "body: duplicate key 'n'")
    assert _policy(request) == ("ok", ({"n": 2}, False))


def test_a_body_replaced_on_the_request_is_parsed_again() -> None:
    request = _request(b'{"n": 1}')
    assert _policy(request) == ("ok", ({"n": 1}, False))
    request.body = b'{"n": "one"}'
    assert _policy(request) == ("ok", ({"n": "one"}, False))
    assert _contract(request)[1][0] == 422
