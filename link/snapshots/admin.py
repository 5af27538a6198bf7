"""The snapshot admin API: list, fetch and delete snapshots (``/admin/snapshots``), token-protected.

Every call needs ``Authorization: Bearer <snapshots.admin_token>``; with no token
configured the API is off (403). Store calls run on worker threads so a slow
disk never stalls the admin server's loop.
"""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from link.snapshots import metrics
from link.snapshots.store import SnapshotFilter, SnapshotStore

__all__ = ["snapshot_routes"]

MAX_LIMIT = 500
T = TypeVar("T")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _BadParam(ValueError):
    pass


def _filter(request: Request) -> SnapshotFilter:
    q = request.query_params
    unknown = set(q) - {"tenant", "status", "limit", "since"}
    if unknown:
        raise _BadParam(f"unknown parameter(s): {', '.join(sorted(unknown))} (tenant, status, limit, since)")
    status: int | None = None
    status_class: int | None = None
    raw = q.get("status")
    if raw:
        if raw.lower() in ("4xx", "5xx"):
            status_class = int(raw[0])
        elif raw.isdigit() and 100 <= int(raw) <= 599:
            status = int(raw)
        else:
            raise _BadParam("status: expected an HTTP status (e.g. 503) or 4xx/5xx")
    limit = 50
    if q.get("limit"):
        if not q["limit"].isdigit() or not 1 <= int(q["limit"]) <= MAX_LIMIT:
            raise _BadParam(f"limit: expected an integer from 1 to {MAX_LIMIT}")
        limit = int(q["limit"])
    since: float | None = None
    if q.get("since"):
        try:
            since = float(q["since"])
        except ValueError:
            raise _BadParam("since: expected epoch seconds") from None
    return SnapshotFilter(tenant=q.get("tenant") or None, status=status, status_class=status_class,
                          since=since, limit=limit)


def snapshot_routes(store: SnapshotStore, admin_token: str | None) -> list[Route]:
    """Starlette routes for the admin server: GET/DELETE ``/admin/snapshots[/{id}]``."""
    expected = admin_token.encode() if admin_token else None

    async def _call(fn: Callable[..., T], *args: Any) -> T | Response:
        try:
            return await run_in_threadpool(fn, *args)
        except (RuntimeError, sqlite3.Error) as exc:  # store not open (bad db_path) or failing
            return _error(503, f"snapshot store unavailable: {exc}")

    def _denied(request: Request) -> Response | None:
        if expected is None:
            return _error(403, "admin API disabled")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            challenge = {"www-authenticate": 'Bearer realm="stoa-admin"'}
            return _error(401, "a valid admin token is required", challenge)
        return None

    async def list_snapshots(request: Request) -> Response:
        if (denied := _denied(request)) is not None:
            return denied
        try:
            flt = _filter(request)
        except _BadParam as exc:
            return _error(400, str(exc))
        rows = await _call(store.list, flt)
        if isinstance(rows, Response):
            return rows
        body: dict[str, Any] = {"snapshots": [r.as_dict() for r in rows], "count": len(rows)}
        return JSONResponse(body)

    async def one_snapshot(request: Request) -> Response:
        if (denied := _denied(request)) is not None:
            return denied
        sid = request.path_params["snapshot_id"]
        if request.method == "DELETE":
            deleted = await _call(store.delete, sid)
            if isinstance(deleted, Response):
                return deleted
            if not deleted:
                return _error(404, "no such snapshot")
            metrics.SNAPSHOTS_PURGED.labels("admin").inc()
            metrics.STORE_BYTES.set(store.stored_bytes)
            return Response(status_code=204)
        doc = await _call(store.get, sid)
        if isinstance(doc, Response):
            return doc
        if doc is None:
            return _error(404, "no such snapshot")
        return JSONResponse(doc)

    return [
        Route("/admin/snapshots", list_snapshots, methods=["GET"]),
        Route("/admin/snapshots/{snapshot_id}", one_snapshot, methods=["GET", "DELETE"]),
    ]
