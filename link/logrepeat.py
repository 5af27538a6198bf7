"""Repeated lines of chatty libraries, said once per window with a count.

During a broker outage aiokafka logs every reconnect attempt at ERROR ("Unable
connect to node with id 1: …"), about ten a second per node: a five-minute
outage was thousands of identical lines around the few of Link's own that say
what is going on (spooling, how much, since when). :class:`RepeatFilter` sits on
the log handler and, for the loggers it is given, lets the first line of each
kind through (same logger, level and message template), holds back the repeats
for ``window_s``, and adds to the next one that passes how many were held back.
Link's own loggers are never filtered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

__all__ = ["CHATTY_LOGGERS", "RepeatFilter", "install"]

# Libraries whose failure lines repeat per retry; Link says what matters about the same failure itself.
CHATTY_LOGGERS = ("aiokafka", "kafka")
_MAX_KINDS = 1_024  # distinct (logger, level, template) remembered; bounded whatever a library logs


class RepeatFilter(logging.Filter):
    """Pass the first record of a kind per ``window_s``; count and drop the rest in between."""

    def __init__(self, prefixes: Iterable[str] = CHATTY_LOGGERS, window_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._prefixes = tuple(prefixes)
        self._window = window_s
        self._clock = clock
        self._lock = threading.Lock()  # records come from any thread (aiokafka, to_thread writers)
        self._kinds: dict[tuple[str, int, str], list[float | int]] = {}  # kind -> [window start, held]

    def _watched(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self._prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._watched(record.name):
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self._window:
                seen[1] += 1
                return False
            held = int(seen[1]) if seen is not None else 0
            if seen is None and len(self._kinds) >= _MAX_KINDS:
                self._kinds.clear()
            self._kinds[kind] = [now, 0]
        if held:
            # The count goes into the message itself, so every formatter shows it.
            record.msg = f"{record.msg} ({held} more like this in the last {self._window:.0f} s)"
        return True


def install(handlers: Iterable[logging.Handler] | None = None, window_s: float = 30.0) -> RepeatFilter:
    """Attach one filter to the root logger's handlers (where library records end up)."""
    repeat = RepeatFilter(window_s=window_s)
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        handler.addFilter(repeat)
    return repeat
