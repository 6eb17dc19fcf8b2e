"""The gateway's side of MCP (issue 20): toolservers/ speaks the protocol; this
package puts the gateway's walls around it, for the Runtime and the stages to
compose. The `/mcp` route itself is gateway/mcp_endpoint.py, beside the other
endpoints: bearer keys with the `tools` role, the caller each request is served as,
the chaos plan of the request, errors in the gateway's envelope without internals.

- `governance`: `toolservers.protocol.Governance` for one Runtime: the tenants'
  CEL policies, tool-call limits and chaos faults, per `tools/call`.
- `callers`: the `Caller` a key is (its tools, its servers), one rule everywhere.
- `faults`: which of a request's chaos faults act on an MCP call or session.
- `listing`: `seawall mcp list`, what each tenant would see.

What a tenant may see (its `allow.tools`) is the `Caller` the endpoint builds; the
model-side check of MCP results lives in the tool-result stage
(gateway/stages/tools.py, `VerifyToolResults`).
"""
