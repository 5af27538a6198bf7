"""Metering: one event per finished request (and MCP tool call) to Kafka, without loss.

``install(app)`` adds a :class:`MeteringSink` as an outcome sink and a component
when ``metering.enabled`` is true and a broker is configured
(``KAFKA_BOOTSTRAP_SERVERS`` / ``metering.bootstrap_servers``).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

from link.metering.event import EventEncoder, EventOrigin, build_event
from link.metering.publisher import KafkaPublisher, PublishError, check_compression
from link.metering.sink import MeteringSink, MeteringStats
from link.metering.spool import Spool, SpoolError
from link.settings import Settings

if TYPE_CHECKING:
    from link.app import LinkApp

__all__ = [
    "EventEncoder",
    "EventOrigin",
    "KafkaPublisher",
    "MeteringSink",
    "MeteringStats",
    "PublishError",
    "Spool",
    "SpoolError",
    "build_event",
    "install",
    "origin_from_settings",
]

_log = logging.getLogger("stoa.link.metering")


def origin_from_settings(settings: Settings) -> EventOrigin:
    """gateway_id = settings.gateway_id, else the instance name (POD_NAME, else the host name)."""
    instance = settings.controlplane.instance_name or os.environ.get("POD_NAME") or socket.gethostname()
    return EventOrigin(gateway_id=settings.gateway_id or instance, instance=instance, mode=settings.mode)


def install(app: LinkApp) -> None:
    """Add the metering sink to the app (as outcome sink and component) when metering is on."""
    m = app.settings.metering
    if not m.enabled:
        return
    if not m.bootstrap_servers:
        _log.warning(
            "metering is enabled but no broker is configured "
            "(KAFKA_BOOTSTRAP_SERVERS or metering.bootstrap_servers): no events will be produced"
        )
        return
    check_compression(m)
    sink = MeteringSink(m, origin_from_settings(app.settings))
    app.add_outcome_sink(sink)
    app.add_component(sink)
    app.extras["metering"] = sink
    app.on_gateway_id(sink.set_gateway_id)
