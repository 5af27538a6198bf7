"""AdmissionReview (admission.k8s.io/v1) in, AdmissionReview response out.

Rules, in order:

1. A review that is not a v1 AdmissionReview with a ``request.uid`` is answered
   ``allowed: false`` with a message saying what is wrong (code 400). The API
   server cannot match such an answer to its request anyway, so with the
   webhook's ``failurePolicy: Fail`` the pod is refused with that message.
2. Anything but the CREATE of a Pod is allowed untouched.
3. A pod without ``stoa.dev/inject: "true"`` is allowed untouched (another
   value than "false" adds a warning, shown by kubectl).
4. A pod already injected (``stoa.dev/injected: "true"``, or a container named
   ``stoa-envoy`` / ``stoa-link``) is allowed untouched: injection is idempotent.
5. An annotated pod the sidecar cannot join (no or unknown
   ``stoa.dev/primary-gateway``, a port or volume name the sidecar needs taken,
   ``hostNetwork``) is refused (code 422) with the reason: creating it without
   the sidecar would silently bypass governance.
6. Otherwise it is allowed with a JSON patch adding the sidecar.

``mutate`` never raises: an unexpected error is logged and answered like rule 1.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from link.injector.config import (
    ANNOTATION_GATEWAY,
    ANNOTATION_INJECT,
    ANNOTATION_INJECTED,
    ENVOY_CONTAINER,
    GATEWAYS,
    LINK_CONTAINER,
    RESERVED_PORTS,
    InjectorConfig,
)
from link.injector.patch import injection_patch
from link.injector.sidecar import VOLUME_NAMES

_log = logging.getLogger("stoa.link.injector")

API_VERSION = "admission.k8s.io/v1"


class ReviewError(ValueError):
    """The review (or the pod in it) cannot be processed; the message says why."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


def mutate(review: Any, config: InjectorConfig) -> dict[str, Any]:
    """Answer one AdmissionReview: the full response object, ready to be sent as JSON."""
    uid = _uid_of(review)
    try:
        request = _request_of(review)
        return _review(_decide(request, config))
    except ReviewError as exc:
        _log.warning("refused admission review %s: %s", uid or "(no uid)", exc)
        return _review(_deny(uid, str(exc), exc.code))
    except Exception as exc:  # a bug here must still produce an answer, never a crash
        _log.exception("injector failed on review %s", uid or "(no uid)")
        return _review(_deny(uid, f"internal error in the STOA sidecar injector: {type(exc).__name__}", 500))


def mutate_body(body: bytes, config: InjectorConfig) -> tuple[int, dict[str, Any]]:
    """HTTP status and AdmissionReview for a raw request body."""
    try:
        review = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return 400, _review(_deny("", f"the request body is not JSON: {exc}", 400))
    return 200, mutate(review, config)


# -- the decision -------------------------------------------------------------


def _decide(request: dict[str, Any], config: InjectorConfig) -> dict[str, Any]:
    uid: str = request["uid"]
    kind = request.get("kind")
    if not isinstance(kind, dict) or kind.get("kind") != "Pod" or kind.get("group", "") != "":
        return _allow(uid)
    if request.get("operation") != "CREATE":
        return _allow(uid)
    pod = request.get("object")
    if not isinstance(pod, dict):
        raise ReviewError("request.object is missing or not an object")
    metadata = _mapping(pod, "metadata", "request.object.metadata")
    annotations = _mapping(metadata, "annotations", "request.object.metadata.annotations")
    where = _describe(request, metadata)

    inject = annotations.get(ANNOTATION_INJECT)
    if inject is None:
        return _allow(uid)
    if str(inject).strip().lower() != "true":
        warnings = [] if str(inject).strip().lower() == "false" else [
            f'{ANNOTATION_INJECT}: {inject!r} is not "true"; the STOA sidecar was not added'
        ]
        return _allow(uid, warnings=warnings)

    spec = _mapping(pod, "spec", "request.object.spec")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers or not all(isinstance(c, dict) for c in containers):
        raise ReviewError("request.object.spec.containers must be a non-empty list of containers")
    names = {c.get("name") for c in containers}
    if annotations.get(ANNOTATION_INJECTED) == "true" or names & {ENVOY_CONTAINER, LINK_CONTAINER}:
        _log.info("%s already has the STOA sidecar; left as it is", where)
        return _allow(uid)

    gateway = annotations.get(ANNOTATION_GATEWAY)
    if gateway not in GATEWAYS:
        shown = "missing" if gateway is None else repr(gateway)
        raise ReviewError(
            f"{ANNOTATION_INJECT} is \"true\" but {ANNOTATION_GATEWAY} is {shown}; "
            f"set it to one of {', '.join(GATEWAYS)}",
            422,
        )
    _check_room(spec)
    patch = injection_patch(pod, str(gateway), config)
    _log.info("injecting the STOA sidecar (%s) into %s", gateway, where)
    return _allow(uid, patch=patch)


def _check_room(spec: dict[str, Any]) -> None:
    """Refuse pods where the sidecar would collide with what is already there."""
    if spec.get("hostNetwork") is True:
        raise ReviewError("the STOA sidecar cannot join a hostNetwork pod (its ports would be the node's)",
                          422)
    taken = [
        f"{c.get('name')}:{p['containerPort']}"
        for c in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers"))
        for p in _dicts(c.get("ports"))
        if p.get("containerPort") in RESERVED_PORTS
    ]
    if taken:
        raise ReviewError(
            f"ports the STOA sidecar needs are already used by {', '.join(taken)} "
            f"(the sidecar uses {', '.join(map(str, RESERVED_PORTS))})",
            422,
        )
    volumes = {str(v.get("name")) for v in _dicts(spec.get("volumes"))}
    clash = sorted(volumes & set(VOLUME_NAMES))
    if clash:
        raise ReviewError(f"volume names the STOA sidecar needs are already used: {', '.join(clash)}", 422)


# -- review plumbing ----------------------------------------------------------


def _request_of(review: Any) -> dict[str, Any]:
    if not isinstance(review, dict):
        raise ReviewError(f"expected an AdmissionReview object, got {type(review).__name__}")
    if review.get("kind") != "AdmissionReview" or review.get("apiVersion") != API_VERSION:
        raise ReviewError(
            f"expected kind AdmissionReview, apiVersion {API_VERSION}; got kind {review.get('kind')!r}, "
            f"apiVersion {review.get('apiVersion')!r} (set admissionReviewVersions: [v1])"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise ReviewError("AdmissionReview.request is missing or not an object")
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        raise ReviewError("AdmissionReview.request.uid is missing")
    return request


def _uid_of(review: Any) -> str:
    request = review.get("request") if isinstance(review, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    return uid if isinstance(uid, str) else ""


def _mapping(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ReviewError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list field; anything else counts as empty (the API server validates shapes)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _describe(request: dict[str, Any], metadata: dict[str, Any]) -> str:
    namespace = request.get("namespace") or metadata.get("namespace") or "?"
    name = metadata.get("name") or request.get("name") or f"{metadata.get('generateName', '')}*"
    return f"pod {namespace}/{name}"


def _allow(uid: str, *, patch: list[dict[str, Any]] | None = None,
           warnings: list[str] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    if warnings:
        response["warnings"] = warnings
    return response


def _deny(uid: str, message: str, code: int) -> dict[str, Any]:
    reason = {400: "BadRequest", 422: "Invalid"}.get(code, "InternalError")
    return {
        "uid": uid,
        "allowed": False,
        "status": {"status": "Failure", "code": code, "reason": reason, "message": message},
    }


def _review(response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
