"""Fixtures of the identity unit tests (helpers live in support.py)."""

from tests.unit.identity.support import idp, make_phase

__all__ = ["idp", "make_phase"]
