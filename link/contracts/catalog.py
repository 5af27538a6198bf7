"""The loaded contracts, and finding the endpoint a request belongs to."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from link.contracts.model import Contract, is_contract_document, parse_contract
from link.contracts.source import DocumentError, field_path, iter_files, load_documents
from link.contracts.validation import CompiledEndpoint
from link.model import RequestContext

__all__ = ["ContractCatalog", "ContractError", "EndpointMatch", "load_catalog"]

_log = logging.getLogger("stoa.link.contracts")

SUFFIXES = (".yaml", ".yml", ".json")


class ContractError(Exception):
    """Contracts could not be loaded; ``problems`` are ``FILE:LINE: field: reason`` lines."""

    def __init__(self, problems: list[str]) -> None:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__("; ".join(problems[:5]) + more)
        self.problems = problems


@dataclass(frozen=True, slots=True)
class EndpointMatch:
    """The result of matching a request: an endpoint, or why none fits a contract."""

    contract: Contract
    endpoint: CompiledEndpoint | None
    params: Mapping[str, str]
    allowed_methods: tuple[str, ...] = ()  # set when the path matches but the method does not


class ContractCatalog:
    """Contracts by name, with their endpoints ordered most specific first."""

    def __init__(self, contracts: Iterable[Contract]) -> None:
        self.contracts: dict[str, Contract] = {}
        self._endpoints: dict[str, list[CompiledEndpoint]] = {}
        for c in contracts:
            self.contracts[c.name] = c
            compiled = [CompiledEndpoint(c, ep) for ep in c.endpoints]
            # Literal segments beat parameters: /invoices/search before /invoices/{id}.
            compiled.sort(key=lambda e: (-e.literal_segments, -len(e.endpoint.path)))
            self._endpoints[c.name] = compiled
        self._all = sorted((e for eps in self._endpoints.values() for e in eps),
                           key=lambda e: (-e.literal_segments, -len(e.endpoint.path)))
        # An endpoint's llm.tool_name is its MCP tool: the contract governs calls of that tool too.
        self._tools: dict[tuple[str, str], Contract] = {}
        for c in self.contracts.values():
            for ep in c.endpoints:
                if ep.llm is not None and ep.llm.tool_name:
                    self._tools[(c.tenant_id, ep.llm.tool_name)] = c

    def __len__(self) -> int:
        return len(self.contracts)

    def match(self, method: str, path: str, contract: str | None = None) -> EndpointMatch | None:
        """The endpoint for ``method path`` — within ``contract`` when named, else among all contracts.

        With a named contract a miss still returns an :class:`EndpointMatch` (endpoint None)
        so the caller can refuse it; without one a miss is None (no contract governs the request).
        """
        method = method.upper()
        candidates = self._endpoints.get(contract, []) if contract else self._all
        path_hit: list[str] = []
        hit_contract: Contract | None = None
        for ep in candidates:
            params = ep.match_path(path)
            if params is None:
                continue
            if method in ep.methods:
                return EndpointMatch(ep.contract, ep, params)
            path_hit.extend(ep.endpoint.methods)
            hit_contract = hit_contract or ep.contract
        if contract and contract in self.contracts:
            return EndpointMatch(self.contracts[contract], None, {}, tuple(sorted(set(path_hit))))
        if hit_contract is not None:
            return EndpointMatch(hit_contract, None, {}, tuple(sorted(set(path_hit))))
        return None

    def for_tool(self, tenant: str | None, tool: str) -> Contract | None:
        """The contract whose endpoint is exposed as MCP tool ``tool`` of ``tenant``."""
        return self._tools.get((tenant or "", tool))

    def describe(self, ctx: RequestContext) -> Mapping[str, Any] | None:
        """The contract endpoint of a request as the policy input shows it (``input.stoa.contract``)."""
        route = ctx.route
        found = self.match(ctx.request.method, ctx.request.path, route.contract if route else None)
        if found is None or found.endpoint is None:
            return None
        return found.endpoint.description


def load_catalog(paths: Iterable[str], strict: bool = True) -> ContractCatalog:
    """Load every contract under ``paths``.

    ``strict``: any problem raises :class:`ContractError` (start-up refuses bad contracts);
    otherwise bad documents are logged and skipped.
    """
    problems: list[str] = []
    contracts: list[Contract] = []
    names: dict[str, str] = {}
    for file in iter_files(list(paths), SUFFIXES):
        try:
            docs = load_documents(file)
        except DocumentError as exc:
            problems.append(str(exc))
            continue
        for doc in docs:
            if not is_contract_document(doc.data):
                continue
            contract, found = parse_contract(doc.data, file)
            for p in found:
                problems.append(f"{file}:{doc.line_of(p.path)}: {field_path(p.path)}: {p.reason}")
            if contract is None:
                continue
            if contract.name in names:
                problems.append(f"{file}:{doc.line_of((*contract.base, 'name'))}: name: "
                                f"contract {contract.name!r} is also defined in {names[contract.name]}")
                continue
            names[contract.name] = file
            contracts.append(contract)
    if problems:
        if strict:
            raise ContractError(problems)
        for line in problems:
            _log.error("contract skipped: %s", line)
    return ContractCatalog(contracts)
