"""The SDK handlers for resources, prompts and completion (plugged into :func:`mcp_server.server.build_server`).

Each handler only translates between MCP messages and the
:class:`~mcp_server.content.ContentGateway`; subscriptions are remembered per
connection by the :class:`~mcp_server.content_notify.ContentNotifier`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_server.content import RESOURCE_NOT_FOUND, ContentGateway
from mcp_server.content_notify import ContentNotifier

__all__ = ["content_handlers"]

Ctx = ServerRequestContext[Any, Any]


def _finish(ctx: Ctx, result: dict[str, Any]) -> dict[str, Any]:
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        result["resultType"] = "complete"
    return result


def _dump(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    dump = getattr(value, "model_dump", None)
    return dump(by_alias=True, exclude_none=True) if callable(dump) else {}


def content_handlers(
    content_of: Callable[[Ctx], ContentGateway], notifier: ContentNotifier, caller_of: Callable[[Ctx], Any]
) -> dict[str, Any]:
    """The ``on_*`` keyword arguments of the SDK ``Server`` for resources, prompts and completion.

    ``content_of`` gives the gateway a request is served by (a virtual server's is narrowed to its set).
    """

    async def list_resources(ctx: Ctx, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
        return _finish(ctx, {"resources": await content_of(ctx).list_resources(caller_of(ctx))})

    async def list_templates(ctx: Ctx, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
        return _finish(ctx, {"resourceTemplates": await content_of(ctx).list_templates(caller_of(ctx))})

    async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams) -> dict[str, Any]:
        return _finish(ctx, await content_of(ctx).read(caller_of(ctx), str(params.uri)))

    async def subscribe(ctx: Ctx, params: types.SubscribeRequestParams) -> dict[str, Any]:
        uri = str(params.uri)
        key = await content_of(ctx).subscription_key(caller_of(ctx), uri)
        if key is None:
            raise MCPError(RESOURCE_NOT_FOUND, "Resource not found", data={"uri": uri})
        # The SDK exposes the connection only privately on the per-request session.
        if not notifier.subscribe(getattr(ctx.session, "_connection", None), uri, key):
            raise MCPError(types.INVALID_REQUEST, "too many resource subscriptions on this connection")
        return {}

    async def unsubscribe(ctx: Ctx, params: types.UnsubscribeRequestParams) -> dict[str, Any]:
        caller_of(ctx)
        uri = str(params.uri)
        key = notifier.unsubscribe(getattr(ctx.session, "_connection", None), uri)
        if key is not None and not notifier.watched(uri, key):
            await content_of(ctx).release(key, uri)
        return {}

    async def list_prompts(ctx: Ctx, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
        return _finish(ctx, {"prompts": await content_of(ctx).list_prompts(caller_of(ctx))})

    async def get_prompt(ctx: Ctx, params: types.GetPromptRequestParams) -> dict[str, Any]:
        return _finish(ctx, await content_of(ctx).get_prompt(caller_of(ctx), params.name, params.arguments))

    async def complete(ctx: Ctx, params: types.CompleteRequestParams) -> dict[str, Any]:
        argument = _dump(params.argument)
        result = await content_of(ctx).complete(caller_of(ctx), _dump(params.ref), str(argument.get("name", "")),
                                        str(argument.get("value", "")))
        return _finish(ctx, result)

    return {
        "on_list_resources": list_resources,
        "on_list_resource_templates": list_templates,
        "on_read_resource": read_resource,
        "on_subscribe_resource": subscribe,
        "on_unsubscribe_resource": unsubscribe,
        "on_list_prompts": list_prompts,
        "on_get_prompt": get_prompt,
        "on_completion": complete,
    }
