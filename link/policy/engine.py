"""The embedded Rego engine (rego-cpp through ``regopy``), prepared once per policy load.

Why it looks like this (docs/adr/0002-policy-engine.md): a plain ``query`` costs
about 1 ms; evaluating a pre-built bundle entry point costs tens of
microseconds, but converting a full OPA-Envoy input into rego-cpp's tree costs
more than the evaluation itself. So a :class:`CompiledPolicy` builds the bundle
once, is given only the input its modules read (:mod:`link.policy.refs`), and
caches the decisions of deterministic policies by that input.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Final

from regopy import Interpreter, LogLevel, RegoError
from regopy.rego_shared import (
    rego_bundle_query_entrypoint,
    rego_free_output,
    rego_output_ok,
    rego_output_string,
    rego_set_input,
)

from link.policy.refs import FULL, PolicyScan, called_functions, defined_functions, scan_policies
from link.policy.regoerrors import RegoProblem, explain_build_failure, parse_rego_errors
from link.policy.regoinput import InputConversionError, InputTree
from link.policy.sources import PolicySource

__all__ = ["UNDEFINED", "CompiledPolicy", "EvalError", "PolicyCompileError", "compile_policy"]


class _Undefined:
    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()


class EvalError(Exception):
    """The engine could not decide (runtime error, timeout, unreachable remote)."""


class PolicyCompileError(Exception):
    """A policy set cannot be used; ``problems`` say where and why."""

    def __init__(self, problems: Sequence[RegoProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = list(problems)


# Parts of the input that differ on every request: a cache keyed on them would never hit.
_UNIQUE_PATHS = (
    ("attributes", "request", "http", "id"),
    ("attributes", "request", "http", "headers", "x-request-id"),
    ("attributes", "request", "time"),
)

# A small, typical request used to try a freshly built policy once before it goes live.
_TRIAL_INPUT: dict[str, Any] = {
    "attributes": {
        "request": {"http": {"method": "GET", "path": "/", "host": "localhost", "scheme": "http",
                             "headers": {":path": "/", "host": "localhost"}}},
        "source": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 1}}},
        "destination": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 2}}},
    },
    "parsed_path": [""],
    "parsed_query": {},
    "parsed_body": None,
    "truncated_body": False,
    "version": {"ext_authz": "v3", "encoding": "protojson"},
    "stoa": {"principal": {"kind": "anonymous", "subject": "", "consumer": "anonymous", "tenant": "",
                           "scopes": [], "roles": [], "issuer": "", "claims": {}},
             "route": None, "tool": None, "contract": None},
}


def _reads(needs: Mapping[Any, Any] | None, path: Sequence[str]) -> bool:
    node: Mapping[Any, Any] | None = needs
    for key in path:
        if node is None or node is FULL:
            return True
        node = node.get(key)
        if node is None:
            return False
    return True


def _quiet_interpreter() -> Interpreter:
    interp = Interpreter()
    interp.log_level = LogLevel.NONE  # rego-cpp prints parse errors on stdout otherwise; we report them
    return interp


def _rule_exists(modules: Mapping[str, str], query: str) -> bool:
    parts = query.split(".")[1:]
    for source in modules.values():
        m = re.search(r"^\s*package\s+([\w.]+)", source, re.MULTILINE)
        if m is None:
            continue
        package = m.group(1).split(".")
        if parts == package:
            return True
        rule = rf"^(?:default\s+)?{re.escape(parts[-1])}\b"  # "default allow := false" alone answers too
        if parts[:-1] == package and re.search(rule, source, re.MULTILINE):
            return True
    return False


def _unknown_functions(interp: Interpreter, modules: Mapping[str, str]) -> list[RegoProblem]:
    defined = defined_functions(modules.values())
    problems = []
    for name, source in modules.items():
        for func, line in called_functions(source):
            if func not in defined and not interp.is_builtin(func):
                problems.append(RegoProblem(name, line, f"unknown function {func}"))
    return problems


def _output(impl: Any) -> Any:
    """Decode one rego-cpp output; raises EvalError for an error result."""
    try:
        ok = rego_output_ok(impl)
        text = rego_output_string(impl)
    finally:
        rego_free_output(impl)
    if text == "undefined":
        return UNDEFINED
    if not ok or not text.startswith(("{", "[")):
        if text.strip() in ("", "<error>"):
            # rego-cpp gives no detail for these: conflicting values of one rule, or a failing builtin.
            raise EvalError("evaluation error (conflicting rule values or a failing builtin)")
        raise EvalError(text.strip()[:300])
    result = json.loads(text)
    if isinstance(result, list):  # several result sets: a rule with one value gives the same in each
        result = result[0] if result else {}
    expressions = result.get("expressions") or []
    return expressions[0] if expressions else UNDEFINED


class CompiledPolicy:
    """One loaded policy set, ready to evaluate ``query`` on an input document."""

    def __init__(self, source: PolicySource, query: str, cache_size: int = 0) -> None:
        self.query = query
        self.revision = source.revision
        self.entrypoint = "/".join(query.split(".")[1:])
        modules = {m.name: m.source for m in source.modules}
        self.scan: PolicyScan = scan_policies(modules.values())
        builder = _quiet_interpreter()
        try:
            if source.data:
                builder.add_data(source.data)
            for name, text in modules.items():
                builder.add_module(name, text)
        except RegoError as exc:
            raise PolicyCompileError(parse_rego_errors(str(exc), modules)) from None
        problems = _unknown_functions(builder, modules)
        if not _rule_exists(modules, query):
            problems.append(RegoProblem(next(iter(modules)), 0, f"no rule or package answers {query}"))
        if problems:
            raise PolicyCompileError(problems)
        try:
            self._bundle = builder.build(None, [self.entrypoint])
        except RegoError as exc:
            raise PolicyCompileError(parse_rego_errors(str(exc), modules)) from None
        if not self._bundle.ok():
            raise PolicyCompileError(explain_build_failure(modules, source.data, self.entrypoint)
                                     or [RegoProblem(next(iter(modules)), 0, "the policy did not compile")])
        self._runner = _quiet_interpreter()
        self._lock = threading.Lock()  # one rego-cpp interpreter is not safe to share between threads
        cacheable = self.scan.deterministic and not any(_reads(self.scan.needs, p) for p in _UNIQUE_PATHS)
        self.cache_size = cache_size if cacheable else 0
        self._cache: OrderedDict[str, Any] = OrderedDict()
        try:
            self.evaluate(_TRIAL_INPUT, use_cache=False)
        except EvalError as exc:
            raise PolicyCompileError(parse_rego_errors(str(exc), modules, next(iter(modules)))) from None

    @property
    def needs(self) -> Mapping[Any, Any] | None:
        """The parts of the input the policy reads (None: all of it)."""
        return self.scan.needs

    def evaluate(self, doc: Mapping[str, Any], *, use_cache: bool = True) -> Any:
        """The query's value for ``doc``, or :data:`UNDEFINED`; raises :class:`EvalError`."""
        key = ""
        if use_cache and self.cache_size:
            # repr, not sorted JSON: a third of the cost. Equal reprs mean equal JSON documents; the
            # same document built in another key order only misses the cache, never hits wrongly.
            key = repr(doc)
            with self._lock:
                hit = self._cache.get(key, self._cache)
                if hit is not self._cache:
                    self._cache.move_to_end(key)
                    return hit
        try:
            tree = InputTree(doc)
        except InputConversionError as exc:
            raise EvalError(f"input cannot be converted: {exc}") from None
        with tree, self._lock:
            try:
                rego_set_input(self._runner._impl, tree.handle)
                value = _output(rego_bundle_query_entrypoint(self._runner._impl, self._bundle._impl,
                                                             self.entrypoint))
            except RegoError as exc:
                raise EvalError(str(exc).strip()[:300]) from None
            if key:
                self._cache[key] = value
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return value


def compile_policy(source: PolicySource, query: str, cache_size: int = 0) -> CompiledPolicy:
    """Build and try a policy set; raises :class:`PolicyCompileError` with every problem found."""
    return CompiledPolicy(source, query, cache_size)
