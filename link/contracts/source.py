"""YAML/JSON documents that remember the line of every field, so problems can say where they are."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["Document", "DocumentError", "field_path", "load_documents", "load_text"]

Path = tuple[str | int, ...]


class DocumentError(Exception):
    """A file is not valid YAML/JSON; ``line`` is where the parser stopped (0 = unknown)."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


@dataclass(slots=True)
class Document:
    """One document of a file: its plain value and the line (1-based) of each field path."""

    file: str
    data: Any
    line: int
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int:
        """The line of ``path`` or of its closest ancestor present in the file."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return self.line


def field_path(path: Path) -> str:
    """``("endpoints", 0, "path")`` -> ``endpoints[0].path``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _mark_lines(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
            lines[(*path, name)] = key.start_mark.line + 1
            _mark_lines(value, (*path, name), lines)
            lines[(*path, name)] = key.start_mark.line + 1  # the key's line, not its value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _mark_lines(item, (*path, i), lines)


def load_text(text: str, file: str) -> list[Document]:
    """Every document of a YAML (or JSON) text; raises :class:`DocumentError`."""
    docs: list[Document] = []
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if node is None:
                continue
            loader = yaml.SafeLoader("")
            data = loader.construct_document(node)
            lines: dict[Path, int] = {}
            _mark_lines(node, (), lines)
            docs.append(Document(file=file, data=data, line=node.start_mark.line + 1, lines=lines))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "not valid YAML/JSON"
        raise DocumentError(file, mark.line + 1 if mark is not None else 0, str(problem)) from None
    return docs


def load_documents(path: str) -> list[Document]:
    """Read one file; raises :class:`DocumentError` (also for unreadable files)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DocumentError(path, 0, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return load_text(text, path)


def iter_files(paths: list[str], suffixes: tuple[str, ...]) -> Iterator[str]:
    """Files under ``paths`` (files as given, directories walked in order) ending with ``suffixes``."""
    import os

    for path in paths:
        if os.path.isdir(path):
            for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    # Shadow mode's drafts (*.draft.yaml) are never enforced: only promoted copies are.
                    if name.endswith(suffixes) and not name.startswith(".") and not name.endswith(".draft.yaml"):
                        yield os.path.join(dirpath, name)
        else:
            yield path
