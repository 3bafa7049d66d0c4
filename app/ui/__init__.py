"""The web UI: server-rendered pages for the signed-in browser user (dashboard, memories, clients,
connect, tokens). Pages call the same services as the REST API and MCP tools."""
