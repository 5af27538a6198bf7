"""Link's own files for ``stoa-link validate``: an API keys file and a settings file (``--config``).

Both are recognised by their shape (neither has a ``kind``): an API keys file maps
SHA-256 hex digests to ``{consumer, tenant, scopes}``; a settings file holds only
Link's top-level keys (``mode``, ``server``, ``policy`` …). Every problem is
reported, each at the line of its field.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from link.identity.apikeys import ApiKeyError, parse_api_keys
from link.settings import _SECTIONS, Settings

__all__ = ["api_key_problems", "is_api_keys_document", "is_settings_document", "settings_problems"]

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_TOP_KEYS = frozenset(Settings.model_fields)


def is_api_keys_document(data: Any) -> bool:
    """A non-empty mapping whose keys are all SHA-256 hex digests."""
    return isinstance(data, Mapping) and bool(data) and all(_HEX64.match(str(k)) for k in data)


def is_settings_document(data: Any) -> bool:
    """A mapping whose keys are mostly Link's top-level settings (a typo among them is still reported)."""
    if not isinstance(data, Mapping) or not data or "kind" in data:
        return False
    keys = [str(k) for k in data]
    known = sum(1 for k in keys if k in _TOP_KEYS)
    return known > 0 and known * 2 >= len(keys) and any(k in _SECTIONS or k in ("mode", "routes") for k in keys)


def api_key_problems(data: Mapping[str, Any], source: str) -> list[tuple[tuple[str, ...], str]]:
    """``(field path, reason)`` for every bad entry (each entry is checked on its own)."""
    out: list[tuple[tuple[str, ...], str]] = []
    for digest, entry in data.items():
        try:
            parse_api_keys({digest: entry}, source)
        except ApiKeyError as exc:
            # The message starts with "<source>: entry …: "; keep the part after the source.
            reason = str(exc).removeprefix(f"{source}: ")
            out.append(((str(digest),), reason))
    return out


def _suggest(loc: tuple[str | int, ...]) -> str:
    head = str(loc[0])
    if len(loc) == 1:
        choices = sorted(_TOP_KEYS)
    else:
        section = _SECTIONS.get(head)
        choices = sorted(section.model_fields) if section is not None else []
    close = difflib.get_close_matches(str(loc[-1]), choices, n=1, cutoff=0.6)
    if not close:
        return "unknown setting"
    return f"unknown setting; did you mean {'.'.join([*map(str, loc[:-1]), close[0]])}?"


def settings_problems(data: Mapping[str, Any]) -> tuple[Settings | None, list[tuple[tuple[str | int, ...], str]]]:
    """``(Settings or None, [(field path, reason), …])``: every problem pydantic finds, not only the first."""
    try:
        return Settings.model_validate(dict(data)), []
    except ValidationError as exc:
        out: list[tuple[tuple[str | int, ...], str]] = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = str(err["msg"])
            if err["type"] == "extra_forbidden":
                msg = _suggest(loc)
            elif msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
                key, sep, rest = msg.partition(": ")
                if sep and re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", key):
                    loc, msg = (*loc, *key.split(".")), rest
            out.append((loc, msg))
        return None, out


def policy_files(settings: Settings, settings_file: str) -> list[str]:
    """The settings' policy paths, relative ones tried from the working directory, then the file's."""
    out = []
    for raw in settings.policy.paths:
        path = Path(raw)
        if not path.is_absolute() and not path.exists():
            beside = Path(settings_file).parent / path
            path = beside if beside.exists() else path
        out.append(str(path))
    return out
