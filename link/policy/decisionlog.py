"""The decision log: one JSON line per policy decision, secrets redacted, written off the request path.

The request path only appends an entry to a bounded queue; a background task
redacts, serializes and writes them (to a file or stdout). When the queue is
full the newest entries are dropped and counted, never waited for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from link.component import cancel_task
from link.policy.metrics import DECISION_LOG_DROPPED

__all__ = ["DecisionEntry", "DecisionLog", "redact"]

_log = logging.getLogger("stoa.link.policy")

REDACTED = "[REDACTED]"


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


def _redact_query_string(path: str, keys: frozenset[str]) -> str:
    if "?" not in path:
        return path
    head, _, query = path.partition("?")

    def repl(m: re.Match[str]) -> str:
        return f"{m.group(1)}={REDACTED}" if m.group(1).lower() in keys else m.group(0)

    return head + "?" + re.sub(r"([^&=]+)=([^&]*)", repl, query)


def _safe_input(doc: Mapping[str, Any] | None, keys: frozenset[str]) -> Any:
    if doc is None:
        return None
    clean = redact(doc, keys)
    http = clean.get("attributes", {}).get("request", {}).get("http")
    if isinstance(http, dict):
        if isinstance(http.get("path"), str):
            http["path"] = _redact_query_string(http["path"], keys)
        if isinstance(http.get("body"), str):
            # The raw body may hold anything; its JSON form (parsed_body) is logged redacted.
            http["body"] = f"[{len(http['body'])} characters not logged]"
    return clean


class DecisionLog:
    """Bounded queue + background writer for decision entries."""

    def __init__(self, target: str, redact_keys: Iterable[str], max_queue: int = 10_000,
                 flush_interval_s: float = 0.2) -> None:
        self.target = target
        self._keys = frozenset(k.lower() for k in redact_keys)
        self._queue: deque[DecisionEntry] = deque()
        self._max = max_queue
        self._interval = flush_interval_s
        self._task: asyncio.Task[None] | None = None
        self._dropped = 0

    @property
    def dropped(self) -> int:
        return self._dropped

    def record(self, entry: DecisionEntry) -> None:
        """Queue one entry; never blocks."""
        if len(self._queue) >= self._max:
            self._dropped += 1
            DECISION_LOG_DROPPED.inc()
            return
        self._queue.append(entry)

    def line(self, entry: DecisionEntry) -> str:
        """The JSON line for one entry (redacted)."""
        doc = {
            "decision_id": entry.decision_id,
            "timestamp": datetime.fromtimestamp(entry.timestamp, UTC).isoformat().replace("+00:00", "Z"),
            "path": entry.query,
            "input": _safe_input(entry.input, self._keys),
            "result": redact(entry.result, self._keys),
            "allowed": entry.allowed,
            "dry_run": entry.dry_run,
            "metrics": {"timer_policy_eval_us": round(entry.latency_us, 1)},
            "revision": entry.revision,
            "engine": entry.engine,
            "request_id": entry.request_id,
        }
        if entry.error:
            doc["error"] = entry.error
        if entry.labels:
            doc["labels"] = entry.labels
        return json.dumps(doc, separators=(",", ":"), default=str)

    def flush(self) -> int:
        """Write every queued entry now (blocking); returns how many were written."""
        lines: list[str] = []
        while self._queue:
            lines.append(self.line(self._queue.popleft()))
        if not lines:
            return 0
        text = "\n".join(lines) + "\n"
        try:
            if self.target == "stdout":
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                with open(self.target, "a", encoding="utf-8") as fh:
                    fh.write(text)
        except OSError as exc:
            _log.error("decision log %s: cannot write: %s", self.target, exc)
        return len(lines)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if self._queue:
                await asyncio.to_thread(self.flush)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="policy-decision-log")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        await asyncio.to_thread(self.flush)
