"""A request's JSON body, parsed once for every phase that reads it.

The contract reads the body strictly (a duplicate key is refused: another parser may keep the
first value where Python keeps the last) and the policy input carries it as OPA-Envoy's
``parsed_body`` (duplicates allowed, the last one wins, as Go decodes). Both ask here: the body is
parsed strictly once per request, and the strict value is the lenient one whenever the strict parse
succeeds. Only a body the strict parse refuses is parsed again, leniently, for the policy.

Neither phase changes the value it gets (the contract copies the top level into its arguments;
the policy input is encoded, never edited), so one value serves both.
"""

from __future__ import annotations

from typing import Any

from link import jsonsafe
from link.model import Request

__all__ = ["lenient", "strict"]


def strict(request: Request, body: bytes) -> Any:
    """``body`` (the request's) as one JSON value, duplicate keys refused; raises :class:`JsonRefused`."""
    memo = request.body_json
    if memo is None or memo[0] is not body:
        try:
            memo = (body, jsonsafe.loads(body, max_bytes=max(len(body), 1), reject_duplicate_keys=True), None)
        except jsonsafe.JsonRefused as exc:
            memo = (body, None, exc)
        request.body_json = memo
    if memo[2] is not None:
        raise memo[2]
    return memo[1]


def lenient(request: Request, body: bytes) -> Any:
    """``body`` as one JSON value, the last of duplicate keys kept; raises :class:`JsonRefused`."""
    try:
        return strict(request, body)
    except jsonsafe.JsonRefused as exc:
        if exc.reason != "duplicate_key":
            raise
    return jsonsafe.loads(body, max_bytes=max(len(body), 1))
