"""A local server speaking the Kubernetes list/watch protocol for Tool and ToolSet.

No real apiserver can run here (no binary is reachable, no cluster), so the
tests of the Kubernetes registry source talk to this server instead. It speaks
the same HTTP protocol the official ``kubernetes`` client speaks to a real
apiserver, for the ``gostoa.dev/v1alpha1`` kinds Link watches (``tools``, ``toolsets``,
``resources``, ``prompts``, ``openapiimports``):

- ``GET /apis/gostoa.dev/v1alpha1/[namespaces/{ns}/]{plural}``: a list
  (``{"kind": "ToolList", "metadata": {"resourceVersion": ...}, "items": [...]}``),
  paged with ``limit`` / ``continue`` over a consistent snapshot;
- the same with ``?watch=1&resourceVersion=N``: a chunked stream of JSON lines
  (``{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": ...}``) that
  replays what happened after N and then follows changes; a watch from a
  compacted resourceVersion gets an ``ERROR`` event whose object is a
  ``Status`` with ``code: 410`` (as the real apiserver sends), then the stream
  ends; ``timeoutSeconds`` ends it cleanly; bookmarks go to watches that asked
  with ``allowWatchBookmarks``;
- ``POST /api/v1/namespaces/{ns}/events``: a core ``v1`` Event is created (a name is
  generated from ``metadata.generateName``), recorded in :attr:`FakeKubeApi.events`, and
  answered 201; an Event in another namespace than the path's is a 400, as on a cluster;
- ``GET|PATCH|PUT .../namespaces/{ns}/{plural}/{name}[/status]``: one object
  and its status subresource (merge patch or full replace), recorded in
  :attr:`FakeKubeApi.status_writes`. A status write that changes something
  bumps the resourceVersion and emits ``MODIFIED`` (so a source that rewrote
  status on every event would loop here as it would on a cluster); a no-op
  write emits nothing, like the apiserver.

Tests drive the state with :meth:`FakeKubeApi.apply` / :meth:`FakeKubeApi.delete`
(``silent=True`` changes the state without any watch event, as if the events
had been compacted away), and inject trouble with :meth:`expire_history`
(410 Gone), :meth:`drop_watches` (connections cut mid-stream),
:meth:`bookmark` and :meth:`fail_next`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as _dt
import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.harness.procs import free_port

GROUP = "gostoa.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURALS = {"tools": "Tool", "toolsets": "ToolSet", "resources": "Resource", "prompts": "Prompt",
           "openapiimports": "OpenAPIImport"}
KIND_PLURAL = {kind: plural for plural, kind in PLURALS.items()}
_PREFIX = f"/apis/{GROUP}/{VERSION}/"


@dataclass(frozen=True)
class StatusWrite:
    """One write to a status subresource, as the server received it."""

    kind: str
    namespace: str
    name: str
    method: str
    content_type: str
    body: dict[str, Any]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch") in ("1", "true")


@dataclass(frozen=True)
class _Event:
    rv: int
    plural: str
    namespace: str
    type: str
    obj: dict[str, Any]


@dataclass
class _Fault:
    verb: str
    code: int
    times: int
    plural: str | None = None  # only requests for this kind (None: any kind)


@dataclass
class _State:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    rv: int = 100
    compacted_rv: int = 0
    history: list[_Event] = field(default_factory=list)
    snapshots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    drop_epoch: int = 0
    expire_epoch: int = 0
    bookmark_epoch: int = 0
    closing: bool = False


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge_patch(out.get(k), v)
    return out


class FakeKubeApi:
    """The fake apiserver; a context manager serving on a free loopback port."""

    def __init__(self, *, token: str | None = None) -> None:
        self.token = token
        self.port = free_port()
        self.status_writes: list[StatusWrite] = []
        self.events: list[dict[str, Any]] = []  # core v1 Events created, in order
        self.requests: list[RecordedRequest] = []
        self._cond = threading.Condition()
        self._state = _State()
        self._faults: list[_Fault] = []
        self._conns: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._open_watches = 0

    # -- lifecycle ----------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        api = self

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False
            allow_reuse_address = True

        class _Bound(_Handler):
            fake = api

        self._server = _Server(("127.0.0.1", self.port), _Bound)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-kube-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._state.closing = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        # Idle keep-alive connections block their handler threads in a read: cut them.
        with self._cond:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeKubeApi:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- state, as a test drives it -------------------------------------------
    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._state.rv

    def apply(self, manifest: dict[str, Any], *, silent: bool = False) -> dict[str, Any]:
        """Create or update an object (spec changes bump metadata.generation); returns the stored copy."""
        kind = manifest["kind"]
        plural = KIND_PLURAL[kind]
        meta = manifest["metadata"]
        key = (plural, meta["namespace"], meta["name"])
        with self._cond:
            old = self._state.objects.get(key)
            obj = copy.deepcopy(manifest)
            obj["apiVersion"] = API_VERSION
            new_meta = obj.setdefault("metadata", {})
            if old is None:
                obj.pop("status", None)  # the status subresource ignores status on create
                new_meta.update(generation=1, uid=str(uuid.uuid4()),
                                creationTimestamp=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
                event = "ADDED"
            else:
                old_meta = old["metadata"]
                changed = obj.get("spec") != old.get("spec")
                new_meta.update(uid=old_meta["uid"], creationTimestamp=old_meta["creationTimestamp"],
                                generation=old_meta["generation"] + (1 if changed else 0))
                obj["status"] = copy.deepcopy(old.get("status")) if "status" in old else None
                if obj["status"] is None:
                    obj.pop("status")
                event = "MODIFIED"
            self._record(key, event, obj, silent=silent)
            return copy.deepcopy(obj)

    def delete(self, kind: str, namespace: str, name: str, *, silent: bool = False) -> None:
        key = (KIND_PLURAL[kind], namespace, name)
        with self._cond:
            obj = self._state.objects.get(key)
            if obj is None:
                raise KeyError(key)
            self._record(key, "DELETED", copy.deepcopy(obj), silent=silent)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._cond:
            obj = self._state.objects.get((KIND_PLURAL[kind], namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def writes_for(self, kind: str, namespace: str, name: str) -> list[StatusWrite]:
        with self._cond:
            return [w for w in self.status_writes
                    if (w.kind, w.namespace, w.name) == (kind, namespace, name)]

    def watch_requests(self) -> list[RecordedRequest]:
        with self._cond:
            return [r for r in self.requests if r.method == "GET" and r.is_watch]

    def list_requests(self) -> list[RecordedRequest]:
        with self._cond:
            return [r for r in self.requests if r.method == "GET" and not r.is_watch
                    and r.path.rstrip("/").rsplit("/", 1)[-1] in PLURALS]

    def open_watches(self) -> int:
        with self._cond:
            return self._open_watches

    # -- trouble ------------------------------------------------------------
    def expire_history(self) -> None:
        """Compact: open watches get ERROR 410, and watching from any resourceVersion seen so far is Gone."""
        with self._cond:
            # Unrelated writes advance a real cluster's counter too; the next list starts past the compaction.
            self._state.rv += 1
            self._state.compacted_rv = self._state.rv
            self._state.history.clear()
            self._state.snapshots.clear()
            self._state.expire_epoch += 1
            self._cond.notify_all()

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream (no final chunk)."""
        with self._cond:
            self._state.drop_epoch += 1
            self._cond.notify_all()

    def bookmark(self, *, advance: int = 0) -> int:
        """Send a BOOKMARK to watches that allow them (after advancing the counter by ``advance``)."""
        with self._cond:
            self._state.rv += advance
            self._state.bookmark_epoch += 1
            self._cond.notify_all()
            return self._state.rv

    def fail_next(self, verb: str, code: int = 500, times: int = 1, plural: str | None = None) -> None:
        """Answer the next ``times`` requests of ``verb`` (for the kind ``plural``, or any) with ``code``.

        Verbs: list, continue (a list request carrying a continue token), watch, patch, put, get, create (events).
        """
        with self._cond:
            self._faults.append(_Fault(verb, code, times, plural))

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()

    # -- internals (called by the handler) ------------------------------------
    def _record(self, key: tuple[str, str, str], event: str, obj: dict[str, Any], *, silent: bool) -> None:
        st = self._state
        st.rv += 1
        obj["metadata"]["resourceVersion"] = str(st.rv)
        if event == "DELETED":
            st.objects.pop(key, None)
        else:
            st.objects[key] = obj
        if not silent:
            st.history.append(_Event(st.rv, key[0], key[1], event, copy.deepcopy(obj)))
        self._cond.notify_all()

    def _take_fault(self, verb: str, plural: str | None = None) -> int | None:
        with self._cond:
            for f in self._faults:
                if f.verb == verb and f.times > 0 and f.plural in (None, plural):
                    f.times -= 1
                    return f.code
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers, body and each watch event go out as written, as from an apiserver
    fake: FakeKubeApi
    timeout = 30  # idle keep-alive connections end on their own

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.fake._cond:
            self.fake._conns.add(self.connection)

    def finish(self) -> None:
        with self.fake._cond:
            self.fake._conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    # -- plumbing -------------------------------------------------------------
    def _send_json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, reason: str, message: str) -> None:
        self._send_json(code, _status(code, reason, message))

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _admitted(self, path: str, query: dict[str, str]) -> bool:
        """Record the request; False after answering 401 when a token is required and not sent."""
        with self.fake._cond:
            self.fake.requests.append(RecordedRequest(self.command, path, query))
        if self.fake.token is not None and self.headers.get("Authorization") != f"Bearer {self.fake.token}":
            self._error(401, "Unauthorized", "Unauthorized")
            return False
        return True

    def _route(self) -> tuple[str, str | None, str | None, bool, dict[str, str]] | None:
        """-> (plural, namespace, name, status_subresource, query), or None after answering 404."""
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if not self._admitted(parts.path, query):
            return None
        if not parts.path.startswith(_PREFIX):
            self._error(404, "NotFound", f"the server could not find the requested resource ({parts.path})")
            return None
        segs = parts.path[len(_PREFIX):].strip("/").split("/")
        namespace: str | None = None
        if segs[0] == "namespaces" and len(segs) >= 3:
            namespace, segs = segs[1], segs[2:]
        plural = segs[0]
        name = segs[1] if len(segs) >= 2 else None
        sub = segs[2] if len(segs) >= 3 else None
        if plural not in PLURALS or len(segs) > 3 or (sub is not None and sub != "status") or (
                name is not None and namespace is None):
            self._error(404, "NotFound", f"the server could not find the requested resource ({parts.path})")
            return None
        return plural, namespace, name, sub == "status", query

    def _fault(self, verb: str, plural: str | None = None) -> bool:
        code = self.fake._take_fault(verb, plural)
        if code is None:
            return False
        self._error(code, "InternalError" if code >= 500 else "Injected", f"injected {verb} failure")
        return True

    # -- verbs --------------------------------------------------------------
    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        if not self._admitted(parts.path, {}):
            return
        segs = parts.path.strip("/").split("/")
        if segs[:3] != ["api", "v1", "namespaces"] or len(segs) != 5 or segs[4] != "events":
            self._error(405, "MethodNotAllowed", f"only core v1 events can be created here ({parts.path})")
            return
        try:
            body = self._read_body()
        except ValueError:
            self._error(400, "BadRequest", "body is not JSON")
            return
        if self._fault("create"):
            return
        namespace = segs[3]
        meta = (body or {}).get("metadata") or {}
        if not isinstance(body, dict) or body.get("kind") != "Event" or meta.get("namespace", namespace) != namespace:
            self._error(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                           "sent on the request")
            return
        with self.fake._cond:  # events have no watch here: the registry's resourceVersions stay as they were
            event = copy.deepcopy(body)
            event["metadata"] = {**meta, "namespace": namespace, "resourceVersion": str(len(self.fake.events) + 1),
                                 "name": meta.get("name") or f"{meta.get('generateName', 'event.')}{uuid.uuid4().hex[:10]}",
                                 "uid": str(uuid.uuid4())}
            self.fake.events.append(event)
            self.fake._cond.notify_all()
        self._send_json(201, event)

    def do_GET(self) -> None:
        route = self._route()
        if route is None:
            return
        plural, namespace, name, _status_sub, query = route
        if name is not None:
            if self._fault("get", plural):
                return
            with self.fake._cond:
                obj = self.fake._state.objects.get((plural, namespace or "", name))
                obj = copy.deepcopy(obj)
            if obj is None:
                self._error(404, "NotFound", f'{plural}.{GROUP} "{name}" not found')
            else:
                self._send_json(200, obj)
            return
        if query.get("watch") in ("1", "true"):
            if not self._fault("watch", plural):
                self._watch(plural, namespace, query)
            return
        if query.get("continue") and self._fault("continue", plural):
            return
        if not self._fault("list", plural):
            self._list(plural, namespace, query)

    def _list(self, plural: str, namespace: str | None, query: dict[str, str]) -> None:
        fake = self.fake
        limit = int(query["limit"]) if query.get("limit") else None
        token = query.get("continue")
        with fake._cond:
            st = fake._state
            if token:
                try:
                    decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                    snap_id, offset, rv = decoded["id"], decoded["offset"], decoded["rv"]
                except (ValueError, KeyError):
                    self._error(400, "BadRequest", "invalid continue token")
                    return
                items = st.snapshots.get(snap_id)
                if items is None:
                    self._error(410, "Expired", "The provided continue parameter is too old")
                    return
            else:
                items = [copy.deepcopy(o) for (p, ns, _n), o in sorted(st.objects.items())
                         if p == plural and (namespace is None or ns == namespace)]
                snap_id, offset, rv = str(uuid.uuid4()), 0, st.rv
                st.snapshots[snap_id] = items
        page = items[offset:offset + limit] if limit else items[offset:]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit and offset + limit < len(items):
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"id": snap_id, "offset": offset + limit, "rv": rv}).encode()).decode()
        self._send_json(200, {"apiVersion": API_VERSION, "kind": f"{PLURALS[plural]}List",
                              "metadata": meta, "items": page})

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _watch(self, plural: str, namespace: str | None, query: dict[str, str]) -> None:
        fake = self.fake
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        deadline = time.monotonic() + timeout if timeout else None
        since = query.get("resourceVersion") or "0"

        def matches(e: _Event) -> bool:
            return e.plural == plural and (namespace is None or e.namespace == namespace)

        with fake._cond:
            st = fake._state
            epochs = (st.drop_epoch, st.expire_epoch, st.bookmark_epoch)
            gone = False
            if since == "0":
                pending = [{"type": "ADDED", "object": copy.deepcopy(o)}
                           for (p, ns, _n), o in sorted(st.objects.items())
                           if p == plural and (namespace is None or ns == namespace)]
            elif not since.isdigit():
                self._error(400, "BadRequest", f"invalid resourceVersion {since!r}")
                return
            elif int(since) < st.compacted_rv:
                pending = [{"type": "ERROR", "object": _status(
                    410, "Expired", f"too old resource version: {since} ({st.compacted_rv})")}]
                gone = True
            else:
                pending = [{"type": e.type, "object": e.obj} for e in st.history
                           if e.rv > int(since) and matches(e)]
            cursor = st.rv
            fake._open_watches += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._stream(pending, gone, epochs, cursor, matches, PLURALS[plural] if bookmarks else None, deadline)
        except OSError:
            self.close_connection = True
        finally:
            with fake._cond:
                fake._open_watches -= 1

    def _stream(self, pending: list[dict[str, Any]], gone: bool, epochs: tuple[int, int, int], cursor: int,
                matches: Any, bookmark_kind: str | None, deadline: float | None) -> None:
        """Write events until cut, expired, timed out or closed; bookmarks (of ``bookmark_kind``) if asked."""
        fake = self.fake
        drop0, expire0, bookmark0 = epochs
        while True:
            for event in pending:
                self._chunk(event)
            if gone:  # the apiserver ends a watch after its 410 ERROR event
                self.wfile.write(b"0\r\n\r\n")
                return
            pending = []
            with fake._cond:
                st = fake._state
                while True:
                    if st.drop_epoch != drop0:
                        # Cut mid-stream: no terminating chunk, the client sees a broken connection.
                        self.close_connection = True
                        with contextlib.suppress(OSError):
                            self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if st.closing or (deadline is not None and time.monotonic() >= deadline):
                        break
                    if st.expire_epoch != expire0:
                        pending = [{"type": "ERROR", "object": _status(
                            410, "Expired", f"too old resource version: {cursor} ({st.compacted_rv})")}]
                        gone = True
                        break
                    pending = [{"type": e.type, "object": e.obj} for e in st.history
                               if e.rv > cursor and matches(e)]
                    if st.bookmark_epoch != bookmark0:
                        bookmark0 = st.bookmark_epoch
                        if bookmark_kind is not None:
                            pending.append({"type": "BOOKMARK", "object": {
                                "apiVersion": API_VERSION, "kind": bookmark_kind,
                                "metadata": {"resourceVersion": str(st.rv)}}})
                    cursor = st.rv
                    if pending:
                        break
                    if self._peer_closed():
                        self.close_connection = True
                        return
                    wait = 0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
                    fake._cond.wait(wait)
            if not pending:
                self.wfile.write(b"0\r\n\r\n")  # clean end (timeoutSeconds or shutdown)
                return

    def _peer_closed(self) -> bool:
        """True when the client hung up (a watch client sends nothing, so readable means EOF)."""
        try:
            ready, _, _ = select.select([self.connection], [], [], 0)
            return bool(ready) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def do_PATCH(self) -> None:
        route = self._route()
        if route is None:
            return
        plural, namespace, name, status_sub, _q = route
        if name is None or not status_sub:
            self._error(405, "MethodNotAllowed", "only the status subresource can be patched here")
            return
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            body = self._read_body()
        except ValueError:
            self._error(400, "BadRequest", "body is not JSON")
            return
        if self._fault("patch", plural):
            return
        if ctype != "application/merge-patch+json":
            self._error(415, "UnsupportedMediaType", f"unsupported patch type {ctype!r}")
            return
        self._write_status(plural, namespace or "", name, "PATCH", ctype, body,
                           lambda obj: _merge_patch(obj, body).get("status"))

    def do_PUT(self) -> None:
        route = self._route()
        if route is None:
            return
        plural, namespace, name, status_sub, _q = route
        if name is None or not status_sub:
            self._error(405, "MethodNotAllowed", "only the status subresource can be replaced here")
            return
        try:
            body = self._read_body()
        except ValueError:
            self._error(400, "BadRequest", "body is not JSON")
            return
        if self._fault("put", plural):
            return
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        want_rv = (body or {}).get("metadata", {}).get("resourceVersion")

        def new_status(obj: dict[str, Any]) -> Any:
            if want_rv and want_rv != obj["metadata"]["resourceVersion"]:
                raise _Conflict
            return (body or {}).get("status")

        self._write_status(plural, namespace or "", name, "PUT", ctype, body, new_status)

    def _write_status(self, plural: str, namespace: str, name: str, method: str, ctype: str,
                      body: Any, new_status: Any) -> None:
        fake = self.fake
        key = (plural, namespace, name)
        with fake._cond:
            fake.status_writes.append(StatusWrite(PLURALS[plural], namespace, name, method, ctype,
                                                  copy.deepcopy(body) if isinstance(body, dict) else {}))
            obj = fake._state.objects.get(key)
            if obj is None:
                self._error(404, "NotFound", f'{plural}.{GROUP} "{name}" not found')
                return
            try:
                status = new_status(copy.deepcopy(obj))
            except _Conflict:
                self._error(409, "Conflict", "the object has been modified; please apply your changes "
                                             "to the latest version and try again")
                return
            if status != obj.get("status"):
                updated = copy.deepcopy(obj)
                if status is None:
                    updated.pop("status", None)
                else:
                    updated["status"] = status
                fake._record(key, "MODIFIED", updated, silent=False)
                obj = updated
            result = copy.deepcopy(obj)
        self._send_json(200, result)


class _Conflict(Exception):
    pass


@contextlib.contextmanager
def fake_kube_api(*, token: str | None = None) -> Iterator[FakeKubeApi]:
    """``with fake_kube_api() as api:`` — the server, stopped on exit."""
    api = FakeKubeApi(token=token)
    api.start()
    try:
        yield api
    finally:
        api.stop()
