"""The REST face of the tool gateway: ``GET /mcp/v1/tools`` and ``POST /mcp/v1/tools/{name}``.

The body of a call is the arguments object; ``{"arguments": {...}}`` (the
shape of MCP's ``tools/call`` params) is accepted too. A call answers 200 with
the MCP result (``content``, ``structuredContent``, ``isError``) and the
upstream's status in ``x-stoa-upstream-status``; a refusal answers with the
pipeline's status (401 with the OAuth challenge, 403, 429 …).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_server.auth import CallerAuthenticator
from mcp_server.bodies import parsed_body
from mcp_server.catalog import InvalidArguments
from mcp_server.gateway import Caller, ToolGateway, UnknownTool
from mcp_server.server import CALLER_SCOPE_KEY

__all__ = ["rest_routes"]


def _arguments(body: Any) -> dict[str, Any]:
    """The call's arguments from the body :class:`~mcp_server.bodies.BoundedBody` parsed."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object of arguments")
    if set(body) <= {"arguments", "_meta"} and isinstance(body.get("arguments"), dict):
        return dict(body["arguments"])
    return body


def rest_routes(gateway: ToolGateway, auth: CallerAuthenticator) -> list[Route]:
    async def list_tools(request: Request) -> Response:
        caller: Caller = request.scope[CALLER_SCOPE_KEY]
        return JSONResponse({"tools": await gateway.list_tools(caller)})

    async def call_tool(request: Request) -> Response:
        caller: Caller = request.scope[CALLER_SCOPE_KEY]
        name = request.path_params["name"]
        try:
            arguments = _arguments(parsed_body(request.scope))
        except ValueError as exc:
            return JSONResponse({"error": "invalid_request", "message": str(exc)}, status_code=400)
        try:
            result = await gateway.call(caller, name, arguments)
        except UnknownTool:
            body = {"error": "unknown_tool", "message": f"Unknown tool: {name}"}
            return JSONResponse(body, status_code=404)
        except InvalidArguments as exc:
            return JSONResponse({"error": "invalid_params", "field": exc.field, "message": str(exc)},
                                status_code=400)
        if result.refusal is not None:
            base = str(request.base_url)
            return auth.refusal_response(result.refusal, base, request.headers.get("x-request-id", ""))
        return JSONResponse(result.as_mcp(), headers={"x-stoa-upstream-status": str(result.status)})

    return [
        Route("/mcp/v1/tools", list_tools, methods=["GET"]),
        Route("/mcp/v1/tools/{name}", call_tool, methods=["POST"]),
    ]
