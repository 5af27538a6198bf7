"""mTLS callers: a principal from the client certificate Envoy verified.

Envoy reports the peer certificate of a TLS listener (``source.principal``: the
URI SAN / SPIFFE ID, else DNS SAN, else subject); the ext_authz adapter puts it
in :attr:`Request.peer <link.model.Request.peer>`. Behind another TLS-terminating
proxy the ``x-forwarded-client-cert`` header carries the same facts, but anyone
can send that header, so it is read only when the operator says it is trusted.
"""

from __future__ import annotations

from urllib.parse import unquote

from cryptography import x509

from link.identity.claims import TenantMapping
from link.model import CredentialKind, PeerIdentity, Principal

__all__ = ["parse_xfcc", "peer_from_pem", "peer_from_xfcc", "principal_from_peer", "spiffe_namespace"]

_MAX_XFCC_CHARS = 32 * 1024


def parse_xfcc(value: str) -> list[dict[str, list[str]]]:
    """Elements of an ``x-forwarded-client-cert`` value, each ``{key: [values]}``.

    Elements are separated by ``,``, pairs by ``;``, key from value by ``=``;
    a value may be double-quoted, with ``\\"`` inside. Raises ValueError if malformed.
    """
    if len(value) > _MAX_XFCC_CHARS:
        raise ValueError("x-forwarded-client-cert too long")
    elements: list[dict[str, list[str]]] = []
    element: dict[str, list[str]] = {}
    key: str | None = None
    buf: list[str] = []
    i, n = 0, len(value)

    def end_pair() -> None:
        nonlocal key
        if key is None:
            if "".join(buf).strip():
                raise ValueError("pair without '='")
        else:
            element.setdefault(key.strip().lower(), []).append("".join(buf).strip())
        key = None
        buf.clear()

    while i < n:
        c = value[i]
        if c == '"' and key is not None and not "".join(buf).strip():
            end = i + 1
            out: list[str] = []
            while end < n and value[end] != '"':
                if value[end] == "\\" and end + 1 < n:
                    end += 1
                out.append(value[end])
                end += 1
            if end >= n:
                raise ValueError("unterminated quote")
            buf[:] = out
            i = end + 1
            continue
        if c == "=" and key is None:
            key = "".join(buf)
            buf.clear()
        elif c == ";":
            end_pair()
        elif c == ",":
            end_pair()
            if element:
                elements.append(element)
            element = {}
        else:
            buf.append(c)
        i += 1
    end_pair()
    if element:
        elements.append(element)
    return elements


def peer_from_xfcc(value: str) -> PeerIdentity | None:
    """The client the *nearest* proxy saw: the last element (earlier ones came from further away)."""
    elements = parse_xfcc(value)
    if not elements:
        return None
    last = elements[-1]
    uris = tuple(last.get("uri", ()))
    dns = tuple(last.get("dns", ()))
    subject = (last.get("subject") or [""])[0]
    principal = (uris or dns or (subject,))[0]
    if not principal:
        return None
    return PeerIdentity(principal=principal, subject=subject, uri_sans=uris, dns_sans=dns)


def spiffe_namespace(spiffe_id: str) -> str | None:
    """``ns`` of a Kubernetes-style SPIFFE ID (``spiffe://td/ns/<ns>/sa/<sa>``)."""
    if not spiffe_id.startswith("spiffe://"):
        return None
    parts = spiffe_id[len("spiffe://"):].split("/")
    for i in range(1, len(parts) - 1):
        if parts[i] == "ns" and parts[i + 1]:
            return parts[i + 1]
    return None


def peer_from_pem(pem: str) -> PeerIdentity | None:
    """URI SANs, DNS SANs and subject of a (possibly URL-encoded) PEM certificate, as Envoy sends it."""
    text = unquote(pem) if "%" in pem else pem
    try:
        cert = x509.load_pem_x509_certificate(text.encode("ascii", "replace"))
    except ValueError:
        return None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        dns = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        uris, dns = (), ()
    subject = cert.subject.rfc4514_string()
    principal = (uris or dns or (subject,))[0]
    return PeerIdentity(principal=principal, certificate_pem=pem, subject=subject,
                        uri_sans=uris, dns_sans=dns)


def principal_from_peer(peer: PeerIdentity, tenants: TenantMapping) -> Principal | None:
    """The caller a verified client certificate names, or None when it names nobody.

    Identity: Envoy's principal, else the first URI SAN, else the subject, else
    what the certificate itself says. Tenant: the consumer -> tenant map, else
    the SPIFFE ID's Kubernetes namespace (namespaces are tenants in STOA), else
    the default tenant.
    """
    if not (peer.principal or peer.uri_sans or peer.subject) and peer.certificate_pem:
        peer = peer_from_pem(peer.certificate_pem) or peer
    identity = peer.principal or (peer.uri_sans[0] if peer.uri_sans else "") or peer.subject
    if not identity:
        return None
    tenant = (tenants.consumer_tenants.get(identity) or spiffe_namespace(identity)
              or tenants.default_tenant or "")
    return Principal(kind=CredentialKind.MTLS, subject=identity, consumer=identity, tenant=tenant,
                     claims={"subject": peer.subject} if peer.subject else {})
