"""Resumable Streamable HTTP: a bounded, time-limited event store, one window per session.

The SDK's session manager hands one :class:`~mcp.server.streamable_http.EventStore`
to every session's transport, and stream ids are JSON-RPC request ids (``"1"`` in
every session), so a single shared store would let one session replay another's
events. :class:`SessionEventStores` therefore gives each session its own
:class:`SessionEvents` view (see :mod:`mcp_server.resume`): an event id is only
ever looked up among the events of the session asking for it.

Bounds: ``per_session`` events per session, ``total`` events over all sessions
(the oldest anywhere goes first) and ``ttl_s`` seconds per event. When POSTs
are answered with JSON (``json_posts``), only the session's GET stream is an
SSE stream a client can resume: a POST's answer is one JSON body (the SDK
drops everything else related to it), so it is not stored at all. Eviction only
ever drops the oldest events, so when a ``Last-Event-ID`` is still known every
event after it is too: a replay is either complete or refused, never lossy.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mcp.server.streamable_http import GET_STREAM_KEY, EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage

__all__ = ["SessionEventStores", "SessionEvents"]


@dataclass(slots=True)
class _Event:
    session: str
    stream: StreamId
    message: JSONRPCMessage | None  # None: a priming event (a cursor, nothing to replay)
    stored_at: float


class SessionEventStores:
    """All sessions' events, bounded per session, in total and in age."""

    def __init__(self, *, per_session: int = 256, total: int = 20_000, ttl_s: float = 300.0,
                 json_posts: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_session = per_session
        self.json_posts = json_posts
        self.total = total
        self.ttl_s = ttl_s
        self._clock = clock
        self._ids = itertools.count(1)
        self._all: OrderedDict[EventId, _Event] = OrderedDict()  # insertion order = age order
        self._sessions: dict[str, OrderedDict[EventId, None]] = {}

    def session(self, session_id: str) -> SessionEvents:
        """The event store the transport of ``session_id`` writes to and replays from."""
        self._sessions.setdefault(session_id, OrderedDict())
        return SessionEvents(self, session_id)

    def forget(self, session_id: str) -> None:
        """Drop a finished session's events."""
        for event_id in self._sessions.pop(session_id, {}):
            self._all.pop(event_id, None)

    def __len__(self) -> int:
        return len(self._all)

    def knows(self, session_id: str, event_id: str) -> bool:
        """Whether ``event_id`` is a live event of ``session_id`` (not another session's, not expired)."""
        self._expire()
        return event_id in self._sessions.get(session_id, ())

    # -- used by SessionEvents ----------------------------------------------------------------
    def _store(self, session_id: str, stream: StreamId, message: JSONRPCMessage | None) -> EventId:
        self._expire()
        event_id = str(next(self._ids))
        own = self._sessions.setdefault(session_id, OrderedDict())
        own[event_id] = None
        self._all[event_id] = _Event(session_id, stream, message, self._clock())
        while len(own) > self.per_session:
            self._all.pop(own.popitem(last=False)[0], None)
        while len(self._all) > self.total:
            oldest, event = self._all.popitem(last=False)
            self._sessions.get(event.session, OrderedDict()).pop(oldest, None)
        return event_id

    def _after(self, session_id: str, last_event_id: str) -> tuple[StreamId, list[tuple[EventId, _Event]]] | None:
        if not self.knows(session_id, last_event_id):
            return None
        stream = self._all[last_event_id].stream
        own = list(self._sessions[session_id])
        later = own[own.index(last_event_id) + 1:]
        events = [(i, self._all[i]) for i in later if self._all[i].stream == stream]
        return stream, events

    def _expire(self) -> None:
        deadline = self._clock() - self.ttl_s
        while self._all:
            oldest, event = next(iter(self._all.items()))
            if event.stored_at > deadline:
                return
            self._all.popitem(last=False)
            self._sessions.get(event.session, OrderedDict()).pop(oldest, None)


class SessionEvents(EventStore):
    """One session's view of :class:`SessionEventStores` (the SDK's ``EventStore`` interface).

    A replay remembers where it ended on its stream (:meth:`missed_since_replay`): the SDK's
    transport registers the resumed stream for live events only after the replay and the new
    priming event, and what the session stores in between reaches no stream by itself.
    """

    def __init__(self, stores: SessionEventStores, session_id: str) -> None:
        self._stores = stores
        self._session = session_id
        self._replayed_to: dict[StreamId, EventId] = {}  # stream -> the last event its replay covered

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        if self._stores.json_posts and stream_id != GET_STREAM_KEY:
            return ""  # a JSON-answered POST: nothing to resume (the id goes nowhere on the wire)
        return self._stores._store(self._session, stream_id, message)

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        found = self._stores._after(self._session, last_event_id)
        if found is None:
            return None
        stream, events = found
        last = last_event_id
        while events:  # what is stored while the replay is being sent is replayed too
            for event_id, event in events:
                if event.message is not None:
                    await send_callback(EventMessage(event.message, event_id))
                last = event_id
            later = self._stores._after(self._session, last)
            events = later[1] if later is not None else []
        self._replayed_to[stream] = last
        return stream

    def missed_since_replay(self, stream: StreamId) -> list[EventMessage]:
        """The events stored on ``stream`` since its last replay ended, once (then forgotten)."""
        last = self._replayed_to.pop(stream, None)
        found = self._stores._after(self._session, last) if last is not None else None
        if found is None:
            return []
        return [EventMessage(event.message, event_id) for event_id, event in found[1] if event.message is not None]

    def forget_replay(self, stream: StreamId) -> None:
        """``stream`` has a live connection already: its replay left nothing to hand over."""
        self._replayed_to.pop(stream, None)
