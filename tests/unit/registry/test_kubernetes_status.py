"""desired_status: what Link writes back to a Tool/ToolSet, and when it writes nothing."""

from __future__ import annotations

from typing import Any

from link.registry.kubernetes import desired_status
from link.registry.model import ResourceError


def obj(generation: int = 1, status: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Tool", "metadata": {"name": "t", "namespace": "acme", "generation": generation}}
    if status is not None:
        out["status"] = status
    return out


def applied(o: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    return {**o, "status": patch["status"]} if patch else o


def test_accepted_resource_becomes_ready() -> None:
    patch = desired_status(obj(generation=4), None)
    assert patch is not None
    st = patch["status"]
    assert (st["ready"], st["message"], st["observedGeneration"]) == (True, "", 4)
    [cond] = st["conditions"]
    assert (cond["type"], cond["status"], cond["reason"], cond["observedGeneration"]) == (
        "Ready", "True", "Accepted", 4)
    assert cond["lastTransitionTime"].endswith("Z")


def test_refused_resource_names_the_field() -> None:
    patch = desired_status(obj(), ResourceError("spec.endpoint", "required"), serving_generation=None)
    assert patch is not None
    assert patch["status"]["ready"] is False
    assert patch["status"]["message"] == "spec.endpoint: required"
    assert patch["status"]["conditions"][0]["reason"] == "Invalid"


def test_refused_edit_says_which_generation_is_still_served() -> None:
    patch = desired_status(obj(generation=3), ResourceError("spec.method", "bad"), serving_generation=2)
    assert patch is not None
    assert patch["status"]["message"] == "spec.method: bad (still serving generation 2)"


def test_nothing_to_write_when_status_already_says_it() -> None:
    first = obj(generation=2)
    written = applied(first, desired_status(first, None))
    assert desired_status(written, None) is None
    refused = applied(first, desired_status(first, ResourceError("spec.x", "no")))
    assert desired_status(refused, ResourceError("spec.x", "no")) is None


def test_new_generation_or_new_verdict_is_written() -> None:
    written = applied(obj(generation=2), desired_status(obj(generation=2), None))
    newer = {**written, "metadata": {**written["metadata"], "generation": 3}}
    patch = desired_status(newer, None)
    assert patch is not None and patch["status"]["observedGeneration"] == 3
    # Same state: the transition time stays.
    assert patch["status"]["conditions"][0]["lastTransitionTime"] == (
        written["status"]["conditions"][0]["lastTransitionTime"])
    flipped = desired_status(written, ResourceError("spec.x", "no"))
    assert flipped is not None and flipped["status"]["ready"] is False


def test_transition_time_moves_when_the_verdict_flips() -> None:
    old = {"type": "Ready", "status": "True", "reason": "Accepted", "message": "", "observedGeneration": 1,
           "lastTransitionTime": "2020-01-01T00:00:00Z"}
    o = obj(status={"ready": True, "message": "", "observedGeneration": 1, "conditions": [old]})
    patch = desired_status(o, ResourceError("spec.x", "no"))
    assert patch is not None
    assert patch["status"]["conditions"][0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_other_conditions_and_fields_are_left_alone() -> None:
    connected = {"type": "Connected", "status": "True", "reason": "Synced", "message": ""}
    o = obj(status={"connected": True, "toolCount": 4, "conditions": [connected]})
    patch = desired_status(o, None)
    assert patch is not None
    # A merge patch: fields Link does not own are absent from it, so they stay as they are.
    assert set(patch["status"]) == {"ready", "message", "observedGeneration", "conditions"}
    assert [c["type"] for c in patch["status"]["conditions"]] == ["Connected", "Ready"]


def test_long_messages_are_cut() -> None:
    patch = desired_status(obj(), ResourceError("spec.inputSchema", "x" * 5000))
    assert patch is not None
    assert len(patch["status"]["message"]) <= 1024


def test_garbage_status_is_replaced_not_crashed_on() -> None:
    o = obj(status={"conditions": "not-a-list", "ready": "yes"})
    patch = desired_status(o, None)
    assert patch is not None and patch["status"]["ready"] is True
    o2: dict[str, Any] = {"metadata": {"name": "t", "generation": "seven"}, "status": ["odd"]}
    patch2 = desired_status(o2, None)
    assert patch2 is not None and "observedGeneration" not in patch2["status"]
