"""A stdio MCP server with one tool, `stock(item)`, for test_pydantic_ai.py: each call appends
``stock <item>`` to the file named by MCP_LOG, so the test can count the calls that ran."""

from __future__ import annotations

import os

from mcp.server.fastmcp import FastMCP

server = FastMCP("stock")


@server.tool()
def stock(item: str) -> int:
    """How many of `item` are in stock."""
    with open(os.environ["MCP_LOG"], "a") as f:
        f.write(f"stock {item}\n")
    return 7


if __name__ == "__main__":
    server.run()
