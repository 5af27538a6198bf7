"""Why a credential was refused, in a shape the phase turns into an RFC 6750 answer."""

from __future__ import annotations

__all__ = ["AuthError", "Reason", "invalid_request", "invalid_token", "unavailable"]


class Reason:
    """Machine codes of refusals: the ``reason`` label of the refusal counter.

    They go to metrics and the decision's metadata, never to the client, which
    only sees the RFC 6750 ``error`` and a short ``error_description``.
    """

    MISSING_CREDENTIALS = "missing_credentials"
    MALFORMED_AUTHORIZATION = "malformed_authorization"
    TOKEN_TOO_LARGE = "token_too_large"
    MALFORMED_TOKEN = "malformed_token"
    DUPLICATE_MEMBER = "duplicate_member"  # a JSON name twice in the token's header or claims
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    UNSUPPORTED_TOKEN_TYPE = "unsupported_token_type"
    UNKNOWN_ISSUER = "unknown_issuer"
    UNKNOWN_KEY = "unknown_key"
    KEY_MISMATCH = "key_mismatch"
    BAD_SIGNATURE = "bad_signature"
    MISSING_CLAIM = "missing_claim"
    INVALID_CLAIM = "invalid_claim"
    EXPIRED = "token_expired"
    NOT_YET_VALID = "token_not_yet_valid"
    ISSUED_IN_FUTURE = "token_issued_in_future"
    WRONG_AUDIENCE = "wrong_audience"
    NO_TENANT = "no_tenant"
    KEYS_UNAVAILABLE = "keys_unavailable"
    INVALID_API_KEY = "invalid_api_key"
    INVALID_CLIENT_CERT = "invalid_client_cert"
    INSUFFICIENT_SCOPE = "insufficient_scope"


class AuthError(Exception):
    """A refused credential.

    ``reason`` is one of :class:`Reason`; ``error`` the RFC 6750 code
    (``invalid_request``, ``invalid_token``, ``insufficient_scope``) or ``""``
    for a server-side failure; ``description`` is short and safe to show.
    """

    __slots__ = ("description", "error", "reason", "status")

    def __init__(self, reason: str, description: str, *, error: str = "invalid_token",
                 status: int = 401) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason
        self.description = description
        self.error = error
        self.status = status


def invalid_token(reason: str, description: str) -> AuthError:
    """A token that is present but cannot be accepted (401 ``invalid_token``)."""
    return AuthError(reason, description, error="invalid_token")


def invalid_request(reason: str, description: str) -> AuthError:
    """Credentials missing or malformed (401 ``invalid_request``)."""
    return AuthError(reason, description, error="invalid_request")


def unavailable(reason: str, description: str) -> AuthError:
    """Link cannot verify right now (503): an outage must not look like a bad token."""
    return AuthError(reason, description, error="", status=503)
