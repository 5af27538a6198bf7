"""The decision log: one JSON line per policy decision, secrets redacted, written off the request path.

The request path encodes the entry's input and result with orjson and appends
them to a bounded queue; a background task redacts them and assembles the lines
on the event loop in short slices (each bounded in time, so a burst of lines never holds a request
back for long) and hands the encoded batch to a thread for the write. When the
queue is full the newest entries are dropped and counted, never waited for.

Why not encode in a thread: a CPU-bound thread holds the GIL for a whole switch
interval (5 ms) each time the loop asks for it back, which is what made the p99
tail of a loaded Link (measured: 13.9 ms with the log on, 5.1 ms off).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

import orjson

from link.component import cancel_task
from link.policy.metrics import DECISION_LOG_DROPPED

__all__ = ["DecisionEntry", "DecisionLog", "redact", "redact_json"]

_log = logging.getLogger("stoa.link.policy")

REDACTED = "[REDACTED]"
_REDACTED_JSON = json.dumps(REDACTED)

# How long one encoding slice may hold the event loop before it yields to requests.
_SLICE_S = 0.0005


@dataclass(slots=True)
class DecisionEntry:
    """What one decision leaves in the log; ``input`` is redacted when written, not when recorded."""

    decision_id: str
    timestamp: float
    query: str
    input: Mapping[str, Any] | None
    result: Any
    allowed: bool
    latency_us: float
    revision: str = ""
    engine: str = "embedded"
    dry_run: bool = False
    error: str = ""
    request_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)


# What the queue holds per entry: DecisionEntry's fields, input and result already encoded (the
# result stays a bool when it is one): text and numbers, nothing the cyclic collector has to scan.
_Packed = tuple[str, float, str, str, "bool | str", bool, bool, float, str, str, str, str, dict[str, str]]


def redact(value: Any, keys: frozenset[str]) -> Any:
    """A copy of a JSON value with the values of ``keys`` (any depth, case-insensitive) replaced."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out[k] = REDACTED if isinstance(k, str) and k.lower() in keys else redact(v, keys)
        return out
    if isinstance(value, list | tuple):
        return [redact(v, keys) for v in value]
    return value


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def _dumps(value: Any) -> str:
    """Compact JSON: orjson (about 15x faster than ``json.dumps`` on a policy input), else the stdlib.

    orjson refuses what the stdlib accepts (integers past 64 bits, NaN as a number, nesting past
    254); those documents take the stdlib's encoding, so every value the log took before still encodes.
    """
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, separators=(",", ":"), default=str)


class _JsonRedactor:
    """Redaction on the encoded JSON text: one C-speed encoding and a few substring searches.

    Walking the document in Python to copy it cost more than encoding it. When the text is
    ASCII, its lower-cased copy has the same offsets (any other text takes the exact walk). In compact
    JSON an object key is always preceded by ``{`` or ``,`` outside any string (inside
    a string every quote is escaped), so ``{"key":`` / ``,"key":`` find exactly the
    keys. A string value is replaced in place; any other value (object, list, number)
    under a secret key, or any escaped character (which might case-fold onto a secret
    name), sends the document down the exact Python walk instead (of the text decoded again).
    """

    def __init__(self, keys: frozenset[str]) -> None:
        self._keys = keys
        # One search per distinct ending, not per key: a key ends with exactly one of these
        # (none is a suffix of another), e.g. ``token":`` finds token, access_token, x-auth-token.
        # Each search reads the whole text, so fewer searches is most of the cost.
        endings: list[str] = []
        for key in sorted(keys, key=len):
            if not any(key.endswith(e) for e in endings):
                endings.append(key)
        self._needles = tuple(f'{e}":' for e in endings)
        # Quotes or backslashes in a name would need the escapes understood: the exact walk then.
        self._exact = not all(k.isascii() and '"' not in k and "\\" not in k for k in keys)

    def _walk(self, value: Any) -> str:
        # The stdlib's ASCII encoding, as the log always wrote it (its lines stay ASCII on any stdout).
        return json.dumps(redact(value, self._keys) if self._keys else value, separators=(",", ":"), default=str)

    def __call__(self, value: Any) -> str:
        return self.text(_dumps(value))

    def text(self, text: str) -> str:
        """The redacted form of compact JSON text as :func:`_dumps` encodes it."""
        if not text.isascii():
            return self._walk(json.loads(text))
        if not self._keys:
            return text
        if self._exact or ("\\" in text and "\\u" in text):  # one memchr rules out any escape
            return self._walk(json.loads(text))
        lowered = text.lower()
        spans: list[tuple[int, int]] = []
        for needle in self._needles:
            at = lowered.find(needle)
            while at >= 0:
                # Outside strings, a quote before a colon always ends an object key: its name starts
                # after the quote before it (a name with an escaped quote never equals a secret one).
                start = at + len(needle)
                opening = lowered.rfind('"', 0, at)
                if (opening > 0 and text[opening - 1] in "{," and lowered[opening + 1:start - 2] in self._keys):
                    m = _JSON_STRING.match(text, start)
                    if m is None:
                        return self._walk(json.loads(text))
                    spans.append((start, m.end()))
                at = lowered.find(needle, start)
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        pos = 0
        for start, end in spans:
            out += [text[pos:start], _REDACTED_JSON]
            pos = end
        out.append(text[pos:])
        return "".join(out)


_SCALARS = {True: "true", False: "false"}
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def redact_json(value: Any, keys: frozenset[str]) -> str:
    """``value`` as compact JSON with the values of ``keys`` (any depth, case-insensitive) redacted."""
    return _JsonRedactor(keys)(value)


def _redact_query_string(path: str, keys: frozenset[str]) -> str:
    if "?" not in path:
        return path
    head, _, query = path.partition("?")

    def repl(m: re.Match[str]) -> str:
        return f"{m.group(1)}={REDACTED}" if m.group(1).lower() in keys else m.group(0)

    return head + "?" + re.sub(r"([^&=]+)=([^&]*)", repl, query)


def _loggable_input(doc: Mapping[str, Any] | None, keys: frozenset[str]) -> Mapping[str, Any] | None:
    """The input with the request path's query redacted and the raw body left out (shallow copies only)."""
    if doc is None:
        return None
    attributes = doc.get("attributes")
    request = attributes.get("request") if isinstance(attributes, Mapping) else None
    http = request.get("http") if isinstance(request, Mapping) else None
    if not isinstance(http, Mapping):
        return doc
    path, body = http.get("path"), http.get("body")
    if not (isinstance(path, str) and "?" in path) and not isinstance(body, str):
        return doc
    clean_http = dict(http)
    if isinstance(path, str):
        clean_http["path"] = _redact_query_string(path, keys)
    if isinstance(body, str):
        # The raw body may hold anything; its JSON form (parsed_body) is logged redacted.
        clean_http["body"] = f"[{len(body)} characters not logged]"
    return {**doc, "attributes": {**attributes, "request": {**request, "http": clean_http}}}  # type: ignore[dict-item]


def reference_timestamp(epoch: float) -> str:
    """RFC 3339 in UTC, as the log always wrote it (``datetime.isoformat``; no fraction on a whole second)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _timestamp(epoch: float) -> str:
    """:func:`reference_timestamp`, formatting each second once (entries come many per second).

    Microseconds are rounded half-even like ``datetime.fromtimestamp``.
    """
    frac, whole = math.modf(epoch)
    us = round(frac * 1e6)
    sec = int(whole)
    if us >= 1_000_000:
        sec, us = sec + 1, us - 1_000_000
    elif us < 0:
        sec, us = sec - 1, us + 1_000_000
    if _second[0] != sec:
        _second[0], _second[1] = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_second[1]}.{us:06d}Z" if us else f"{_second[1]}Z"


class DecisionLog:
    """Bounded queue + background writer for decision entries."""

    def __init__(self, target: str, redact_keys: Iterable[str], max_queue: int = 10_000,
                 flush_interval_s: float = 0.2) -> None:
        self.target = target
        self._keys = frozenset(k.lower() for k in redact_keys)
        self._redact = _JsonRedactor(self._keys)
        self._queue: deque[_Packed] = deque()
        self._max = max_queue
        self._interval = flush_interval_s
        self._task: asyncio.Task[None] | None = None
        self._dropped = 0

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def pending(self) -> int:
        """Entries recorded and not written yet."""
        return len(self._queue)

    def record(self, entry: DecisionEntry) -> None:
        """Queue one entry; never blocks, never raises.

        The input and the result are encoded here (orjson: a microsecond or two for a policy input)
        and queued as text. A queue of live documents (a few dozen dicts and lists each, thousands
        between two flushes) survived into the collector's older generations: measured on the API-key
        route, half the collections and half their time went with it. Redaction and the rest of
        the line wait for the background writer.
        """
        if len(self._queue) >= self._max:
            self._dropped += 1
            DECISION_LOG_DROPPED.inc()
            return
        try:
            self._queue.append(self._pack(entry))
        except Exception:  # a decision is never failed by its log line
            _log.exception("decision log: entry %s not encoded", entry.decision_id)

    def _pack(self, entry: DecisionEntry) -> _Packed:
        result = entry.result
        return (
            entry.decision_id, entry.timestamp, entry.query, _dumps(_loggable_input(entry.input, self._keys)),
            result if type(result) is bool else _dumps(result),
            entry.allowed, entry.dry_run, float(round(entry.latency_us, 1)), entry.revision, entry.engine,
            entry.request_id, entry.error, entry.labels,
        )

    def line(self, entry: DecisionEntry) -> str:
        """The JSON line for one entry (redacted)."""
        return self._line(self._pack(entry))

    def _line(self, packed: _Packed) -> str:
        (decision_id, timestamp, query, doc, result, allowed, dry_run, latency_us, revision, engine,
         request_id, error, labels) = packed
        # Fields in the order they always had; input and result are redacted on their own.
        parts = [
            '{"decision_id":', _quote(decision_id),
            ',"timestamp":', _quote(_timestamp(timestamp)),
            ',"path":', _quote(query),
            ',"input":', self._redact.text(doc),
            ',"result":', _SCALARS[result] if type(result) is bool else self._redact.text(result),
            ',"allowed":', "true" if allowed else "false",
            ',"dry_run":', "true" if dry_run else "false",
            ',"metrics":{"timer_policy_eval_us":', repr(latency_us), "}",
            ',"revision":', _quote(revision),
            ',"engine":', _quote(engine),
            ',"request_id":', _quote(request_id),
        ]
        if error:
            parts += [',"error":', json.dumps(error)]
        if labels:
            parts += [',"labels":', json.dumps(labels, separators=(",", ":"))]
        parts.append("}")
        return "".join(parts)

    def _write(self, text: str) -> None:
        try:
            if self.target == "stdout":
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                with open(self.target, "a", encoding="utf-8") as fh:
                    fh.write(text)
        except OSError as exc:
            _log.error("decision log %s: cannot write: %s", self.target, exc)

    def flush(self) -> int:
        """Encode and write every queued entry now (blocking); returns how many were written."""
        lines: list[str] = []
        while self._queue:
            packed = self._queue.popleft()
            try:
                lines.append(self._line(packed))
            except Exception:
                _log.exception("decision log: entry %s not encoded", packed[0])
        if lines:
            self._write("\n".join(lines) + "\n")
        return len(lines)

    async def drain(self) -> int:
        """Encode the queue in slices of at most ``_SLICE_S`` on the loop, write the batch in a thread."""
        lines: list[str] = []
        queue = self._queue
        while queue:
            deadline = time.perf_counter() + _SLICE_S
            while queue and time.perf_counter() < deadline:
                packed = queue.popleft()
                try:
                    lines.append(self._line(packed))
                except Exception:  # one bad entry must not lose the batch
                    _log.exception("decision log: entry %s not encoded", packed[0])
            await asyncio.sleep(0)  # let waiting requests run between slices
        if lines:
            await asyncio.to_thread(self._write, "\n".join(lines) + "\n")
        return len(lines)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if self._queue:
                await self.drain()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="policy-decision-log")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        await asyncio.to_thread(self.flush)
