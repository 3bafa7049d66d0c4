"""The MCP endpoint: memory tools over Streamable HTTP, behind our own authorization wrapper."""
