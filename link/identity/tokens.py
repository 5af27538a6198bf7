"""Verifying a JWT access token: structure, algorithm, signature, then claims.

Nothing from the token is trusted before its signature checks out, except
what is needed to find the key (``alg``, ``kid``, ``iss``); the algorithm must
be on the allow-list *and* fit the key, so ``none`` and HMAC tokens "signed"
with a public key are refused before any cryptography runs.
"""

from __future__ import annotations

import binascii
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jwt.algorithms import Algorithm, get_default_algorithms

from link.identity.errors import Reason, invalid_token
from link.identity.jwks import KeyRing, SigningKey

__all__ = ["TokenRules", "TokenVerifier", "VerifiedToken", "parse_compact"]

# Keycloak marks its non-access tokens in the payload's "typ"; they are not for APIs.
_NOT_ACCESS_TOKENS = frozenset({"id", "refresh", "logout", "offline"})
_B64URL = bytes.maketrans(b"-_", b"+/")


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What a token must satisfy, from ``IdentitySettings``."""

    algorithms: frozenset[str]
    audiences: tuple[str, ...] = ()  # accepted for every issuer; empty (and none per issuer) = any
    check_azp: bool = True
    leeway_s: float = 30.0
    max_token_bytes: int = 8192
    required_claims: tuple[str, ...] = ("iss", "exp")


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature and claims checked out."""

    claims: dict[str, Any]
    issuer: str
    expires_at: float | None  # epoch seconds, leeway included


@dataclass(frozen=True, slots=True)
class CompactToken:
    """The three parts of a JWS compact serialisation, decoded but not verified."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _b64decode(segment: str) -> bytes:
    raw = segment.encode("ascii")
    if len(raw) % 4 == 1 or b"=" in raw:
        raise ValueError("bad base64url length or padding")
    # bytes.translate is a C table lookup; str.translate would cost microseconds per segment
    return binascii.a2b_base64(raw.translate(_B64URL) + b"=" * (-len(raw) % 4), strict_mode=True)


class _DuplicateMember(ValueError):
    """A JSON object names one member twice."""


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 7515 §4 / RFC 7519 §4: a JOSE header or claims set with a duplicate name must be
    # refused; last-wins would let a token mean one thing here and another to a verifier behind.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateMember("duplicate member name")
    return obj


def _json_object(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw, object_pairs_hook=_unique_members)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def parse_compact(token: str) -> CompactToken:
    """Split and decode ``header.payload.signature``; ``AuthError`` when it is not a JWS."""
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii():
        raise invalid_token(Reason.MALFORMED_TOKEN, "malformed token")
    try:
        header = _json_object(_b64decode(parts[0]))
        payload = _json_object(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
    except _DuplicateMember:
        raise invalid_token(Reason.DUPLICATE_MEMBER, "duplicate member in token") from None
    except (ValueError, binascii.Error, RecursionError):
        raise invalid_token(Reason.MALFORMED_TOKEN, "malformed token") from None
    return CompactToken(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def _signature_ok(algorithm: Algorithm, jws: CompactToken, key: SigningKey) -> bool:
    try:
        return bool(algorithm.verify(jws.signing_input, key.key, jws.signature))
    except Exception:  # e.g. a signature of the wrong length for the curve
        return False


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid_token(Reason.INVALID_CLAIM, f"invalid {name} claim")
    return float(value)


class TokenVerifier:
    """Checks bearer tokens against the trusted issuers' keys and the rules."""

    def __init__(self, keyring: KeyRing, rules: TokenRules, clock: Callable[[], float] = time.time) -> None:
        self._keyring = keyring
        self._rules = rules
        self._clock = clock
        defaults = get_default_algorithms()
        self._algorithms: dict[str, Algorithm] = {a: defaults[a] for a in rules.algorithms if a in defaults}

    async def verify(self, token: str) -> VerifiedToken:
        """The verified token, or :class:`~link.identity.errors.AuthError` saying why not."""
        rules = self._rules
        if len(token) > rules.max_token_bytes:
            raise invalid_token(Reason.TOKEN_TOO_LARGE, "token too large")
        jws = parse_compact(token)
        header, claims = jws.header, jws.payload
        alg = header.get("alg")
        algorithm = self._algorithms.get(alg) if isinstance(alg, str) else None
        if algorithm is None or not isinstance(alg, str):
            raise invalid_token(Reason.UNSUPPORTED_ALGORITHM, "signing algorithm not accepted")
        if "crit" in header:  # we implement no JWS extensions, so none may be critical
            raise invalid_token(Reason.MALFORMED_TOKEN, "unsupported critical header")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise invalid_token(Reason.MALFORMED_TOKEN, "malformed token")
        iss = claims.get("iss")
        if not isinstance(iss, str) or not iss:
            raise invalid_token(Reason.MISSING_CLAIM, "missing iss claim")
        issuer = self._keyring.for_issuer(iss)
        if issuer is None:
            raise invalid_token(Reason.UNKNOWN_ISSUER, "untrusted issuer")
        key = await issuer.key_for(kid, alg)
        if not key.accepts(alg):
            raise invalid_token(Reason.KEY_MISMATCH, "signing algorithm does not match the key")
        good = _signature_ok(algorithm, jws, key)
        if not good and kid is None:
            # Without a kid a rotation looks like a bad signature: refresh by the same rules as a miss.
            await issuer.refresh_if_allowed()
            fresh = issuer.lookup(None, alg)
            good = fresh is not None and fresh is not key and _signature_ok(algorithm, jws, fresh)
        if not good:
            raise invalid_token(Reason.BAD_SIGNATURE, "invalid signature")
        expires_at = self._check_claims(claims, issuer.audiences)
        return VerifiedToken(claims=claims, issuer=iss, expires_at=expires_at)

    def _check_claims(self, claims: dict[str, Any], issuer_audiences: tuple[str, ...]) -> float | None:
        rules = self._rules
        for name in rules.required_claims:
            if claims.get(name) in (None, ""):
                raise invalid_token(Reason.MISSING_CLAIM, f"missing {name} claim")
        now = self._clock()
        leeway = rules.leeway_s
        exp = _number(claims, "exp")
        if exp is not None and now >= exp + leeway:
            raise invalid_token(Reason.EXPIRED, "token expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and nbf > now + leeway:
            raise invalid_token(Reason.NOT_YET_VALID, "token not yet valid")
        iat = _number(claims, "iat")
        if iat is not None and iat > now + leeway:
            raise invalid_token(Reason.ISSUED_IN_FUTURE, "token issued in the future")
        typ = claims.get("typ")
        if isinstance(typ, str) and typ.lower() in _NOT_ACCESS_TOKENS:
            raise invalid_token(Reason.UNSUPPORTED_TOKEN_TYPE, "not an access token")
        sub = claims.get("sub")
        if sub is not None and not isinstance(sub, str):
            raise invalid_token(Reason.INVALID_CLAIM, "invalid sub claim")
        self._check_audience(claims, rules.audiences + issuer_audiences)
        return None if exp is None else exp + leeway

    def _check_audience(self, claims: dict[str, Any], accepted: tuple[str, ...]) -> None:
        aud = claims.get("aud")
        if aud is None:
            audiences: list[Any] = []
        elif isinstance(aud, str):
            audiences = [aud]
        elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            audiences = aud
        else:
            raise invalid_token(Reason.INVALID_CLAIM, "invalid aud claim")
        if not accepted:
            return
        if any(a in accepted for a in audiences):
            return
        if self._rules.check_azp and claims.get("azp") in accepted:
            return
        raise invalid_token(Reason.WRONG_AUDIENCE, "token not intended for this audience")
