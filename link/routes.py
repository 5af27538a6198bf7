"""The route table: which configured API a request belongs to."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from link.model import CredentialKind, Request, RouteMatch
from link.settings import RouteSettings

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def compile_template(template: str) -> re.Pattern[str]:
    """``/invoices/{id}`` -> a regex with one named group per parameter."""
    out, pos = [], 0
    for m in _PARAM.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>[^/]+)")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(out) + "/?$")


@dataclass(frozen=True, slots=True)
class _Route:
    spec: RouteSettings
    methods: frozenset[str]
    pattern: re.Pattern[str] | None
    credentials: tuple[CredentialKind, ...]


class RouteTable:
    """Routes in configuration order; the first match wins."""

    def __init__(self, routes: Iterable[RouteSettings] = ()) -> None:
        self._routes = [
            _Route(
                spec=r,
                methods=frozenset(m.upper() for m in r.methods),
                pattern=compile_template(r.template) if r.template else None,
                credentials=tuple(CredentialKind(c) for c in r.credentials),
            )
            for r in routes
        ]

    def __len__(self) -> int:
        return len(self._routes)

    def resolve(self, request: Request) -> RouteMatch | None:
        for route in self._routes:
            if route.methods and request.method.upper() not in route.methods:
                continue
            params: dict[str, str] = {}
            if route.pattern is not None:
                m = route.pattern.match(request.path)
                if m is None:
                    continue
                params = m.groupdict()
            elif not _prefix_matches(route.spec.prefix or "/", request.path):
                continue
            s = route.spec
            return RouteMatch(
                name=s.name,
                tenant=s.tenant,
                api=s.api or s.name,
                template=s.template or s.prefix,
                anonymous=s.anonymous,
                optional_identity=s.optional_identity,
                credentials=route.credentials,
                required_scopes=tuple(s.required_scopes),
                rate_limit=s.rate_limit,
                contract=s.contract,
                snapshots=s.snapshots,
                path_params=params,
            )
        return None


def _prefix_matches(prefix: str, path: str) -> bool:
    if prefix == "/" or path == prefix:
        return True
    return path.startswith(prefix if prefix.endswith("/") else prefix + "/")
