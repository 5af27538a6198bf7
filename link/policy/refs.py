"""What a Rego policy reads, found by a light scan of its source.

The embedded engine pays for every node of the input it converts, so the
phase hands the policy only the parts of ``input`` its source mentions
(``input.attributes.request.http.method`` -> that one string). A reference the
scan cannot follow statically (``input[x]``, a bare ``input``) keeps the whole
subtree it starts from, so pruning never hides anything a policy could read.

The same scan tells whether a policy is deterministic (no clock, network or
randomness): only then may its decisions be cached by their input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "FULL",
    "InputNeeds",
    "PolicyScan",
    "blank_strings",
    "called_functions",
    "defined_functions",
    "prune",
    "scan_policies",
    "strip_comments",
]

# A leaf of the needs tree: the whole subtree below it is read.
FULL: Mapping[str, Any] = MappingProxyType({})

# Builtins whose answer depends on more than their arguments (clock, network, randomness).
_NONDETERMINISTIC = (
    "time.now_ns",
    "http.send",
    "rand.intn",
    "uuid.rfc4122",
    "opa.runtime",
    "net.lookup_ip_addr",
    "io.jwt.decode_verify",
    "crypto.x509.parse_and_verify_certificates",
)

_LEXEME = re.compile(r'"(?:\\.|[^"\\\n])*"|`[^`]*`|#[^\n]*')
_INPUT = re.compile(r"(?<![\w.])input\b")
_SEGMENT = re.compile(
    r'\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)'  # .name
    r'|\s*\[\s*"((?:\\.|[^"\\\n])*)"\s*\]'  # ["name"]
    r"|\s*\[\s*(\d+)\s*\]"  # [0]
)
_CALL = re.compile(r"(?<![\w.])([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\(")
_FUNC_HEAD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*\(", re.MULTILINE)
_IMPORT = re.compile(r"^\s*import\s+(data(?:\.[A-Za-z_]\w*)+|input(?:\.[A-Za-z_]\w*)*|future\.\S+|rego\.v1)"
                     r"(?:\s+as\s+([A-Za-z_]\w*))?", re.MULTILINE)
_KEYWORDS = frozenset({"if", "not", "some", "every", "in", "contains", "else", "default", "import", "package",
                       "with", "as", "print", "trace"})

InputNeeds = dict[str | int, Any]


def strip_comments(source: str) -> str:
    """The source with ``#`` comments blanked (strings kept, line numbers unchanged)."""
    return _LEXEME.sub(lambda m: " " * len(m.group(0)) if m.group(0).startswith("#") else m.group(0), source)


def blank_strings(source: str) -> str:
    """The source with comments and string contents blanked (newlines kept)."""
    def repl(m: re.Match[str]) -> str:
        text = m.group(0)
        if text.startswith("#"):
            return " " * len(text)
        return text[0] + re.sub(r"[^\n]", " ", text[1:-1]) + text[-1]

    return _LEXEME.sub(repl, source)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)


def _add(tree: InputNeeds, path: list[str | int]) -> bool:
    """Add one path; returns True when it means "the whole input"."""
    if not path:
        return True
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if child is FULL:
            return False  # an ancestor is already read whole
        if child is None:
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = FULL
    return False


def _segments(text: str, pos: int) -> list[str | int]:
    path: list[str | int] = []
    while (seg := _SEGMENT.match(text, pos)) is not None:
        if seg.group(1) is not None:
            path.append(seg.group(1))
        elif seg.group(2) is not None:
            path.append(_unescape(seg.group(2)))
        else:
            path.append(int(seg.group(3)))  # a constant index: input.parsed_path[0]
        pos = seg.end()
    return path


def _input_paths(source: str) -> Iterable[list[str | int]]:
    text = strip_comments(source)
    # ``import input.attributes.request.http`` makes ``http.method`` mean
    # ``input.attributes.request.http.method``.
    aliases: dict[str, list[str | int]] = {}
    import_spans: list[tuple[int, int]] = []
    for m in _IMPORT.finditer(text):
        target = m.group(1)
        if target == "input" or target.startswith("input."):
            parts: list[str | int] = list(target.split(".")[1:])
            aliases[m.group(2) or (str(parts[-1]) if parts else "input")] = parts
            import_spans.append((m.start(), m.end()))
    for m in _INPUT.finditer(text):
        if any(start <= m.start() < end for start, end in import_spans):
            continue
        yield _segments(text, m.end())
    for alias, prefix in aliases.items():
        if alias == "input":
            continue
        for m in re.finditer(rf"(?<![\w.]){re.escape(alias)}\b", text):
            if any(start <= m.start() < end for start, end in import_spans):
                continue
            yield prefix + _segments(text, m.end())


@dataclass(frozen=True, slots=True)
class PolicyScan:
    """What a set of modules reads from ``input`` and whether it is deterministic."""

    needs: InputNeeds | None  # None: the whole input
    deterministic: bool
    nondeterministic_calls: tuple[str, ...] = ()


def scan_policies(sources: Iterable[str]) -> PolicyScan:
    """Scan every module of one policy set."""
    tree: InputNeeds = {}
    whole = False
    calls: set[str] = set()
    for source in sources:
        for path in _input_paths(source):
            if _add(tree, path):
                whole = True
        bare = blank_strings(source)
        calls.update(name for name in _NONDETERMINISTIC if name in bare)
    return PolicyScan(needs=None if whole else tree, deterministic=not calls,
                      nondeterministic_calls=tuple(sorted(calls)))


def prune(value: Any, needs: Mapping[Any, Any] | None) -> Any:
    """Keep only the parts of ``value`` that ``needs`` names (``None`` or FULL keep all).

    A list read only at constant indices (``parsed_path[0]``) keeps its first
    elements up to the highest index read: nothing beyond it can be observed.
    """
    if needs is None or needs is FULL:
        return value
    if isinstance(value, list):
        if not all(isinstance(k, int) for k in needs):
            return value
        return [prune(v, needs.get(i, FULL)) for i, v in enumerate(value[: max(needs) + 1])]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, sub in needs.items():
        if key in value:
            out[key] = prune(value[key], sub)
    return out


def defined_functions(sources: Iterable[str]) -> set[str]:
    """Names of the functions the modules define (``f(x) := …`` at the start of a line)."""
    names: set[str] = set()
    for source in sources:
        names.update(_FUNC_HEAD.findall(blank_strings(source)))
    return names


def called_functions(source: str) -> list[tuple[str, int]]:
    """``(name, line)`` of every plain function call, skipping ``data.…`` calls and imported aliases."""
    text = blank_strings(source)
    aliases = {"data", "input"}
    for m in _IMPORT.finditer(text):
        aliases.add(m.group(2) or m.group(1).rsplit(".", 1)[-1])
    heads = {(m.start()) for m in _FUNC_HEAD.finditer(text)}
    out: list[tuple[str, int]] = []
    for m in _CALL.finditer(text):
        name = m.group(1)
        if m.start() in heads or name in _KEYWORDS or name.split(".", 1)[0] in aliases:
            continue
        out.append((name, text.count("\n", 0, m.start()) + 1))
    return out
