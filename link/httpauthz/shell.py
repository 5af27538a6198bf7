"""The HTTP transport's shell over the pipeline: a parsed check in, the response bytes out."""

from __future__ import annotations

import logging

from link.grpc.shell import PipelineShell, unreadable_check
from link.httpauthz.mapping import request_from_check, response_bytes
from link.httpauthz.protocol import Check

_log = logging.getLogger("stoa.link.httpauthz")


class HttpAuthorizationShell(PipelineShell):
    """What ``AuthorizationService.Check`` is to gRPC, for Envoy's ``http_service``."""

    async def decide(self, check: Check) -> bytes:
        try:
            req = request_from_check(check.method, check.target, check.headers, check.body)
        except Exception:  # malformed attributes: refuse clearly rather than drop the connection
            _log.exception("could not read an HTTP check")
            return response_bytes(unreadable_check(), check.keep_alive)
        return response_bytes(await self.authorize(req), check.keep_alive)
