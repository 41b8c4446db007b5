"""An extra MCP server an agent's agent.toml can declare, for the turn-loop tests."""

from mcp.server import MCPServer

server = MCPServer("extra")


@server.tool(structured_output=False)
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper() + "!"


@server.tool(structured_output=False)
def whisper(text: str) -> str:
    """Lower-case the text (not allowed for the agent)."""
    return text.lower()


if __name__ == "__main__":
    server.run()
