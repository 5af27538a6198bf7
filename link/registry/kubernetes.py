"""The registry fed by a Kubernetes watch on Tool and ToolSet custom resources.

For each kind (and each namespace of ``registry.namespaces``, or the whole
cluster when that list is empty) a worker thread runs the reflector loop of
the official client: list (paged), then watch from the list's resourceVersion
with bookmarks; on ``410 Gone`` list again; on an error or a dropped
connection wait (exponential backoff with jitter) and watch again from the
last resourceVersion seen. The ``kubernetes`` client is synchronous, hence the
threads.

Every resource seen gets its verdict written back through the status
subresource: ``ready``, ``message`` (the precise error of a refused resource,
which never reaches the registry; its previous good version stays served),
``observedGeneration`` and a ``Ready`` condition. A write happens only when
the status the resource carries differs, so the ``MODIFIED`` event our own
write causes does not cause another write.

The registry is fed from the worker threads directly (it is thread-safe and
says so): parsing a resource checks its JSON Schemas, about a millisecond
each, and a re-list of thousands of tools must not stall the event loop that
serves requests.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter

from link.metrics import REGISTRY
from link.registry.model import API_VERSION, GROUP, ResourceError, Tool, ToolSet
from link.registry.registry import KINDS, ToolRegistry, ToolSetStatus
from link.settings import RegistrySettings, Settings

__all__ = ["KubernetesConfigError", "KubernetesSource", "build_api_client", "desired_status",
           "toolset_status_patch"]

_log = logging.getLogger("stoa.link.registry.kubernetes")

# Watch and the config loaders are untyped in the client library.
_Watch: Any = k8s_watch.Watch
_load_incluster_config: Any = k8s_config.load_incluster_config
_load_kube_config: Any = k8s_config.load_kube_config

VERSION = "v1alpha1"
PLURALS: Mapping[str, str] = {"Tool": "tools", "ToolSet": "toolsets"}
FIELD_MANAGER = "stoa-link"
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_MAX_MESSAGE = 1024  # status is for people and kubectl, not for whole stack traces

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
STATUS_WRITES = Counter(
    "stoa_link_registry_kube_status_writes_total",
    "Status subresource writes, by result.",
    ["result"],
    registry=REGISTRY,
)


class KubernetesConfigError(Exception):
    """No usable cluster configuration (neither in-cluster nor a kubeconfig)."""


def build_api_client(settings: RegistrySettings, *, pool_size: int = 10) -> k8s_client.ApiClient:
    """An API client for production: in-cluster config in a pod, else the kubeconfig.

    ``registry.kubeconfig`` wins when set; otherwise a pod's service account is
    used, and outside a pod ``$KUBECONFIG`` or ``~/.kube/config``.
    """
    cfg = k8s_client.Configuration()
    try:
        if settings.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            _load_incluster_config(client_configuration=cfg)
        else:
            _load_kube_config(config_file=settings.kubeconfig, client_configuration=cfg)
    except (k8s_config.ConfigException, OSError) as exc:
        where = settings.kubeconfig or "in-cluster service account or ~/.kube/config"
        raise KubernetesConfigError(f"registry.kubeconfig: cannot load a cluster configuration from "
                                    f"{where}: {exc}") from None
    # One connection per watch stream plus the status writer, so none is discarded.
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize, pool_size)
    return k8s_client.ApiClient(cfg)


# -- status -------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def desired_status(obj: Mapping[str, Any], error: ResourceError | None, *,
                   serving_generation: int | None = None) -> dict[str, Any] | None:
    """The status patch a resource needs after Link's verdict, or None when it already says so.

    ``serving_generation`` is the generation of the previous good version Link
    keeps serving when this one is refused (it goes into the message).
    """
    meta = obj.get("metadata") or {}
    generation = meta.get("generation")
    generation = generation if isinstance(generation, int) and not isinstance(generation, bool) else None
    ready = error is None
    message = ""
    if error is not None:
        message = str(error)[:_MAX_MESSAGE]
        if serving_generation is not None:
            message += f" (still serving generation {serving_generation})"
    current = obj.get("status")
    current = current if isinstance(current, Mapping) else {}
    conditions = current.get("conditions")
    conditions = [c for c in conditions if isinstance(c, Mapping)] if isinstance(conditions, list) else []
    old = next((c for c in conditions if c.get("type") == "Ready"), None)
    cond: dict[str, Any] = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "Accepted" if ready else "Invalid",
        "message": message,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    up_to_date = (
        current.get("ready") is ready
        and (current.get("message") or "") == message
        and current.get("observedGeneration") == generation
        and old is not None
        and all(old.get(k) == v for k, v in cond.items())
    )
    if up_to_date:
        return None
    # The transition time moves only when the condition flips (Kubernetes convention).
    same_state = old is not None and old.get("status") == cond["status"] and old.get("lastTransitionTime")
    cond["lastTransitionTime"] = old.get("lastTransitionTime") if same_state and old else _now()
    status: dict[str, Any] = {
        "ready": ready,
        "message": message,
        "conditions": [dict(c) for c in conditions if c.get("type") != "Ready"] + [cond],
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return {"status": status}


def toolset_status_patch(status: ToolSetStatus) -> dict[str, Any]:
    """The status patch carrying what federation learnt about a ToolSet's upstream."""
    body: dict[str, Any] = {
        "connected": status.connected,
        "toolCount": status.tool_count,
        "discoveredTools": list(status.discovered_tools),
        "error": status.error[:_MAX_MESSAGE],
    }
    if status.last_sync is not None:
        body["lastSync"] = _dt.datetime.fromtimestamp(status.last_sync, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"status": body}


def _federation_state(status: ToolSetStatus) -> tuple[Any, ...]:
    # lastSync alone moves at every refresh; writing it each time would only make watch traffic.
    return (status.connected, status.tool_count, status.discovered_tools, status.error)


@dataclass
class _PendingWrite:
    body: dict[str, Any]
    attempts: int = 0
    not_before: float = 0.0


def _merged(older: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """Two status merge patches as one (the newer wins field by field)."""
    return {"status": {**older.get("status", {}), **newer.get("status", {})}}


class _StatusWriter:
    """One thread writing status patches; patches queued for the same resource are merged into one."""

    _MAX_ATTEMPTS = 5

    def __init__(self, api: k8s_client.CustomObjectsApi, stopping: threading.Event, timeout_s: float) -> None:
        self._api = api
        self._stopping = stopping
        self._timeout_s = timeout_s
        self._cond = threading.Condition()
        self._pending: dict[tuple[str, str, str], _PendingWrite] = {}
        self._inflight = 0
        self._forbidden_logged = False
        self.thread = threading.Thread(target=self._run, name="registry-kube-status", daemon=True)

    def submit(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        key = (kind, namespace, name)
        with self._cond:
            queued = self._pending.get(key)
            self._pending[key] = _PendingWrite(_merged(queued.body, body) if queued else body)
            self._cond.notify()

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._cond:
            self._pending.pop((kind, namespace, name), None)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def idle(self) -> bool:
        """True when nothing is queued or being written."""
        with self._cond:
            return not self._pending and not self._inflight

    def _next(self) -> tuple[tuple[str, str, str], _PendingWrite] | None:
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

    def _write(self, key: tuple[str, str, str], body: dict[str, Any]) -> None:
        kind, namespace, name = key
        self._api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURALS[kind], name, body,
            field_manager=FIELD_MANAGER, _request_timeout=self._timeout_s,
        )
        STATUS_WRITES.labels("ok").inc()

    def _failed(self, key: tuple[str, str, str], write: _PendingWrite, exc: Exception) -> None:
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
            _log.warning("giving up writing status of %s %s/%s: %s", kind, namespace, name, _brief(exc))
            return
        write.not_before = time.monotonic() + min(30.0, 0.2 * 2 ** write.attempts)
        with self._cond:
            queued = self._pending.get(key)
            if queued is not None:  # a newer patch came meanwhile: it wins where both say something
                write.body = _merged(write.body, queued.body)
            self._pending[key] = write


# -- one list/watch loop ----------------------------------------------------------


class _Gone(Exception):
    """The resourceVersion we hold is too old: list again."""


class _Backoff:
    """Exponential backoff with jitter (half fixed, half random) between ``initial`` and ``maximum``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._initial = initial
        self._maximum = maximum
        self._failures = 0

    def reset(self) -> None:
        self._failures = 0

    def next(self) -> float:
        delay = min(self._maximum, self._initial * 2.0 ** self._failures)
        self._failures += 1
        return delay / 2 + random.uniform(0, delay / 2)


def _brief(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {(exc.reason or '').strip()}".strip()
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


@dataclass
class _Tuning:
    backoff_initial_s: float
    backoff_max_s: float
    watch_timeout_s: int
    idle_timeout_s: float
    request_timeout_s: float
    page_size: int


@dataclass
class _StreamState:
    listed: bool = False
    phase: str = "starting"
    last_error: str = ""
    resource_version: str | None = None
    lists: int = 0


@dataclass
class _Stream:
    """List-then-watch of one kind in one namespace (or the whole cluster)."""

    kind: str
    namespace: str | None
    api: k8s_client.CustomObjectsApi
    registry: ToolRegistry
    writer: _StatusWriter | None
    stopping: threading.Event
    tuning: _Tuning
    state: _StreamState = field(default_factory=_StreamState)
    thread: threading.Thread | None = None
    on_listed: Callable[[], None] | None = None  # called after each successful list
    _watch: Any = None  # the kubernetes.watch.Watch in progress

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
        backoff = _Backoff(self.tuning.backoff_initial_s, self.tuning.backoff_max_s)
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
            self.stopping.wait(backoff.next())
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
        self.state.last_error = f"{_brief(exc)}{hint}"
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
        errors = self.registry.replace_all(self.kind, manifests, scope)
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
            self._report(manifest, self.registry.apply(manifest))
        elif kind == "DELETED":
            meta = raw.get("metadata") or {}
            ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
            self.registry.delete(self.kind, ns, name)
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
        serving = None
        if error is not None:
            kept: Tool | ToolSet | None
            if self.kind == "ToolSet":
                kept = self.registry.toolset(ns, name)
            else:
                kept = self.registry.tool(ns, name)
                kept = None if kept is not None and kept.federated else kept  # a namesake, not this resource
            serving = kept.generation if kept is not None else None
        body = desired_status(manifest, error, serving_generation=serving)
        if body is not None:
            self.writer.submit(self.kind, ns, name, body)


# -- the source ---------------------------------------------------------------------


class KubernetesSource:
    """Feeds a :class:`ToolRegistry` from the Tool/ToolSet custom resources of a cluster.

    ``api_client`` is for tests (a client whose ``Configuration.host`` points
    at a local server); by default the client is built from the in-cluster
    config or ``registry.kubeconfig`` on :meth:`start`.
    """

    name = "registry-kubernetes"

    def __init__(
        self,
        registry: ToolRegistry,
        settings: Settings | RegistrySettings,
        api_client: k8s_client.ApiClient | None = None,
        *,
        write_status: bool = True,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        watch_timeout_s: int = 300,
        idle_timeout_s: float = 90.0,
        request_timeout_s: float = 10.0,
        page_size: int = 500,
        initial_sync_timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self._registry = registry
        self._settings = settings.registry if isinstance(settings, Settings) else settings
        for ns in self._settings.namespaces:
            if not _NAMESPACE.match(ns):
                raise ValueError(f"registry.namespaces: {ns!r} is not a valid namespace name")
        self._api_client = api_client
        self._own_client = api_client is None
        self._write_status = write_status
        # Bookmarks come about once a minute; a longer silence means a dead connection.
        self._tuning = _Tuning(backoff_initial_s, backoff_max_s, watch_timeout_s, idle_timeout_s,
                               request_timeout_s, page_size)
        self._initial_sync_timeout_s = initial_sync_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._stopping = threading.Event()
        self._streams: list[_Stream] = []
        self._writer: _StatusWriter | None = None
        self._started = False
        self._synced = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._federation_written: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._federation_lock = threading.Lock()

    @property
    def namespaces(self) -> list[str | None]:
        """The scopes watched: each configured namespace, or None for the whole cluster."""
        return list(self._settings.namespaces) or [None]

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        """Start the list/watch threads; wait (bounded) for the first list of each."""
        if self._started:
            return
        streams = len(KINDS) * len(self.namespaces)
        if self._api_client is None:
            self._api_client = await asyncio.to_thread(
                build_api_client, self._settings, pool_size=streams + 2)
        api = k8s_client.CustomObjectsApi(self._api_client)
        self._stopping.clear()
        if self._write_status:
            self._writer = _StatusWriter(api, self._stopping, self._tuning.request_timeout_s)
            self._writer.thread.start()
        self._streams = [
            _Stream(kind, ns, api, self._registry, self._writer, self._stopping, self._tuning)
            for ns in self.namespaces for kind in KINDS
        ]
        self._synced.clear()
        if self._writer is not None:
            self._unsubscribe = self._registry.subscribe(self._on_registry_change)
        for s in self._streams:
            s.on_listed = self._check_synced
            s.start()
        self._started = True
        await asyncio.to_thread(self._synced.wait, self._initial_sync_timeout_s)
        if not self.synced():
            _log.warning("registry not loaded from Kubernetes yet: %s", self.readiness()[1])

    async def stop(self) -> None:
        """Stop every thread (bounded by ``stop_timeout_s``); watches in progress are cut."""
        if not self._started:
            return
        self._stopping.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._writer is not None:
            self._writer.wake()
        await asyncio.to_thread(self._join, time.monotonic() + self._stop_timeout_s)
        if self._own_client and self._api_client is not None:
            self._api_client.close()  # type: ignore[no-untyped-call]
            self._api_client = None
        self._started = False

    def _join(self, deadline: float) -> None:
        threads = [s.thread for s in self._streams if s.thread is not None]
        if self._writer is not None:
            threads.append(self._writer.thread)
        while time.monotonic() < deadline and any(t.is_alive() for t in threads):
            # A watch may only just have connected when stop() came: abort until every thread is out.
            for s in self._streams:
                s.abort()
            for t in threads:
                t.join(0.05)
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            _log.warning("threads still running after stop: %s", ", ".join(alive))

    def _on_registry_change(self) -> None:
        """Write what federation learnt about each watched ToolSet, when it changed."""
        writer = self._writer
        if writer is None:
            return
        scopes = set(self._settings.namespaces)
        with self._federation_lock:
            present: set[tuple[str, str]] = set()
            for ts in self._registry.toolsets():
                if scopes and ts.tenant not in scopes:
                    continue
                present.add(ts.key)
                status = self._registry.toolset_status(ts.tenant, ts.name)
                if status == ToolSetStatus():
                    continue  # federation has not looked at it yet
                state = _federation_state(status)
                if self._federation_written.get(ts.key) != state:
                    self._federation_written[ts.key] = state
                    writer.submit("ToolSet", ts.tenant, ts.name, toolset_status_patch(status))
            for key in set(self._federation_written) - present:
                del self._federation_written[key]

    def _check_synced(self) -> None:
        if self.synced():
            self._synced.set()

    def threads_alive(self) -> list[str]:
        """Names of this source's threads still running (empty after a clean stop)."""
        threads = [s.thread for s in self._streams if s.thread is not None]
        if self._writer is not None:
            threads.append(self._writer.thread)
        return [t.name for t in threads if t.is_alive()]

    # -- state ----------------------------------------------------------------
    def synced(self) -> bool:
        """True once every kind in every watched namespace was listed at least once."""
        return bool(self._streams) and all(s.state.listed for s in self._streams)

    def status_writes_pending(self) -> bool:
        """True while status patches wait to be written."""
        return self._writer is not None and not self._writer.idle()

    def resource_versions(self) -> dict[str, str | None]:
        """The last resourceVersion each stream saw (a list, an event or a bookmark), by stream."""
        return {s.label: s.state.resource_version for s in self._streams}

    def describe(self) -> dict[str, dict[str, Any]]:
        """Each stream's state, for admin pages and debugging: phase, resourceVersion, lists, last error."""
        return {
            s.label: {"phase": s.state.phase, "resourceVersion": s.state.resource_version,
                      "lists": s.state.lists, "lastError": s.state.last_error}
            for s in self._streams
        }

    def readiness(self) -> tuple[bool, str]:
        if not self._streams:
            return False, "not started"
        troubles = [f"{s.label}: {s.state.last_error}" for s in self._streams if s.state.last_error]
        if not self.synced():
            waiting = ", ".join(s.label for s in self._streams if not s.state.listed)
            detail = f"waiting for the first list of {waiting}"
            return False, detail + ("; " + "; ".join(troubles) if troubles else "")
        counts = self._registry.counts()
        detail = f"{counts['tools']} tools, {counts['toolsets']} toolsets, {counts['errors']} refused"
        if troubles:
            detail += "; last errors: " + "; ".join(troubles)
        return True, detail
