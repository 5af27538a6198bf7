"""STOA Link's companion MCP server: the tool registry served over MCP and REST.

``build_asgi(link_app)`` gives the ASGI app; ``serve(settings)`` runs it as a
process. Every tool call goes through the same Link pipeline as data-plane
traffic (see :mod:`mcp_server.gateway`).
"""

from mcp_server.app import build_asgi, build_parts
from mcp_server.main import serve

__all__ = ["build_asgi", "build_parts", "serve"]
