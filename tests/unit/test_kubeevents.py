"""Readiness changes as Kubernetes Events on the pod: when one is written, what it says, and when not."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from link.app import LinkApp
from link.kubeevents import MAX_MESSAGE, PodRef, ReadinessEvents, event_body, install, not_ready_summary, pod_ref
from link.settings import ConfigError, Settings
from tests.harness.kube_api import FakeKubeApi

POD = PodRef("gw-5d8f-x2k9p", "kong", "uid-1")
BROKEN = {"policy": {"ready": False, "detail": "policy load failed: authz.rego:2: rego_parse_error"},
          "metering": {"ready": True, "detail": "ok"}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Pod:
    """What readiness says now, and the Events written."""

    def __init__(self) -> None:
        self.ready: tuple[bool, Mapping[str, Any]] = (True, {})
        self.posted: list[tuple[str, dict[str, Any]]] = []
        self.fail: Exception | None = None

    def readiness(self) -> tuple[bool, Mapping[str, Any]]:
        return self.ready

    def post(self, namespace: str, body: dict[str, Any]) -> None:
        if self.fail is not None:
            raise self.fail
        self.posted.append((namespace, body))

    def said(self) -> list[tuple[str, str, str]]:
        return [(b["type"], b["reason"], b["message"]) for _, b in self.posted]


def _events(pod: Pod, clock: Clock) -> ReadinessEvents:
    return ReadinessEvents(POD, pod.readiness, pod.post, interval_s=1, settle_s=5, clock=clock)


async def test_a_pod_that_is_ready_says_nothing() -> None:
    pod, clock = Pod(), Clock()
    events = _events(pod, clock)
    for _ in range(5):
        await events.check()
        clock.now += 2
    assert pod.posted == []


async def test_not_ready_is_said_once_it_lasts_then_ready_again() -> None:
    pod, clock = Pod(), Clock()
    events = _events(pod, clock)
    await events.check()
    pod.ready = (False, BROKEN)
    await events.check()
    clock.now += 4.9
    await events.check()
    assert pod.posted == []  # not yet settled: a start-up or a flap says nothing
    clock.now += 0.2
    await events.check()
    await events.check()  # the same state is not repeated
    assert pod.said() == [("Warning", "NotReady",
                           "not ready: policy: policy load failed: authz.rego:2: rego_parse_error")]
    pod.ready = (True, {})
    await events.check()  # back to ready: said at once
    assert pod.said()[1:] == [("Normal", "Ready", "ready: every check passes")]
    assert events.sent == 2 and events.readiness() == (True, "pod kong/gw-5d8f-x2k9p: 2 event(s) written")


async def test_a_flap_shorter_than_settle_says_nothing() -> None:
    pod, clock = Pod(), Clock()
    events = _events(pod, clock)
    for _ in range(4):
        pod.ready = (False, BROKEN)
        await events.check()
        clock.now += 3
        pod.ready = (True, {})
        await events.check()
        clock.now += 3
    assert pod.posted == []


async def test_another_reason_is_a_new_event() -> None:
    pod, clock = Pod(), Clock()
    events = _events(pod, clock)
    pod.ready = (False, BROKEN)
    await events.check()
    clock.now += 6
    await events.check()
    pod.ready = (False, {"registry": {"ready": False, "detail": "not synced"}, "draining": True})
    await events.check()
    clock.now += 6
    await events.check()
    assert [m for _, _, m in pod.said()] == [
        "not ready: policy: policy load failed: authz.rego:2: rego_parse_error",
        "not ready: draining; registry: not synced",
    ]


async def test_a_write_that_fails_is_logged_once_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    pod, clock = Pod(), Clock()
    events = _events(pod, clock)
    pod.ready = (False, BROKEN)
    await events.check()
    clock.now += 6
    pod.fail = ConnectionRefusedError("connection refused")
    with caplog.at_level(logging.WARNING, logger="stoa.link.events"):
        for _ in range(3):
            await events.check()
    assert len([r for r in caplog.records if "not written" in r.getMessage()]) == 1
    ok, detail = events.readiness()
    assert ok and "last event not written (connection refused)" in detail  # never a reason to be not Ready
    pod.fail = None
    await events.check()
    assert pod.said() == [("Warning", "NotReady",
                           "not ready: policy: policy load failed: authz.rego:2: rego_parse_error")]


def test_the_event_names_the_pod_and_its_container() -> None:
    body = event_body(POD, False, "not ready: x")
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "gw-5d8f-x2k9p",
                                      "namespace": "kong", "uid": "uid-1", "fieldPath": "spec.containers{link}"}
    assert body["metadata"] == {"generateName": "gw-5d8f-x2k9p.", "namespace": "kong"}
    assert (body["type"], body["reason"], body["count"]) == ("Warning", "NotReady", 1)
    assert body["reportingComponent"] == body["source"]["component"] == "stoa-link"
    assert "uid" not in event_body(PodRef("p", "ns"), True, "ready")["involvedObject"]


def test_a_long_message_is_cut_to_what_the_apiserver_takes() -> None:
    message = event_body(POD, False, "x" * 5000)["message"]
    assert len(message) == MAX_MESSAGE and message.endswith("…")


def test_the_summary_names_every_failing_check() -> None:
    assert not_ready_summary(BROKEN) == "policy: policy load failed: authz.rego:2: rego_parse_error"
    assert not_ready_summary({"a": {"ready": False, "detail": ""}, "b": {"ready": False}}) == "a; b"
    assert not_ready_summary({}) == "not ready"


def test_the_pod_comes_from_the_downward_api() -> None:
    assert pod_ref({"POD_NAME": "p", "POD_NAMESPACE": "ns", "POD_UID": "u"}) == PodRef("p", "ns", "u")
    assert pod_ref({"POD_NAME": "p"}) is None
    assert pod_ref({}) is None


def _app(enabled: str, settle_s: float = 5.0, **extra: Any) -> LinkApp:
    settings = Settings.model_validate({"events": {"enabled": enabled, "settle_s": settle_s}, **extra})
    return LinkApp(settings, plugins=())


def _kubeconfig(path: Path, server: str) -> str:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "pod",
        "clusters": [{"name": "local", "cluster": {"server": server}}],
        "users": [{"name": "stoa-link", "user": {"token": "t0k"}}],
        "contexts": [{"name": "pod", "context": {"cluster": "local", "user": "stoa-link"}}],
    }))
    return str(path)


def test_off_outside_a_pod_and_when_asked() -> None:
    for app, env in ((_app("auto"), {}),  # no pod, no cluster
                     (_app("auto"), {"POD_NAME": "p", "POD_NAMESPACE": "ns"}),  # no cluster configuration
                     (_app("off"), {"POD_NAME": "p", "POD_NAMESPACE": "ns", "KUBERNETES_SERVICE_HOST": "10.0.0.1"})):
        install(app, env)
        assert not any(isinstance(c, ReadinessEvents) for c in app.components)


def test_on_without_the_pod_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as err:
        install(_app("on"), {})
    assert err.value.key == "events.enabled" and "POD_NAME" in err.value.reason


def test_on_without_a_cluster_configuration_is_a_configuration_error(tmp_path: Path) -> None:
    app = _app("on", registry={"kubeconfig": str(tmp_path / "missing")})
    with pytest.raises(ConfigError) as err:
        install(app, {"POD_NAME": "p", "POD_NAMESPACE": "ns"})
    assert err.value.key == "events.enabled"


async def test_events_reach_the_apiserver_through_the_official_client(tmp_path: Path) -> None:
    """Against the local server speaking the apiserver's HTTP protocol (no real one can run here)."""
    with FakeKubeApi(token="t0k") as kube:
        app = _app("auto", settle_s=0, registry={"kubeconfig": _kubeconfig(tmp_path / "kubeconfig", kube.url)})
        install(app, {"POD_NAME": "gw-1", "POD_NAMESPACE": "kong", "POD_UID": "u-1"})
        (events,) = [c for c in app.components if isinstance(c, ReadinessEvents)]
        app.ready_checks["policy"] = lambda: (False, "policy load failed: authz.rego:2: rego_parse_error")
        await events.check()
        (event,) = kube.events
    assert event["metadata"]["name"].startswith("gw-1.") and event["metadata"]["namespace"] == "kong"
    assert event["involvedObject"]["uid"] == "u-1"
    assert (event["type"], event["reason"]) == ("Warning", "NotReady")
    assert "authz.rego:2: rego_parse_error" in event["message"]
    assert [r.path for r in kube.requests] == ["/api/v1/namespaces/kong/events"]
