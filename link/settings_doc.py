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


def _env(key: str) -> str:
    """The variables that set ``key``: its own ``STOA_*`` name, then the platform's (which it wins over)."""
    names = [ENV_PREFIX + key.replace(".", "_").upper(), *(var for var, k in PLATFORM_ENV.items() if k == key)]
    return ", ".join(f"`{name}`" for name in dict.fromkeys(names))


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `link/settings.py` by `python -m link.settings_doc`; a test keeps it current.",
        "Precedence: flags > environment > YAML file (`--config`) > defaults. Env: `STOA_<SECTION>_<KEY>`;",
        "flag: `--<section>-<key>` (or `--set section.key=value`). Lists are comma-separated in env and flags.",
        "",
        "In the environment a `STOA_*` name wins over the platform's own name for the same key (`STOA_MCP_PORT`",
        "over `GATEWAY_PORT`); an empty platform variable counts as unset, an empty `STOA_*` one clears an",
        "optional key (or empties a list). Mappings (`ratelimit.tenants`) are YAML or JSON text and merge key by",
        "key with the file's. A `STOA_*` variable that names no key stops start-up (exit code 2, with the",
        "nearest known name), except those Kubernetes sets for a Service and the stdio bridge's own (read by",
        "`stoa-link mcp --stdio`: `STOA_MCP_TOKEN`, `STOA_MCP_CLIENT_ID`, `STOA_MCP_CLIENT_SECRET[_FILE]`,",
        "`STOA_MCP_ISSUER`, `STOA_MCP_SCOPE`, `STOA_MCP_TOKEN_CACHE`; see docs/mcp-desktop.md).",
        "",
    ]
    top = _comments(Settings)
    lines += ["## Top level", "", "| key | type | default | env | notes |", "|---|---|---|---|---|"]
    for name, f in Settings.model_fields.items():
        if name in _SECTIONS or name == "routes":
            continue
        lines.append(f"| `{name}` | {_type(f.annotation)} | {_default(f)} | {_env(name)} | {top.get(name, '')} |")
    for name, section in _SECTIONS.items():
        doc = (section.__doc__ or "").strip().splitlines()[0] if section.__doc__ else ""
        lines += ["", f"## `{name}`", "", doc, "", "| key | type | default | env | notes |", "|---|---|---|---|---|"]
        notes = _comments(section)
        for sub, f in section.model_fields.items():
            key = f"{name}.{sub}"
            lines.append(f"| `{key}` | {_type(f.annotation)} | {_default(f)} | {_env(key)} | {notes.get(sub, '')} |")
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
