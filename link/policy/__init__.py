"""OPA/Rego policies: sources, embedded and remote engines, the input document, decisions, decision log."""

from link.policy.engine import UNDEFINED, CompiledPolicy, EvalError, PolicyCompileError, compile_policy
from link.policy.inputdoc import build_input
from link.policy.sources import PolicyModule, PolicySource, SourceError, fingerprint, load_sources
from link.policy.verdict import DecisionFormatError, Verdict, read_verdict

__all__ = [
    "UNDEFINED",
    "CompiledPolicy",
    "DecisionFormatError",
    "EvalError",
    "PolicyCompileError",
    "PolicyModule",
    "PolicySource",
    "SourceError",
    "Verdict",
    "build_input",
    "compile_policy",
    "fingerprint",
    "load_sources",
    "read_verdict",
]
