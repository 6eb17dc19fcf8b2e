"""MCP for seawall: the gateway as an MCP server to agents and an MCP client to
tool servers (issue 20). A domain package: it never imports `gateway`.

The API the gateway calls (docs/mcp.md, "Wiring"):

- `config.McpConfig`: the `mcp:` section.
- `service.UpstreamPool` (State): the upstream servers by name and identity,
  `await pool.sync(config)` on every Runtime build, `await pool.close()` at shutdown.
- `service.state_parts(config)` (State): the `SessionStore` and the `Ledger`.
- `service.McpService(config, upstreams, receipts, sessions=, ledger=, governance=)`
  (Runtime): `.http.post/get/delete(caller, headers, body)` for the `/mcp` route,
  `.mcp_tool(caller, name)` and `.check_tool_message(...)` for the tool-result stage.
- `caller.Caller`: who calls (key id, visible tools and servers), built per key.
- `protocol.Governance`: the gateway's policies, limits and chaos per tool call
  (`admit(ToolCall) -> Admission`).

Modules, one concept each: `names` (the `server__tool` scheme), `jsonrpc`
(messages, bounded parsing), `sessions`, `upstream/` (Streamable HTTP and stdio
connectors, breaker, deadlines, retries), `catalog` (aggregation, filtering),
`verify` and `ledger` (schemas, receipts, the record of served results), `chaos`
(MCP faults), `protocol` (the MCP server handler), `http` (Streamable HTTP),
`service` (the composition).
"""
