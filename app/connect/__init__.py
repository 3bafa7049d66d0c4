"""Connecting MCP clients: the per-client data table, snippets, logos and `engram connect`."""

from app.connect.clients import CLIENTS, Client, Snippet, UnknownClient, get, snippet
from app.connect.logos import logo_svg

__all__ = ["CLIENTS", "Client", "Snippet", "UnknownClient", "get", "logo_svg", "snippet"]
