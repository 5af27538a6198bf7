"""UAC contracts: loading, compliance rules, and checking requests against them."""

from link.contracts.catalog import ContractCatalog, ContractError, EndpointMatch, load_catalog
from link.contracts.model import (
    CLASSIFICATION_POLICIES,
    Contract,
    Endpoint,
    LlmHints,
    Problem,
    parse_contract,
)
from link.contracts.validation import CompiledEndpoint, Violation

__all__ = [
    "CLASSIFICATION_POLICIES",
    "CompiledEndpoint",
    "Contract",
    "ContractCatalog",
    "ContractError",
    "Endpoint",
    "EndpointMatch",
    "LlmHints",
    "Problem",
    "Violation",
    "load_catalog",
    "parse_contract",
]
