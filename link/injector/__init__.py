"""The sidecar injector: a mutating admission webhook adding Envoy + Link to annotated pods.

``mutate(review, config)`` is the pure decision (AdmissionReview in, AdmissionReview
out); ``link.injector.server.serve(options)`` runs it over HTTPS; ``stoa-link
injector`` (``link.injector.cli.main``) parses the flags.
"""

from link.injector.admission import mutate, mutate_body
from link.injector.config import (
    ANNOTATION_GATEWAY,
    ANNOTATION_INJECT,
    ANNOTATION_INJECTED,
    ENVOY_CONTAINER,
    GATEWAYS,
    LINK_CONTAINER,
    InjectorConfig,
    Resources,
    envoy_configmap_name,
)
from link.injector.sidecar import sidecar_containers, sidecar_volumes

__all__ = [
    "ANNOTATION_GATEWAY",
    "ANNOTATION_INJECT",
    "ANNOTATION_INJECTED",
    "ENVOY_CONTAINER",
    "GATEWAYS",
    "LINK_CONTAINER",
    "InjectorConfig",
    "Resources",
    "envoy_configmap_name",
    "mutate",
    "mutate_body",
    "sidecar_containers",
    "sidecar_volumes",
]
