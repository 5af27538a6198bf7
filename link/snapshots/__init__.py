"""Error snapshots: failed requests captured off the request path, masked, stored locally and sent to Kafka.

``install(app)`` wires the package in when ``snapshots.enabled``: a
:class:`SnapshotSink` (the app's exchange sink and a component), the tap
subscriber that feeds it upstream failures from Envoy's tap filter
(``snapshots.capture: tap``; see :mod:`link.snapshots.tap`), and the
token-protected admin routes under ``/admin/snapshots``. Refusals Link decides
itself are captured by the ext_authz adapter.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from link.snapshots.masking import REDACTED, SECRET_HEADERS, PiiMasker
from link.snapshots.record import SnapshotOrigin, build_snapshot
from link.snapshots.sink import SnapshotSink
from link.snapshots.store import SnapshotFilter, SnapshotStore

if TYPE_CHECKING:
    from link.app import LinkApp

__all__ = [
    "REDACTED",
    "SECRET_HEADERS",
    "PiiMasker",
    "SnapshotFilter",
    "SnapshotOrigin",
    "SnapshotSink",
    "SnapshotStore",
    "build_snapshot",
    "install",
]

_log = logging.getLogger("stoa.link.snapshots")


def install(app: LinkApp) -> None:
    """Add the snapshot sink, its component and the admin routes to the app."""
    settings = app.settings
    s = settings.snapshots
    if not s.enabled:
        return
    store = SnapshotStore(s.db_path, retention_s=s.retention_days * 86_400, max_bytes=s.max_bytes)
    publisher = None
    if settings.metering.bootstrap_servers:
        from link.snapshots.publisher import SnapshotPublisher

        publisher = SnapshotPublisher(settings.metering, s)
    sink = SnapshotSink(settings, store, publisher)
    app.set_exchange_sink(sink)
    app.add_component(sink)
    from link.snapshots.admin import snapshot_routes

    app.admin_routes.extend(snapshot_routes(store, s.admin_token))
    if s.capture == "tap" and s.tap_subscribe:
        _install_tap(app, sink)
    app.extras["snapshots"] = sink
    app.on_gateway_id(sink.set_gateway_id)
    if not s.admin_token:
        _log.info("snapshots: no admin_token set, the /admin/snapshots API answers 403")


def _install_tap(app: LinkApp, sink: SnapshotSink) -> None:
    """Attach Envoy's tap (errors on opted-in routes) and join its traces with the access-log feed."""
    from link.envoyconf.from_settings import snapshot_prefixes
    from link.snapshots.tap import TapJoin, TapSubscriber, tap_request

    settings = app.settings
    s = settings.snapshots
    # Tenant opt-ins cover any path; otherwise only the opted-in routes' paths are tapped.
    prefixes = [] if s.tenants else snapshot_prefixes(settings)
    body = tap_request(settings, prefixes)
    if body is None or not (s.tenants or prefixes):
        return
    join = TapJoin(sink, app.pipeline.resolve_route, settings)
    app.add_outcome_sink(join)
    app.add_component(TapSubscriber(s.envoy_admin_url, body, join, s.body_excerpt_bytes,
                                    max_per_second=2 * s.max_per_second))
