"""A stand-in for a person's browser during a sign-in: ``python -m tests.harness.browser URL``.

Set as ``BROWSER`` (Python's :mod:`webbrowser` runs it with the URL), it opens the authorization URL,
follows the authorization server's redirect to the loopback listener, and exits. ``TEST_BROWSER_MODE``
makes it misbehave: ``forge-state`` changes the ``state`` of the redirect (a forged callback), ``stray``
first visits other paths of the listener (a favicon, the root), ``replay`` delivers the redirect twice.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx


def main(url: str) -> int:
    mode = os.environ.get("TEST_BROWSER_MODE", "")
    with httpx.Client(timeout=10, follow_redirects=False) as http:
        answer = http.get(url)
        location = answer.headers.get("location")
        if answer.status_code != 302 or not location:
            return 1
        parts = urlsplit(location)
        if mode == "forge-state":
            query = [(k, "forged" if k == "state" else v) for k, v in parse_qsl(parts.query)]
            location = urlunsplit(parts._replace(query=urlencode(query)))
        if mode == "stray":
            for path in ("/favicon.ico", "/"):
                http.get(urlunsplit(parts._replace(path=path, query="")))
        http.get(location)
        if mode == "replay":
            http.get(location)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
