"""Identity benchmark: the phase's cost per request, next to baselines measured in the same run.

    python bench/bench_identity.py [--iterations 100000] [--tokens 3000]

cached    a token seen before (verified-token cache hit), against a phase that does
          nothing (the floor any phase pays) and against PyJWT's ``jwt.decode`` of the
          same token (what verifying on every request would cost). Target: <= 20 us.
first     an RS256 token never seen before (parse, key lookup, signature, claims,
          principal), against ``jwt.decode`` with the key at hand and against the bare
          RSA signature check. Target: <= 300 us.
api key   a known API key (hash + lookup), against the no-op phase.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jwt  # noqa: E402
import yaml  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402

from link.identity.apikeys import hash_api_key  # noqa: E402
from link.model import Decision, Request, RequestContext, RouteMatch  # noqa: E402
from link.pipeline.identity import IdentityPhase  # noqa: E402
from link.settings import load_settings  # noqa: E402
from tests.harness.oidc import Issuer, mock_transport  # noqa: E402

ISSUER = "https://idp.bench.test/realms/stoa"
API_KEY = "sk-bench-0123456789abcdef"


class NoopPhase:
    """The baseline: a phase that decides nothing."""

    name = "noop"

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        return None


def ctx_with(headers: dict[str, str]) -> RequestContext:
    return RequestContext(
        request=Request(method="GET", path="/invoices/1", headers=headers),
        route=RouteMatch(name="invoices", required_scopes=("invoices:read",)),
    )


async def per_call_us(call: Callable[[], Awaitable[object]], n: int, repeats: int = 5) -> float:
    """Median over ``repeats`` runs of the mean time of one call, in microseconds."""
    for _ in range(min(n, 1000)):
        await call()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(n):
            await call()
        runs.append((time.perf_counter_ns() - start) / n / 1000)
    return statistics.median(runs)


def each_once_us(calls: Sequence[Callable[[], object]]) -> float:
    """Mean time of a list of distinct calls, each made once, in microseconds."""
    start = time.perf_counter_ns()
    for call in calls:
        call()
    return (time.perf_counter_ns() - start) / len(calls) / 1000


async def each_once_async_us(calls: Sequence[Callable[[], Awaitable[object]]]) -> float:
    start = time.perf_counter_ns()
    for call in calls:
        await call()
    return (time.perf_counter_ns() - start) / len(calls) / 1000


def verdict(value: float, target: float) -> str:
    return f"target <= {target:g} us: {'ok' if value <= target else 'MISSED'}"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--tokens", type=int, default=3_000)
    args = parser.parse_args()

    issuer = Issuer(ISSUER)
    keys_dir = tempfile.mkdtemp(prefix="bench-identity-")
    keys_file = Path(keys_dir) / "keys.yaml"
    keys_file.write_text(
        yaml.safe_dump(
            {hash_api_key(API_KEY): {"consumer": "bench-app", "tenant": "acme", "scopes": ["invoices:read"]}}
        )
    )
    settings = load_settings(
        env={},
        overrides={
            "identity.issuers": [{"issuer": ISSUER}],
            "identity.audiences": ["account"],
            "identity.api_keys_file": str(keys_file),
            "identity.token_cache_size": args.tokens + 10,
        },
    )
    phase = IdentityPhase(settings, transport=mock_transport(issuer))
    await phase.start()
    noop = NoopPhase()
    public_key = issuer.active.private_key.public_key()

    def decode(token: str) -> object:
        return jwt.decode(token, public_key, algorithms=["RS256"], audience="account", issuer=ISSUER)

    try:
        # -- cached token ---------------------------------------------------------
        token = issuer.token(scope="invoices:read", tenant="acme")
        cached_ctx = ctx_with({"authorization": f"Bearer {token}"})
        assert await phase(cached_ctx) is None, "the benchmark token must be accepted"
        base = await per_call_us(lambda: noop(cached_ctx), args.iterations)
        cached = await per_call_us(lambda: phase(cached_ctx), args.iterations)
        pyjwt = each_once_us([lambda: decode(token)] * max(args.iterations // 20, 1000))
        print(f"baseline  no-op phase                      {base:8.2f} us")
        print(f"baseline  jwt.decode, same token           {pyjwt:8.2f} us")
        print(
            f"cached    identity phase, cached token     {cached:8.2f} us   ratio {cached / pyjwt:5.3f}x "
            f"of jwt.decode, net {cached - base:5.2f} us over no-op   {verdict(cached, 20)}"
        )

        # -- first verification ----------------------------------------------------
        tokens = [
            issuer.token(sub=f"user-{i}", scope="invoices:read", tenant="acme") for i in range(args.tokens)
        ]
        ctxs = [ctx_with({"authorization": f"Bearer {t}"}) for t in tokens]
        signed = []
        for t in tokens:
            head, payload, sig = t.split(".")
            signed.append(
                (f"{head}.{payload}".encode(), base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
            )
        rsa_floor = each_once_us(
            [
                (lambda m=m, s=s: public_key.verify(s, m, padding.PKCS1v15(), hashes.SHA256()))
                for m, s in signed
            ]
        )
        decode_first = each_once_us([(lambda t=t: decode(t)) for t in tokens])
        first = await each_once_async_us([(lambda c=c: phase(c)) for c in ctxs])
        refused = [c for c in ctxs if c.principal.subject == ""]
        assert not refused, f"{len(refused)} benchmark tokens were refused"
        print(f"baseline  RSA-2048 signature check only    {rsa_floor:8.2f} us")
        print(f"baseline  jwt.decode, new token each time  {decode_first:8.2f} us")
        print(
            f"first     identity phase, new RS256 token  {first:8.2f} us   "
            f"ratio {first / decode_first:5.2f}x of jwt.decode   {verdict(first, 300)}"
        )

        # -- API key -------------------------------------------------------------------
        key_ctx = ctx_with({"x-api-key": API_KEY})
        assert await phase(key_ctx) is None, "the benchmark API key must be accepted"
        api = await per_call_us(lambda: phase(key_ctx), args.iterations)
        print(f"api key   identity phase, known key        {api:8.2f} us   ratio {api / base:5.1f}x of no-op")
    finally:
        await phase.stop()


if __name__ == "__main__":
    asyncio.run(main())
