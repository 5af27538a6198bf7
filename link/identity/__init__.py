"""Who is calling: OIDC/JWT bearer tokens (Keycloak-style), API keys, mTLS client certificates.

:class:`Authenticator` is the entry point (used by the identity phase and the
MCP server); the modules each hold one idea: ``jwks`` (issuer keys and their
refresh rules), ``tokens`` (JWT verification), ``claims`` (claims to
principal), ``cache`` (verified tokens), ``apikeys``, ``mtls``, ``errors``.
"""

from link.identity.apikeys import ApiKeyStore, hash_api_key
from link.identity.authenticator import Authenticator, issuer_sources
from link.identity.cache import VerifiedTokenCache
from link.identity.claims import TenantMapping, principal_from_claims
from link.identity.errors import AuthError, Reason
from link.identity.jwks import IssuerKeys, IssuerSource, KeyRing, KeyTiming, SigningKey, parse_jwks
from link.identity.mtls import parse_xfcc, peer_from_xfcc, principal_from_peer
from link.identity.tokens import TokenRules, TokenVerifier, VerifiedToken

__all__ = [
    "ApiKeyStore",
    "AuthError",
    "Authenticator",
    "IssuerKeys",
    "IssuerSource",
    "KeyRing",
    "KeyTiming",
    "Reason",
    "SigningKey",
    "TenantMapping",
    "TokenRules",
    "TokenVerifier",
    "VerifiedToken",
    "VerifiedTokenCache",
    "hash_api_key",
    "issuer_sources",
    "parse_jwks",
    "parse_xfcc",
    "peer_from_xfcc",
    "principal_from_claims",
    "principal_from_peer",
]
