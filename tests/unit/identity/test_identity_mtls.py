"""mTLS: principal from Envoy's peer attributes, or from x-forwarded-client-cert only when trusted."""

from __future__ import annotations

import datetime
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from link.identity.claims import TenantMapping
from link.identity.mtls import parse_xfcc, peer_from_xfcc, principal_from_peer, spiffe_namespace
from link.model import CredentialKind, PeerIdentity, RouteMatch
from tests.unit.identity.support import PhaseFactory, ctx_for

SPIFFE = "spiffe://cluster.local/ns/tenant-acme/sa/billing"
MTLS_ROUTE = RouteMatch(name="internal", credentials=(CredentialKind.MTLS,))


def test_xfcc_elements_pairs_and_quotes() -> None:
    value = (
        "By=spiffe://cluster.local/ns/edge/sa/envoy;Hash=abc=;URI=spiffe://x/ns/a/sa/b,"
        'By=spiffe://front;Hash=def;Subject="CN=client, O=Acme \\"Ltd\\"";URI='
        + SPIFFE
        + ";DNS=a.test;DNS=b.test"
    )
    elements = parse_xfcc(value)
    assert len(elements) == 2
    assert elements[0]["hash"] == ["abc="]
    assert elements[1]["subject"] == ['CN=client, O=Acme "Ltd"']
    assert elements[1]["dns"] == ["a.test", "b.test"]


@pytest.mark.parametrize("bad", ['Subject="unterminated', "noequals;URI=x", "x" * 40_000])
def test_malformed_xfcc_raises(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_xfcc(bad)


def test_peer_from_xfcc_uses_the_nearest_element() -> None:
    value = f'URI=spiffe://forged/ns/evil/sa/x,By=spiffe://front;URI={SPIFFE};Subject="CN=billing"'
    peer = peer_from_xfcc(value)
    assert peer is not None and peer.principal == SPIFFE and peer.subject == "CN=billing"


def test_spiffe_namespace() -> None:
    assert spiffe_namespace(SPIFFE) == "tenant-acme"
    assert spiffe_namespace("spiffe://td/sa/x") is None
    assert spiffe_namespace("https://x/ns/a") is None


def test_principal_from_peer_tenant_rules() -> None:
    m = TenantMapping(consumer_tenants={"spiffe://td/svc": "mapped"}, default_tenant="dflt")
    p = principal_from_peer(PeerIdentity(principal=SPIFFE), m)
    assert p is not None and (p.kind, p.subject, p.consumer, p.tenant) == (
        CredentialKind.MTLS,
        SPIFFE,
        SPIFFE,
        "tenant-acme",
    )
    p = principal_from_peer(PeerIdentity(principal="spiffe://td/svc"), m)
    assert p is not None and p.tenant == "mapped"
    p = principal_from_peer(PeerIdentity(subject="CN=legacy"), m)
    assert p is not None and (p.subject, p.tenant) == ("CN=legacy", "dflt")
    assert principal_from_peer(PeerIdentity(), m) is None


def _cert_pem(uri: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "billing")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_principal_from_the_certificate_envoy_forwarded() -> None:
    # Envoy sends the peer certificate URL-encoded when the principal attribute is empty.
    p = principal_from_peer(PeerIdentity(certificate_pem=quote(_cert_pem(SPIFFE))), TenantMapping())
    assert p is not None and (p.subject, p.tenant, p.claims["subject"]) == (
        SPIFFE,
        "tenant-acme",
        "CN=billing",
    )
    assert principal_from_peer(PeerIdentity(certificate_pem="garbage"), TenantMapping()) is None


async def test_phase_takes_peer_identity(make_phase: PhaseFactory) -> None:
    ctx = ctx_for(route=MTLS_ROUTE, peer=PeerIdentity(principal=SPIFFE))
    assert await make_phase(issuers=[])(ctx) is None
    assert (ctx.principal.kind, ctx.principal.tenant) == (CredentialKind.MTLS, "tenant-acme")


async def test_phase_reads_xfcc_only_when_trusted(make_phase: PhaseFactory) -> None:
    headers = {"x-forwarded-client-cert": f"By=spiffe://front;URI={SPIFFE}"}
    refused = await make_phase(issuers=[])(ctx_for(headers, route=MTLS_ROUTE))
    assert refused is not None and (refused.http_status, refused.reason) == (401, "missing_credentials")

    ctx = ctx_for(headers, route=MTLS_ROUTE)
    assert await make_phase(issuers=[], mtls_trust_xfcc=True)(ctx) is None
    assert ctx.principal.subject == SPIFFE

    refused = await make_phase(issuers=[], mtls_trust_xfcc=True)(
        ctx_for({"x-forwarded-client-cert": 'Subject="open'}, route=MTLS_ROUTE)
    )
    assert refused is not None and (refused.http_status, refused.reason) == (401, "invalid_client_cert")
    assert 'error="invalid_request"' in refused.response_headers["www-authenticate"]


async def test_peer_certificate_is_ignored_where_mtls_is_not_accepted(make_phase: PhaseFactory) -> None:
    refused = await make_phase(issuers=[])(
        ctx_for(peer=PeerIdentity(principal=SPIFFE))
    )  # default: jwt, api_key
    assert refused is not None and refused.reason == "missing_credentials"
