"""Kubernetes Events on Link's pod when its readiness changes, so ``kubectl describe pod`` says why.

Kubelet's readiness probe records only "HTTP probe failed with statuscode: 503"; the reason
(no policy loaded, a policy that does not compile, the registry not synced …) is in the
readiness body and the log. This component watches readiness every ``events.interval_s``
and, on each change that lasts ``events.settle_s``, creates one ``v1`` Event on the pod: ``Warning NotReady`` naming the
checks that fail and their details, then ``Normal Ready`` when they pass again. A state that
stays the same is not repeated.

On in a pod (``events.enabled: auto`` needs ``POD_NAME`` and ``POD_NAMESPACE`` from the
downward API, and an in-cluster service account or ``registry.kubeconfig``); the manifests in
``deploy/`` give the service account ``create`` on events in its namespace. Events are
written from a thread, never on the event loop; a failure to write one is logged and never
affects readiness or traffic.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from link.component import cancel_task

if TYPE_CHECKING:
    from link.app import LinkApp
    from link.settings import Settings

__all__ = ["PodRef", "ReadinessEvents", "event_body", "install", "not_ready_summary", "pod_ref"]

_log = logging.getLogger("stoa.link.events")

MAX_MESSAGE = 1024  # the apiserver refuses longer Event messages
COMPONENT = "stoa-link"

Post = Callable[[str, dict[str, Any]], None]  # (namespace, Event body) -> None; raises on failure


@dataclass(frozen=True, slots=True)
class PodRef:
    name: str
    namespace: str
    uid: str = ""
    container: str = "link"


def pod_ref(env: Mapping[str, str] | None = None) -> PodRef | None:
    """The pod from the downward API (``POD_NAME``, ``POD_NAMESPACE``, optional ``POD_UID``)."""
    env = os.environ if env is None else env
    name, namespace = env.get("POD_NAME", ""), env.get("POD_NAMESPACE", "")
    if not name or not namespace:
        return None
    return PodRef(name, namespace, env.get("POD_UID", ""), env.get("STOA_EVENTS_CONTAINER", "link"))


def not_ready_summary(details: Mapping[str, Any]) -> str:
    """``policy: no policy loaded; registry: not synced`` — the failing checks of a readiness body."""
    parts = []
    if details.get("draining"):
        parts.append("draining")
    for name, value in details.items():
        if isinstance(value, Mapping) and value.get("ready") is False:
            detail = str(value.get("detail") or "").strip()
            parts.append(f"{name}: {detail}" if detail else name)
    return "; ".join(parts) or "not ready"


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def event_body(pod: PodRef, ready: bool, message: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """A ``v1`` Event on the pod (``generateName``: the apiserver picks a unique name)."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "name": pod.name, "namespace": pod.namespace,
                                "fieldPath": f"spec.containers{{{pod.container}}}"}
    if pod.uid:
        involved["uid"] = pod.uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{pod.name}.", "namespace": pod.namespace},
        "involvedObject": involved,
        "type": "Normal" if ready else "Warning",
        "reason": "Ready" if ready else "NotReady",
        "message": _truncate(message),
        "source": {"component": COMPONENT, "host": socket.gethostname()},
        "reportingComponent": COMPONENT,
        "reportingInstance": pod.name,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class ReadinessEvents:
    """A component: an Event on the pod at each change of readiness (a first ready state says nothing)."""

    name = "events"

    def __init__(self, pod: PodRef, readiness: Callable[[], tuple[bool, Mapping[str, Any]]], post: Post,
                 *, interval_s: float = 2.0, settle_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pod = pod
        self._readiness = readiness
        self._post = post
        self._interval_s = interval_s
        self._settle_s = settle_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._last: tuple[bool, str] | None = None  # the state last reported (or first seen ready)
        self._seen: tuple[bool, str] | None = None  # the state now, and since when
        self._seen_at = 0.0
        self._failing = False  # the last write failed (logged once per run of failures)
        self.sent = 0
        self.last_error = ""

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stoa-readiness-events")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None

    def readiness(self) -> tuple[bool, str]:
        """Always ready: events are for the operator, never a reason to take the pod out."""
        where = f"pod {self._pod.namespace}/{self._pod.name}"
        if self.last_error:
            return True, f"{where}: last event not written ({self.last_error})"
        return True, f"{where}: {self.sent} event(s) written"

    async def check(self) -> None:
        """Look at readiness once; write an Event if it changed.

        A not-ready state is reported once it has lasted ``settle_s`` (start-up's brief not-ready
        moments, a flap, say nothing); back to ready is reported at once, if not-ready was.
        """
        ready, details = self._readiness()
        state = (ready, "" if ready else not_ready_summary(details))
        now = self._clock()
        if state != self._seen:
            self._seen, self._seen_at = state, now
        if state == self._last or (self._last in (None, (True, "")) and ready):
            self._last = state
            return
        if not ready and now - self._seen_at < self._settle_s:
            return
        message = ("ready: every check passes" if ready else f"not ready: {state[1]}")
        body = event_body(self._pod, ready, message)
        try:
            await asyncio.to_thread(self._post, self._pod.namespace, body)
        except Exception as exc:  # any client or API error: logged, retried at the next check
            self.last_error = _brief(exc)
            if not self._failing:
                _log.warning("kubernetes event not written (%s): %s", message, self.last_error)
            self._failing = True
            return  # not recorded as sent: the next check tries again
        self._failing, self.last_error = False, ""
        self._last = state
        self.sent += 1

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # a surprise must not end the watch
                _log.exception("readiness events: check failed")
            await asyncio.sleep(self._interval_s)


def _brief(exc: BaseException) -> str:
    from link.registry.kubernetes.api import brief

    return brief(exc)


def _enabled(settings: Settings, env: Mapping[str, str]) -> bool:
    mode = settings.events.enabled
    if mode == "off":
        return False
    if mode == "on":
        return True
    return bool(env.get("KUBERNETES_SERVICE_HOST") or settings.registry.kubeconfig)


def api_post(settings: Settings) -> Post:
    """Events through the official client, with the registry's cluster configuration."""
    from kubernetes.client import CoreV1Api

    from link.registry.kubernetes.api import build_api_client

    api = CoreV1Api(build_api_client(settings.registry, pool_size=1))
    timeout = settings.events.timeout_s

    def post(namespace: str, body: dict[str, Any]) -> None:
        api.create_namespaced_event(namespace, body, _request_timeout=timeout)  # type: ignore[arg-type]  # a dict body is sent as is

    return post


def install(app: LinkApp, env: Mapping[str, str] | None = None) -> None:
    """Add the component when Link runs in a pod (or ``events.enabled: on``)."""
    env = os.environ if env is None else env
    settings = app.settings
    if not _enabled(settings, env):
        return
    pod = pod_ref(env)
    if pod is None:
        if settings.events.enabled == "on":
            from link.settings import ConfigError

            raise ConfigError("events.enabled", "Events name the pod: set POD_NAME and POD_NAMESPACE "
                                                "(the downward API's metadata.name and metadata.namespace)")
        return
    try:
        post = api_post(settings)
    except Exception as exc:  # no cluster configuration: say so once, serve without events
        from link.settings import ConfigError

        if settings.events.enabled == "on":
            raise ConfigError("events.enabled", str(exc)) from None
        _log.warning("kubernetes events off: %s", exc)
        return
    app.add_component(ReadinessEvents(pod, app.readiness, post, interval_s=settings.events.interval_s,
                                      settle_s=settings.events.settle_s))
