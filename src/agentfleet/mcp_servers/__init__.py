"""MCP servers AgentFleet ships; each runs over stdio or streamable HTTP."""
