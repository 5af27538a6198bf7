"""Error snapshots: failed requests captured through ext_proc, masked, stored locally and sent to Kafka.

``install(app)`` wires the package in when ``snapshots.enabled``: a
:class:`SnapshotSink` (the app's exchange sink and a component), and the
token-protected admin routes under ``/admin/snapshots``.
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
    app.extras["snapshots"] = sink
    if not s.admin_token:
        _log.info("snapshots: no admin_token set, the /admin/snapshots API answers 403")
