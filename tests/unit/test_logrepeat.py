"""Chatty library lines (aiokafka's per-retry errors) pass once per window, with a count."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

from link.logrepeat import RepeatFilter


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_are_held_back_and_counted_on_the_next_line_that_passes() -> None:
    clock = _Clock()
    f = RepeatFilter(window_s=30, clock=clock)
    template = "Unable connect to node with id %s: %s"
    passed = [f.filter(_record("aiokafka", template, 1, f"refused {i}")) for i in range(50)]
    assert passed == [True] + [False] * 49
    clock.now += 31
    again = _record("aiokafka", template, 1, "refused")
    assert f.filter(again)
    assert again.getMessage() == "Unable connect to node with id 1: refused (49 more like this in the last 30 s)"
    clock.now += 31
    quiet = _record("aiokafka", template, 1, "refused")
    assert f.filter(quiet) and quiet.getMessage() == "Unable connect to node with id 1: refused"


def test_kinds_are_told_apart_and_links_own_lines_always_pass() -> None:
    f = RepeatFilter(window_s=30, clock=_Clock())
    assert f.filter(_record("aiokafka.conn", "a %s", 1))
    assert f.filter(_record("aiokafka.conn", "b %s", 1))  # another template
    assert f.filter(_record("aiokafka.conn", "a %s", 1, level=logging.WARNING))  # another level
    assert f.filter(_record("aiokafka.producer", "a %s", 1))  # another logger
    assert not f.filter(_record("aiokafka.conn", "a %s", 2))
    assert all(f.filter(_record("stoa.link.metering", "METERING SPOOL FULL %s", i)) for i in range(20))
    assert all(f.filter(_record("aiokafkaesque", "x")) for _ in range(3))  # a prefix, not a substring


def test_the_served_process_logs_an_outage_burst_once() -> None:
    """The logging `stoa-link serve` sets up (``_configure_logging``), in a fresh interpreter."""
    code = textwrap.dedent("""
        import logging
        from link.cli import _configure_logging
        _configure_logging("info")
        conn = logging.getLogger("aiokafka")
        for i in range(200):
            conn.error("Unable connect to node with id %s: %s", 1, "[Errno 111] Connect call failed")
        logging.getLogger("stoa.link.metering").warning("metering: broker unreachable, spooling")
    """)
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stderr
    assert err.count("Unable connect to node") == 1, err
    assert "broker unreachable, spooling" in err
