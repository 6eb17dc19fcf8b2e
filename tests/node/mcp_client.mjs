// The TypeScript SDK's MCP client against the gateway's /mcp (tests/test_toolservers_protocol.py):
// node mcp_client.mjs URL TOKEN TOOL ARGS_JSON -> one JSON line: version, tools, the call's result.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, tool, args] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "seawall-test", version: "1.0.0" });
await client.connect(transport);
const tools = await client.listTools();
let result = null;
let error = null;
try {
  result = await client.callTool({ name: tool, arguments: JSON.parse(args) });
} catch (e) {
  error = { code: e.code ?? null, message: String(e.message) };
}
const sessionId = transport.sessionId;
await transport.terminateSession();
await client.close();
console.log(JSON.stringify({
  version: transport.protocolVersion ?? null,
  sessionId,
  tools: tools.tools.map((t) => t.name),
  result,
  error,
}));
