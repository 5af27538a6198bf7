"""Print the configuration reference (docs/configuration.md) from the settings schema.

    python -m link.settings_doc > docs/configuration.md
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any

from pydantic import BaseModel

from link.settings import _SECTIONS, ENV_PREFIX, PLATFORM_ENV, Settings

_COMMENT = re.compile(r"^\s+(\w+)\s*:.*?#\s*(.+)$")


def _comments(model: type[BaseModel]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in inspect.getsource(model).splitlines():
        m = _COMMENT.match(line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _type(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "")
    return text.replace("<class '", "").replace("'>", "").replace("link.settings.", "").replace("|", "\\|")


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return "unset" if value is None else f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def render() -> str:
    platform = {v: k for k, v in PLATFORM_ENV.items()}
    lines = [
        "# Configuration reference",
        "",
        "Generated from `link/settings.py` by `python -m link.settings_doc`; a test keeps it current.",
        "Precedence: flags > environment > YAML file (`--config`) > defaults. Env: `STOA_<SECTION>_<KEY>`;",
        "flag: `--<section>-<key>` (or `--set section.key=value`). Lists are comma-separated in env and flags.",
        "",
    ]
    top = _comments(Settings)
    lines += ["## Top level", "", "| key | type | default | env | notes |", "|---|---|---|---|---|"]
    for name, f in Settings.model_fields.items():
        if name in _SECTIONS or name == "routes":
            continue
        env = platform.get(name, f"{ENV_PREFIX}{name.upper()}")
        lines.append(f"| `{name}` | {_type(f.annotation)} | {_default(f)} | `{env}` | {top.get(name, '')} |")
    for name, section in _SECTIONS.items():
        doc = (section.__doc__ or "").strip().splitlines()[0] if section.__doc__ else ""
        lines += ["", f"## `{name}`", "", doc, "", "| key | type | default | env | notes |", "|---|---|---|---|---|"]
        notes = _comments(section)
        for sub, f in section.model_fields.items():
            key = f"{name}.{sub}"
            env = platform.get(key, f"{ENV_PREFIX}{name.upper()}_{sub.upper()}")
            lines.append(f"| `{key}` | {_type(f.annotation)} | {_default(f)} | `{env}` | {notes.get(sub, '')} |")
    lines += ["", "## `routes`", "", "A list of data-plane routes (YAML file only); each entry:", "",
              "| key | type | default | notes |", "|---|---|---|---|"]
    from link.settings import RouteSettings

    notes = _comments(RouteSettings)
    for sub, f in RouteSettings.model_fields.items():
        default = "required" if f.is_required() else _default(f)
        lines.append(f"| `{sub}` | {_type(f.annotation)} | {default} | {notes.get(sub, '')} |")
    return "\n".join(lines).replace("|  |", "| |") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
