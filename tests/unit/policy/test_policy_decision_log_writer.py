"""The decision log's writer: redaction on the encoded text equals the exact walk; slices, drops, order."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from link.policy.decisionlog import REDACTED, DecisionEntry, DecisionLog, redact, redact_json

KEYS = frozenset({"authorization", "password", "x-api-key", "access_token", "token"})

# Keys drawn so that secret names (in any case) are frequent, alongside tricky ordinary ones.
_key = st.one_of(
    st.sampled_from(["authorization", "Password", "X-API-KEY", "token", "tokens", "my-token", "access_token",
                     'pass"word', "password\\", ",\"password\":", "name", "", "ü-token", "K"]),
    st.text(max_size=8),
)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=12),
                    st.sampled_from(['{"password":"x"}', '","password":"', "\\", '"', "\\u0041"]))
_json = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(_key, inner, max_size=5)), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_text_redaction_equals_the_exact_walk(value: Any) -> None:
    assert json.loads(redact_json(value, KEYS)) == redact(value, KEYS)


TABLE: list[tuple[Any, Any]] = [
    ({"Authorization": "Bearer x"}, {"Authorization": REDACTED}),
    ({"a": [{"password": "p"}, {"b": {"TOKEN": "t"}}]}, {"a": [{"password": REDACTED}, {"b": {"TOKEN": REDACTED}}]}),
    ({"password": {"nested": "object"}}, {"password": REDACTED}),  # non-string value: exact walk
    ({"password": 1234}, {"password": REDACTED}),
    ({"note": 'say "password":"x"'}, {"note": 'say "password":"x"'}),  # inside a string: not a key
    ({"tokens": "kept", "my-token": "kept"}, {"tokens": "kept", "my-token": "kept"}),  # whole names only
    ({"pässword": "x", "password": "y"}, {"pässword": "x", "password": REDACTED}),
    ([], []),
    ("plain", "plain"),
    # One search finds every key with the same ending (token, access_token), whole names only.
    ({"access_token": "a", "mytoken": "b", "Token": "c", "x": {"ACCESS_TOKEN": "d"}},
     {"access_token": REDACTED, "mytoken": "b", "Token": REDACTED, "x": {"ACCESS_TOKEN": REDACTED}}),
    ({'a"token': "kept", "a\\token": "kept", "t": 'x","token":"y'},
     {'a"token': "kept", "a\\token": "kept", "t": 'x","token":"y'}),  # escapes in names and values
    ({"note": "C:\\dir", "token": "t"}, {"note": "C:\\dir", "token": REDACTED}),  # a backslash, no \u escape
]


def test_redaction_table() -> None:
    for value, expected in TABLE:
        assert json.loads(redact_json(value, KEYS)) == expected, value


def _entry(n: int, **kw: Any) -> DecisionEntry:
    doc = {"attributes": {"request": {"http": {"path": f"/p?access_token=s3cr3t&n={n}", "body": "password=x",
                                               "headers": {"x-api-key": "k-1", "user-agent": "t"}}}}}
    return DecisionEntry(decision_id=f"d{n}", timestamp=0.0, query="data.x.allow", input=doc, result=True,
                         allowed=True, latency_us=1.0, request_id=f"r{n}", **kw)


async def test_drain_writes_every_entry_in_order_redacted(tmp_path: Path) -> None:
    log = DecisionLog(str(tmp_path / "d.jsonl"), KEYS)
    entries = [_entry(i) for i in range(3000)]
    for e in entries:
        log.record(e)
    original = json.dumps(entries[0].input)
    assert await log.drain() == 3000
    lines = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [x["decision_id"] for x in lines] == [f"d{i}" for i in range(3000)]
    http = lines[7]["input"]["attributes"]["request"]["http"]
    assert http == {"path": f"/p?access_token={REDACTED}&n=7", "body": "[10 characters not logged]",
                    "headers": {"x-api-key": REDACTED, "user-agent": "t"}}
    assert json.dumps(entries[0].input) == original  # the recorded input is never modified


async def test_drain_yields_to_the_loop_between_slices(tmp_path: Path) -> None:
    log = DecisionLog(str(tmp_path / "d.jsonl"), KEYS)
    for i in range(5000):
        log.record(_entry(i))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await log.drain()
    task.cancel()
    # 5,000 lines take far longer than one slice: other tasks ran in between.
    assert ticks > 1


async def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    log = DecisionLog(str(tmp_path / "d.jsonl"), KEYS, max_queue=10)
    for i in range(15):
        log.record(_entry(i))
    assert log.pending == 10 and log.dropped == 5
    assert log.flush() == 10


async def test_an_unencodable_entry_is_skipped_not_the_batch(tmp_path: Path) -> None:
    log = DecisionLog(str(tmp_path / "d.jsonl"), KEYS)
    log.record(_entry(1))
    log.record(_entry(2, labels={"x": float("nan")}))  # type: ignore[dict-item]
    bad = _entry(3)
    bad.latency_us = "not a number"  # type: ignore[assignment]
    log.record(bad)
    log.record(_entry(4))
    await log.drain()
    ids = [json.loads(x)["decision_id"] for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert ids == ["d1", "d2", "d4"]


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.floats(min_value=0, max_value=4e9, allow_nan=False),
                 st.integers(0, 4 * 10**9).map(float),
                 st.tuples(st.integers(0, 4 * 10**9), st.integers(0, 999_999)).map(lambda t: t[0] + (t[1] + .5) / 1e6)))
def test_timestamps_format_like_datetime(epoch: float) -> None:
    from link.policy.decisionlog import _timestamp, reference_timestamp

    assert _timestamp(epoch) == reference_timestamp(epoch)


async def test_the_queue_holds_text_not_the_live_document(tmp_path: Path) -> None:
    """What is queued is the input as decided, encoded: neither a later change to the document nor
    the document itself (thousands of them between flushes kept the cyclic collector busy) stays."""
    import gc
    import weakref

    class Doc(dict):  # type: ignore[type-arg,unused-ignore]  # a dict that can be weakly referenced
        pass

    log = DecisionLog(str(tmp_path / "d.jsonl"), KEYS)
    doc = Doc(attributes={"request": {"http": {"headers": {"authorization": "Bearer s3cr3t", "x": "1"}}}})
    entry = DecisionEntry(decision_id="d1", timestamp=0.0, query="data.x.allow", input=doc, result={"allow": True},
                          allowed=True, latency_us=1.0)
    log.record(entry)
    alive = weakref.ref(doc)
    doc["attributes"]["request"]["http"]["headers"]["x"] = "changed later"
    del doc, entry
    gc.collect()
    assert alive() is None
    assert await log.drain() == 1
    line = json.loads((tmp_path / "d.jsonl").read_text())
    assert line["input"]["attributes"]["request"]["http"]["headers"] == {"authorization": REDACTED, "x": "1"}
    assert line["result"] == {"allow": True}
