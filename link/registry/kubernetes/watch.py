"""One list/watch loop: the reflector of one kind in one namespace (or the whole cluster).

List (paged), then watch from the list's resourceVersion with bookmarks; on
``410 Gone`` list again; on an error or a dropped connection wait (the shared
jittered backoff) and watch again from the last resourceVersion seen. The
``kubernetes`` client is synchronous, hence one thread per loop.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter

from link.backoff import Backoff
from link.metrics import REGISTRY
from link.registry.kubernetes.api import LOGGER, PLURALS, VERSION, brief
from link.registry.kubernetes.feeds import Feed
from link.registry.kubernetes.status import desired_status
from link.registry.kubernetes.status_writer import StatusWriter
from link.registry.model import API_VERSION, GROUP, ResourceError

__all__ = ["EVENTS", "RESTARTS", "Stream", "StreamState", "Tuning"]

_log = logging.getLogger(LOGGER)

# Watch is untyped in the client library.
_Watch: Any = k8s_watch.Watch

EVENTS = Counter(
    "stoa_link_registry_kube_events_total",
    "Watch events received from the Kubernetes API, by kind and event type.",
    ["kind", "type"],
    registry=REGISTRY,
)
RESTARTS = Counter(
    "stoa_link_registry_kube_restarts_total",
    "Times a list/watch loop started over, by kind and reason (gone = re-list after 410).",
    ["kind", "reason"],
    registry=REGISTRY,
)


class _Gone(Exception):
    """The resourceVersion we hold is too old: list again."""


@dataclass
class Tuning:
    """Timings and sizes shared by every loop of one source."""

    backoff_initial_s: float
    backoff_max_s: float
    watch_timeout_s: int
    idle_timeout_s: float
    request_timeout_s: float
    page_size: int


@dataclass
class StreamState:
    """What one loop is doing, for readiness and admin pages."""

    listed: bool = False
    phase: str = "starting"
    last_error: str = ""
    resource_version: str | None = None
    lists: int = 0


@dataclass
class Stream:
    """List-then-watch of one kind in one namespace (or the whole cluster)."""

    feed: Feed  # where what this loop sees goes; names the kind
    namespace: str | None
    api: k8s_client.CustomObjectsApi
    writer: StatusWriter | None
    stopping: threading.Event
    tuning: Tuning
    state: StreamState = field(default_factory=StreamState)
    thread: threading.Thread | None = None
    on_listed: Callable[[], None] | None = None  # called after each successful list
    _watch: Any = None  # the kubernetes.watch.Watch in progress

    @property
    def kind(self) -> str:
        return self.feed.kind

    @property
    def label(self) -> str:
        return f"{PLURALS[self.kind]} in {self.namespace or 'all namespaces'}"

    def start(self) -> None:
        name = f"registry-kube-{PLURALS[self.kind]}-{self.namespace or 'all'}"
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def abort(self) -> None:
        """Unblock a watch in progress (the thread then sees ``stopping``)."""
        w = self._watch
        if w is not None:
            w.stop()

    # -- the loop -----------------------------------------------------------
    def _run(self) -> None:
        backoff = Backoff(self.tuning.backoff_initial_s, self.tuning.backoff_max_s)
        relist = True
        while not self.stopping.is_set():
            try:
                if relist:
                    self.state.phase = "listing"
                    self._list()
                    relist = False
                    backoff.reset()
                self.state.phase = "watching"
                if self._watch_once():
                    backoff.reset()
                    self.state.last_error = ""
                    continue
                RESTARTS.labels(self.kind, "empty").inc()
            except _Gone:
                RESTARTS.labels(self.kind, "gone").inc()
                _log.info("%s: resourceVersion %s expired, listing again",
                          self.label, self.state.resource_version)
                relist = True
                continue  # re-list at once; a failing list backs off below
            except Exception as exc:
                if self.stopping.is_set():
                    break
                # A broken watch resumes from the last resourceVersion it saw (state.resource_version).
                self._trouble(exc)
            self.state.phase = "backoff"
            self.stopping.wait(backoff.next_delay())
        self.state.phase = "stopped"

    def _trouble(self, exc: Exception) -> None:
        status = exc.status if isinstance(exc, ApiException) else None
        reason = "error" if status is not None else "connection"
        RESTARTS.labels(self.kind, reason).inc()
        hint = ""
        if status == 404:
            hint = f" (is the CRD {PLURALS[self.kind]}.{GROUP} installed? kubectl apply -f deploy/crds/)"
        elif status in (401, 403):
            hint = f" (grant list and watch on {PLURALS[self.kind]}.{GROUP} to Link's service account)"
        self.state.last_error = f"{brief(exc)}{hint}"
        _log.warning("%s: %s; retrying", self.label, self.state.last_error)

    def _call(self, **kwargs: Any) -> Any:
        if self.namespace is None:
            return self.api.list_cluster_custom_object(GROUP, VERSION, PLURALS[self.kind], **kwargs)
        return self.api.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[self.kind], **kwargs)

    def _list(self) -> None:
        """List every page and replace this scope of the registry with it; the watch starts from here."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        rv = ""
        while True:
            kwargs: dict[str, Any] = {"limit": self.tuning.page_size,
                                      "_request_timeout": self.tuning.request_timeout_s}
            if token:
                kwargs["_continue"] = token
            try:
                page = self._call(**kwargs)
            except ApiException as exc:
                if exc.status == 410 and token:
                    raise _Gone from None  # continue token expired: start the list over
                raise
            meta = page.get("metadata") or {}
            items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
            rv = str(meta.get("resourceVersion") or rv)
            token = meta.get("continue") or None
            if not token:
                break
            if self.stopping.is_set():
                raise InterruptedError("stopping")
        manifests = [self._manifest(i) for i in items]
        scope = None if self.namespace is None else {self.namespace}
        errors = self.feed.relist(manifests, scope)
        for m in manifests:
            meta = m["metadata"]
            self._report(m, errors.get((str(meta.get("namespace", "")), str(meta.get("name", "")))))
        self.state.lists += 1
        self.state.listed = True
        self.state.last_error = ""
        self.state.resource_version = rv
        if self.on_listed is not None:
            self.on_listed()
        _log.info("%s: listed %d resources at resourceVersion %s", self.label, len(manifests), rv)

    def _watch_once(self) -> bool:
        """Follow changes after ``state.resource_version`` until the stream ends; True if it made progress.

        Every event moves ``state.resource_version`` on, so whatever ends the
        stream (timeout, error, cut connection) the next watch resumes there.
        """
        w = _Watch()
        self._watch = w
        if self.stopping.is_set():  # stop() may have run before _watch was set
            return False
        # Server-side timeout spread out so replicas do not reconnect in step (as client-go does).
        timeout = random.randint(self.tuning.watch_timeout_s, 2 * self.tuning.watch_timeout_s)
        started = time.monotonic()
        events = 0
        try:
            stream: Iterator[dict[str, Any]] = w.stream(
                self._call, resource_version=self.state.resource_version, allow_watch_bookmarks=True,
                timeout_seconds=timeout,
                _request_timeout=(self.tuning.request_timeout_s, self.tuning.idle_timeout_s),
            )
            for event in stream:
                events += 1
                self._handle(event)
                if self.stopping.is_set():
                    w.stop()
        except ApiException as exc:
            if exc.status == 410:
                raise _Gone from None
            raise
        finally:
            self._watch = None
        # A clean end after a while is the server-side timeout; an instant empty one deserves a pause.
        return events > 0 or time.monotonic() - started >= 1.0

    def _handle(self, event: Mapping[str, Any]) -> None:
        kind = str(event.get("type"))
        raw = event.get("raw_object")
        EVENTS.labels(self.kind, kind).inc()
        if not isinstance(raw, dict):
            return
        if kind in ("ADDED", "MODIFIED"):
            manifest = self._manifest(raw)
            self._report(manifest, self.feed.apply(manifest))
        elif kind == "DELETED":
            meta = raw.get("metadata") or {}
            ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
            self.feed.delete(ns, name)
            if self.writer is not None:
                self.writer.forget(self.kind, ns, name)
        # BOOKMARK events only carry this: where to resume.
        rv = (raw.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.state.resource_version = str(rv)

    def _manifest(self, raw: dict[str, Any]) -> dict[str, Any]:
        # List items of custom resources carry kind/apiVersion; be safe if a proxy strips them.
        manifest = dict(raw)
        manifest.setdefault("apiVersion", API_VERSION)
        manifest.setdefault("kind", self.kind)
        return manifest

    def _report(self, manifest: Mapping[str, Any], error: ResourceError | None) -> None:
        if self.writer is None:
            return
        meta = manifest.get("metadata") or {}
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        serving = self.feed.serving_generation(ns, name) if error is not None else None
        body = desired_status(manifest, error, serving_generation=serving,
                              fields=self.feed.status_fields(ns, name))
        if body is not None:
            self.writer.submit(self.kind, ns, name, body)
