"""The one thread that writes status patches, merging those queued for the same resource."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter

from link.backoff import Backoff
from link.metrics import REGISTRY
from link.registry.kubernetes.api import FIELD_MANAGER, LOGGER, PLURALS, VERSION, brief
from link.registry.kubernetes.status import merged
from link.registry.model import GROUP

__all__ = ["STATUS_WRITES", "StatusWriter"]

_log = logging.getLogger(LOGGER)

STATUS_WRITES = Counter(
    "stoa_link_registry_kube_status_writes_total",
    "Status subresource writes, by result.",
    ["result"],
    registry=REGISTRY,
)

_Key = tuple[str, str, str]  # kind, namespace, name


@dataclass
class _PendingWrite:
    body: dict[str, Any]
    attempts: int = 0
    not_before: float = 0.0


class StatusWriter:
    """One thread writing status patches; patches queued for the same resource are merged into one."""

    _MAX_ATTEMPTS = 5

    def __init__(self, api: k8s_client.CustomObjectsApi, stopping: threading.Event, timeout_s: float) -> None:
        self._api = api
        self._stopping = stopping
        self._timeout_s = timeout_s
        self._cond = threading.Condition()
        self._pending: dict[_Key, _PendingWrite] = {}
        self._inflight = 0
        self._forbidden_logged = False
        # A failed write waits 0.4 s, 0.8 s, ... (jittered) before its next try.
        self._retry = Backoff(0.4, 30.0)
        self.thread = threading.Thread(target=self._run, name="registry-kube-status", daemon=True)

    def submit(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        """Queue a status patch (merged into one already queued for the same resource)."""
        key = (kind, namespace, name)
        with self._cond:
            queued = self._pending.get(key)
            self._pending[key] = _PendingWrite(merged(queued.body, body) if queued else body)
            self._cond.notify()

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Drop what is queued for a resource that is gone."""
        with self._cond:
            self._pending.pop((kind, namespace, name), None)

    def wake(self) -> None:
        """Wake the thread (to see ``stopping``)."""
        with self._cond:
            self._cond.notify_all()

    def idle(self) -> bool:
        """True when nothing is queued or being written."""
        with self._cond:
            return not self._pending and not self._inflight

    def _next(self) -> tuple[_Key, _PendingWrite] | None:
        with self._cond:
            while not self._stopping.is_set():
                now = time.monotonic()
                due = [(k, w) for k, w in self._pending.items() if w.not_before <= now]
                if due:
                    key, write = due[0]
                    del self._pending[key]
                    self._inflight += 1
                    return key, write
                wait = min((w.not_before for w in self._pending.values()), default=now + 1.0) - now
                self._cond.wait(max(0.01, min(wait, 1.0)))
        return None

    def _run(self) -> None:
        while (item := self._next()) is not None:
            key, write = item
            try:
                self._write(key, write.body)
            except Exception as exc:  # never let one bad write end the writer
                self._failed(key, write, exc)
            finally:
                with self._cond:
                    self._inflight -= 1

    def _write(self, key: _Key, body: dict[str, Any]) -> None:
        kind, namespace, name = key
        self._api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURALS[kind], name, body,
            field_manager=FIELD_MANAGER, _request_timeout=self._timeout_s,
        )
        STATUS_WRITES.labels("ok").inc()

    def _failed(self, key: _Key, write: _PendingWrite, exc: Exception) -> None:
        kind, namespace, name = key
        code = exc.status if isinstance(exc, ApiException) else None
        if code == 404:  # deleted meanwhile: nothing to report on
            STATUS_WRITES.labels("not_found").inc()
            return
        if code in (401, 403):
            STATUS_WRITES.labels("forbidden").inc()
            log = _log.debug if self._forbidden_logged else _log.warning
            self._forbidden_logged = True
            log("cannot write status of %s %s/%s (%s): grant patch on %s.%s/status to Link's service account",
                kind, namespace, name, code, PLURALS[kind], GROUP)
            return
        STATUS_WRITES.labels("error").inc()
        write.attempts += 1
        if write.attempts >= self._MAX_ATTEMPTS:
            _log.warning("giving up writing status of %s %s/%s: %s", kind, namespace, name, brief(exc))
            return
        write.not_before = time.monotonic() + self._retry.delay(write.attempts - 1)
        with self._cond:
            queued = self._pending.get(key)
            if queued is not None:  # a newer patch came meanwhile: it wins where both say something
                write.body = merged(write.body, queued.body)
            self._pending[key] = write
