"""Turn rego-cpp's error trees into ``(file, line, message)`` problems."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RegoProblem", "explain_build_failure", "parse_rego_errors"]

_ERROR = re.compile(r"\(error(?:\s+(\d+):|(?=\s))")
_LOCATION = re.compile(r"\|(\d+)\|(\d+)")
_MESSAGE = re.compile(r"\(errormsg (\d+):")


@dataclass(frozen=True, slots=True)
class RegoProblem:
    file: str
    line: int  # 0 when unknown
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


def parse_rego_errors(
    text: str, sources: Mapping[str, str], default_file: str = "policy"
) -> list[RegoProblem]:
    """Problems found in a rego-cpp error dump (``(rego-errorseq (error N:file|pos|len (errormsg N:…)))``).

    Strings in the dump are length-prefixed (``16:this is unclosed``); positions are
    character offsets into the module, turned into line numbers with ``sources``.
    """
    problems: list[RegoProblem] = []
    for m in _ERROR.finditer(text):
        pos = m.end()
        file, line = default_file, 0
        if m.group(1) is not None:
            size = int(m.group(1))
            file = text[pos : pos + size]
            pos += size
            loc = _LOCATION.match(text, pos)
            if loc is not None:
                offset = int(loc.group(1))
                src = sources.get(file)
                if src is not None:
                    line = src.count("\n", 0, offset) + 1
                pos = loc.end()
        msg = _MESSAGE.search(text, pos)
        if msg is None:
            continue
        size = int(msg.group(1))
        message = text[msg.end() : msg.end() + size]
        problems.append(RegoProblem(file=file, line=line, message=message))
    if not problems and text.strip():
        first = text.strip().splitlines()[0]
        problems.append(RegoProblem(file=default_file, line=0, message=first[:200]))
    return problems


# rego-cpp reports compile-pass errors only as text on stdout; a child process lets us read it
# without touching this process's stdout (and survives a crash of the compiler).
_EXPLAIN = """
import json, sys
from regopy import Interpreter, LogLevel
job = json.load(sys.stdin)
interp = Interpreter()
interp.log_level = LogLevel.ERROR
if job["data"]:
    interp.add_data(job["data"])
for name, text in job["modules"].items():
    interp.add_module(name, text)
interp.build(None, [job["entrypoint"]])
"""
_WHERE = re.compile(r"^-- (.+):(\d+):(\d+)$")


def explain_build_failure(modules: Mapping[str, str], data: Mapping[str, Any], entrypoint: str,
                          timeout_s: float = 20.0) -> list[RegoProblem]:
    """Why a bundle did not build, as ``(file, line, message)``; empty when it cannot tell."""
    job = json.dumps({"modules": dict(modules), "data": dict(data), "entrypoint": entrypoint})
    try:
        done = subprocess.run([sys.executable, "-c", _EXPLAIN], input=job, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = done.stdout.splitlines()
    problems: list[RegoProblem] = []
    for i, line in enumerate(lines):
        m = _WHERE.match(line.strip())
        if m is None or i == 0 or m.group(1) not in modules:
            continue
        problems.append(RegoProblem(m.group(1), int(m.group(2)), lines[i - 1].strip()))
    return problems
