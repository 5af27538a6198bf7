"""The conformance suite's fixture server, built with the MCP SDK: the upstream of the ``federated`` target.

Every tool, resource and prompt the suite's server scenarios ask for, by name, with the behaviour
each scenario's description requires (``@modelcontextprotocol/conformance`` 0.1.16,
``src/scenarios/server/*.ts``): text, image, audio, embedded-resource and mixed content, log and
progress notifications during a call, sampling and elicitation asked of the caller, a tool error,
JSON Schema 2020-12 keywords in an input schema, static and templated resources, subscriptions,
prompts with arguments, an embedded resource and an image, and completions.

The gateway federates it with an empty prefix, so the suite sees these names unchanged; everything
MCP-native the suite checks (notifications, server-to-client requests, content kinds) is produced
here and reaches the suite only if the gateway relays it.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params

__all__ = ["PROMPT_NAMES", "RECONNECTION_S", "RESOURCE_URIS", "TOOL_NAMES", "SuiteFixture", "build_fixture"]

Ctx = ServerRequestContext[Any, Any]

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="
WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQIAAAAAAA=="
# test_reconnection runs this long: longer than the gateway's mcp.sse_poll_after_s, so the gateway
# closes the caller's SSE stream mid-call and the suite resumes it with Last-Event-ID (SEP-1699).
RECONNECTION_S = 0.6
STEP_S = 0.05  # the "~50 ms" between the log and progress notifications the scenarios ask for

_EMPTY: dict[str, Any] = {"type": "object", "properties": {}}
_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}


def _text_arg(name: str, description: str) -> dict[str, Any]:
    return {"type": "object", "properties": {name: {"type": "string", "description": description}},
            "required": [name]}


_TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "test_simple_text": ("Returns a simple text response.", _EMPTY),
    "test_image_content": ("Returns a PNG image.", _EMPTY),
    "test_audio_content": ("Returns a WAV sound.", _EMPTY),
    "test_embedded_resource": ("Returns an embedded text resource.", _EMPTY),
    "test_multiple_content_types": ("Returns text, an image and an embedded resource.", _EMPTY),
    "test_tool_with_logging": ("Sends three log messages while it runs.", _EMPTY),
    "test_tool_with_progress": ("Reports progress 0, 50 and 100 of 100 while it runs.", _EMPTY),
    "test_error_handling": ("Always fails (a tool error).", _EMPTY),
    "test_reconnection": ("A slow call, so the gateway closes its SSE stream and the client resumes.", _EMPTY),
    "test_sampling": ("Asks the client's model (sampling/createMessage).", _text_arg("prompt", "The prompt")),
    "test_elicitation": ("Asks the user (elicitation/create).", _text_arg("message", "The message to show")),
    "test_elicitation_sep1034_defaults": ("Elicitation with a default for every primitive type.", _EMPTY),
    "test_elicitation_sep1330_enums": ("Elicitation with the five enum schema variants.", _EMPTY),
    "json_schema_2020_12_tool": ("Tool with JSON Schema 2020-12 features", _SCHEMA_2020_12),
}
TOOL_NAMES = tuple(_TOOLS)

_SEP1034: dict[str, Any] = {"type": "object", "required": [], "properties": {
    "name": {"type": "string", "description": "User name", "default": "John Doe"},
    "age": {"type": "integer", "description": "User age", "default": 30},
    "score": {"type": "number", "description": "User score", "default": 95.5},
    "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"],
               "default": "active"},
    "verified": {"type": "boolean", "description": "Verification status", "default": True},
}}
_TITLED = [{"const": f"value{i}", "title": t} for i, t in enumerate(("First", "Second", "Third"), 1)]
_SEP1330: dict[str, Any] = {"type": "object", "required": [], "properties": {
    "untitledSingle": {"type": "string", "description": "Select one option", "enum": ["option1", "option2", "option3"]},
    "titledSingle": {"type": "string", "description": "Select one option with titles",
                     "oneOf": [{**o, "title": f"{o['title']} Option"} for o in _TITLED]},
    "legacyEnum": {"type": "string", "description": "Select one option (legacy)", "enum": ["opt1", "opt2", "opt3"],
                   "enumNames": ["Option One", "Option Two", "Option Three"]},
    "untitledMulti": {"type": "array", "description": "Select multiple options", "minItems": 1, "maxItems": 3,
                      "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
    "titledMulti": {"type": "array", "description": "Select multiple options with titles", "minItems": 1,
                    "maxItems": 3, "items": {"anyOf": [{**o, "title": f"{o['title']} Choice"} for o in _TITLED]}},
}}
_PERSON: dict[str, Any] = {"type": "object", "required": ["username", "email"], "properties": {
    "username": {"type": "string", "description": "User's response"},
    "email": {"type": "string", "description": "User's email address"},
}}


def _text(text: str) -> types.TextContent:
    return types.TextContent(type="text", text=text)


def _result(*content: Any, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=list(content), is_error=is_error)


async def _elicit(ctx: Ctx, message: str, schema: dict[str, Any]) -> types.CallToolResult:
    answer = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    content = json.dumps(answer.content or {})
    return _result(_text(f"Elicitation completed: action={answer.action}, content={content}"))


async def _call(ctx: Ctx, name: str, args: dict[str, Any]) -> types.CallToolResult:
    session, rid = ctx.session, ctx.request_id
    if name == "test_simple_text":
        return _result(_text("This is a simple text response for testing."))
    if name == "test_image_content":
        return _result(types.ImageContent(type="image", data=PNG, mime_type="image/png"))
    if name == "test_audio_content":
        return _result(types.AudioContent(type="audio", data=WAV, mime_type="audio/wav"))
    if name == "test_embedded_resource":
        return _result(types.EmbeddedResource(type="resource", resource=types.TextResourceContents(
            uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content.")))
    if name == "test_multiple_content_types":
        return _result(_text("Multiple content types test:"),
                       types.ImageContent(type="image", data=PNG, mime_type="image/png"),
                       types.EmbeddedResource(type="resource", resource=types.TextResourceContents(
                           uri="test://mixed-content-resource", mime_type="application/json",
                           text=json.dumps({"test": "data", "value": 123}))))
    if name == "test_tool_with_logging":
        for i, line in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
            if i:
                await asyncio.sleep(STEP_S)
            await session.send_log_message("info", line, related_request_id=rid)
        return _result(_text("Tool with logging executed successfully"))
    if name == "test_tool_with_progress":
        token = progress_token_from_params(ctx.params)
        for i, done in enumerate((0, 50, 100)):
            if i:
                await asyncio.sleep(STEP_S)
            if token is not None:
                await session.send_progress_notification(token, done, 100, f"Completed step {done} of 100",
                                                         related_request_id=str(rid))
        return _result(_text(str(token)))
    if name == "test_error_handling":
        return _result(_text("This tool intentionally returns an error for testing"), is_error=True)
    if name == "test_reconnection":
        await asyncio.sleep(RECONNECTION_S)
        return _result(_text("Reconnection test completed successfully."))
    if name == "test_sampling":
        with warnings.catch_warnings():  # sampling is deprecated from 2026-07-28; the suite's eras still have it
            warnings.simplefilter("ignore")
            answer = await session.create_message(
                [types.SamplingMessage(role="user", content=_text(str(args.get("prompt", ""))))],
                max_tokens=100, related_request_id=rid)
        said = answer.content.text if isinstance(answer.content, types.TextContent) else str(answer.content)
        return _result(_text(f"LLM response: {said}"))
    if name == "test_elicitation":
        return await _elicit(ctx, str(args.get("message", "")), _PERSON)
    if name == "test_elicitation_sep1034_defaults":
        return await _elicit(ctx, "Please review and update the form fields with defaults", _SEP1034)
    if name == "test_elicitation_sep1330_enums":
        return await _elicit(ctx, "Please select options from the enum fields", _SEP1330)
    if name == "json_schema_2020_12_tool":
        return _result(_text(f"JSON Schema 2020-12 tool called with: {json.dumps(args)}"))
    raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name}")


_RESOURCES = [
    types.Resource(uri="test://static-text", name="static-text", title="Static Text Resource",
                   description="A static text resource for testing", mime_type="text/plain"),
    types.Resource(uri="test://static-binary", name="static-binary", title="Static Binary Resource",
                   description="A static binary resource (image) for testing", mime_type="image/png"),
    types.Resource(uri="test://watched-resource", name="watched-resource", title="Watched Resource",
                   description="A resource clients subscribe to", mime_type="text/plain"),
]
_TEMPLATE = types.ResourceTemplate(uri_template="test://template/{id}/data", name="template",
                                   title="Resource Template", mime_type="application/json",
                                   description="A resource template with parameter substitution")
_TEMPLATE_PREFIX, _TEMPLATE_SUFFIX = "test://template/", "/data"
RESOURCE_URIS = (*(str(r.uri) for r in _RESOURCES), _TEMPLATE.uri_template)


def _read(uri: str) -> types.TextResourceContents | types.BlobResourceContents:
    if uri == "test://static-text":
        return types.TextResourceContents(uri=uri, mime_type="text/plain",
                                          text="This is the content of the static text resource.")
    if uri == "test://static-binary":
        return types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG)
    if uri == "test://watched-resource":
        return types.TextResourceContents(uri=uri, mime_type="text/plain", text="Watched resource content")
    if uri.startswith(_TEMPLATE_PREFIX) and uri.endswith(_TEMPLATE_SUFFIX):
        ident = uri[len(_TEMPLATE_PREFIX):-len(_TEMPLATE_SUFFIX)]
        if ident and "/" not in ident:
            return types.TextResourceContents(uri=uri, mime_type="application/json", text=json.dumps(
                {"id": ident, "templateTest": True, "data": f"Data for ID: {ident}"}))
    raise MCPError(-32002, "Resource not found", data={"uri": uri})


def _arg(name: str, description: str) -> types.PromptArgument:
    return types.PromptArgument(name=name, description=description, required=True)


_PROMPTS = [
    types.Prompt(name="test_simple_prompt", title="Simple Test Prompt", description="A simple prompt without arguments"),
    types.Prompt(name="test_prompt_with_arguments", title="Prompt With Arguments",
                 description="A prompt with required arguments",
                 arguments=[_arg("arg1", "First test argument"), _arg("arg2", "Second test argument")]),
    types.Prompt(name="test_prompt_with_embedded_resource", title="Prompt With Embedded Resource",
                 description="A prompt that includes an embedded resource",
                 arguments=[_arg("resourceUri", "URI of the resource to embed")]),
    types.Prompt(name="test_prompt_with_image", title="Prompt With Image",
                 description="A prompt that includes image content"),
]
PROMPT_NAMES = tuple(p.name for p in _PROMPTS)
_ARG1_COMPLETIONS = ("test", "testing", "tested", "other")


def _user(content: Any) -> types.PromptMessage:
    return types.PromptMessage(role="user", content=content)


def _prompt(name: str, args: dict[str, str]) -> types.GetPromptResult:
    if name == "test_simple_prompt":
        return types.GetPromptResult(messages=[_user(_text("This is a simple prompt for testing."))])
    if name == "test_prompt_with_arguments":
        text = f"Prompt with arguments: arg1='{args.get('arg1', '')}', arg2='{args.get('arg2', '')}'"
        return types.GetPromptResult(messages=[_user(_text(text))])
    if name == "test_prompt_with_embedded_resource":
        embedded = types.EmbeddedResource(type="resource", resource=types.TextResourceContents(
            uri=args.get("resourceUri", "test://embedded"), mime_type="text/plain",
            text="Embedded resource content for testing."))
        return types.GetPromptResult(messages=[_user(embedded),
                                               _user(_text("Please process the embedded resource above."))])
    if name == "test_prompt_with_image":
        return types.GetPromptResult(messages=[_user(types.ImageContent(type="image", data=PNG, mime_type="image/png")),
                                               _user(_text("Please analyze the image above."))])
    raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {name}")


class SuiteFixture:
    """The fixture server and its resource subscribers (so a test can announce an update)."""

    def __init__(self) -> None:
        self.subscribers: dict[str, dict[str, Any]] = {}  # uri -> client (MCP session id) -> its session
        self.server = _server(self)

    async def touch(self, uri: str) -> int:
        """Send ``notifications/resources/updated`` for ``uri`` to its subscribers; how many got it."""
        sessions = list(self.subscribers.get(uri, {}).values())
        for session in sessions:
            await session.send_resource_updated(uri)
        return len(sessions)


def _client_of(ctx: Ctx) -> str:
    """The client's MCP session id (the per-request session object differs between its requests)."""
    headers = getattr(ctx.request, "headers", None)
    return str(headers.get("mcp-session-id", "")) if headers is not None else ""


def build_fixture() -> SuiteFixture:
    """The fixture (a low-level SDK server: the suite checks exact schemas and content)."""
    return SuiteFixture()


def _server(fixture: SuiteFixture) -> Server[Any]:
    async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name=n, description=d, input_schema=s)
                                            for n, (d, s) in _TOOLS.items()])

    async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        return await _call(ctx, params.name, dict(params.arguments or {}))

    async def list_resources(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=_RESOURCES)

    async def list_templates(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[_TEMPLATE])

    async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        return types.ReadResourceResult(contents=[_read(str(params.uri))])

    async def subscribe(ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        _read(str(params.uri))  # an unknown URI is "Resource not found"
        fixture.subscribers.setdefault(str(params.uri), {})[_client_of(ctx)] = ctx.session
        return types.EmptyResult()

    async def unsubscribe(ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        fixture.subscribers.get(str(params.uri), {}).pop(_client_of(ctx), None)
        return types.EmptyResult()

    async def list_prompts(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=_PROMPTS)

    async def get_prompt(ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        return _prompt(params.name, dict(params.arguments or {}))

    async def complete(ctx: Ctx, params: types.CompleteRequestParams) -> types.CompleteResult:
        ref, argument = params.ref, params.argument
        values: list[str] = []
        if isinstance(ref, types.PromptReference) and ref.name == "test_prompt_with_arguments" \
                and argument.name == "arg1":
            values = [v for v in _ARG1_COMPLETIONS if v.startswith(argument.value)]
        elif isinstance(ref, types.ResourceTemplateReference) and argument.name == "id":
            values = [v for v in ("123", "124", "200") if v.startswith(argument.value)]
        return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))

    async def set_level(ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
        return types.EmptyResult()

    with warnings.catch_warnings():  # logging is deprecated from 2026-07-28; the suite's eras still have it
        warnings.simplefilter("ignore")
        return Server(
            "stoa-conformance-fixture", version="1.0.0",
            on_list_tools=list_tools, on_call_tool=call_tool,
            on_list_resources=list_resources, on_list_resource_templates=list_templates,
            on_read_resource=read_resource, on_subscribe_resource=subscribe, on_unsubscribe_resource=unsubscribe,
            on_list_prompts=list_prompts, on_get_prompt=get_prompt, on_completion=complete,
            on_set_logging_level=set_level,
        )

