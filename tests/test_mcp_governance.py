"""The gateway's governance of MCP calls, without a network: a Runtime's
`GatewayGovernance` (policies, `mcp.limits`, chaos faults) and the config rules that
let tenants and chaos name MCP tools (gateway/mcp/)."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.config import ChaosConfig
from chaos.engine import ChaosEngine
from gateway.config import ConfigError, parse_config
from gateway.mcp.callers import caller_of, visible_servers
from gateway.mcp.faults import call_faults, session_faults
from gateway.mcp.governance import policy_tools
from gateway.runtime import build_runtime
from gateway.state import State
from tests.isolation import keys
from tests.policy_support import ordinary
from toolservers.protocol import POLICY_DENIED, RATE_LIMITED, ToolCall

SERVER = {"name": "calc", "transport": "http", "url": "http://127.0.0.1:9/mcp"}


def document(**extra: Any) -> dict[str, Any]:
    return {
        "models": [{"name": "m", "deployments": [{"id": "d", "provider": "mock", "model": "x"}]}],
        "tenants": [{"id": "team", "allow": {"tools": ["calc__add", "calc__rm"]}}],
        "keys": keys({"k": ("team", ["tools"]), "j": ("team", ["tools"])}),
        "mcp": {"servers": [SERVER], **extra.pop("mcp", {})},
        **extra,
    }


def runtime(**extra: Any) -> Any:
    config = parse_config(document(**extra), "<test>")
    state = State(mcp=config.mcp)
    return build_runtime(config, state, state.versions.add({"c": "x"}, "<test>"))


def call(rt: Any, key: str, tool: str = "calc__add", **annotations: Any) -> ToolCall:
    identity = rt.tenants.identity(key)
    caller = caller_of(identity, {"identity": identity, "plan": None})
    return ToolCall(caller, "calc", tool, tool.split("__")[1], {"b": 1, "a": 2}, annotations)


def test_policy_attributes_of_an_mcp_call() -> None:
    rt = runtime()
    one = call(rt, "k", "calc__rm", destructiveHint=True, readOnlyHint=False)
    assert policy_tools(one) == ("calc__rm", "arg:a", "arg:b", "hint:destructiveHint")


async def test_policies_deny_and_select_limit_classes() -> None:
    rt = runtime(
        policies={
            "rules": [
                {
                    "id": "no-rm",
                    "tenant": "team",
                    "when": 'endpoint == "mcp" && model == "calc" && "hint:destructiveHint" '
                    "in tools",
                    "effect": "deny",
                    "message": "no deleting",
                },
                {
                    "id": "adds-are-scarce",
                    "tenant": "team",
                    "when": '"calc__add" in tools && "arg:a" in tools',
                    "effect": "limit_class",
                    "limit_class": "one",
                },
            ]
        },
        limits={"classes": {"one": {"requests_per_minute": 1}}},
    )
    governance = rt.mcp_governance
    denied = await governance.admit(call(rt, "k", "calc__rm", destructiveHint=True))
    assert denied.error is not None and denied.error[0] == POLICY_DENIED
    assert "'no-rm'" in denied.error[1]
    first = await governance.admit(call(rt, "k"))
    assert first.error is None
    second = await governance.admit(call(rt, "j"))  # a class is one bucket
    assert second.error is not None and second.error[0] == RATE_LIMITED


async def test_rules_read_the_server_tool_argument_names_and_annotations() -> None:
    """The MCP attributes of their own: each rule below matches exactly the calls it
    names; a model request has them empty, so none of them matches a chat."""
    rules = [
        ("destructive", '"destructiveHint" in annotations'),
        ("the-rm-tool", 'server == "calc" && tool == "calc__rm"'),
        ("an-a-argument", '"a" in argument_names && size(argument_names) == 2'),
        ("read-only", '"readOnlyHint" in annotations'),
        ("any-tool-call", 'tool != ""'),
    ]
    rt = runtime(
        policies={
            "rules": [
                {"id": rule_id, "tenant": "team", "when": when, "effect": "flag", "flag": rule_id}
                for rule_id, when in rules
            ]
        }
    )
    governance = rt.mcp_governance
    rm = await governance.admit(call(rt, "k", "calc__rm", destructiveHint=True, readOnlyHint=False))
    assert sorted(rm.flags) == ["an-a-argument", "any-tool-call", "destructive", "the-rm-tool"]
    add = await governance.admit(call(rt, "k", "calc__add", readOnlyHint=True))
    assert sorted(add.flags) == ["an-a-argument", "any-tool-call", "read-only"]
    chat = rt.policies.decide(ordinary(("root", "team"), {}), "r1")
    assert not chat.matched


async def test_tool_call_limits_per_tool_and_concurrency_per_key() -> None:
    rt = runtime(mcp={"limits": {"tool": {"calls_per_minute": 2}, "key": {"max_concurrent": 1}}})
    governance = rt.mcp_governance
    held = await governance.admit(call(rt, "k"))
    assert held.error is None and held.done is not None
    busy = await governance.admit(call(rt, "k", "calc__rm"))
    assert busy.error is not None and "max_concurrent" in busy.error[1]
    await held.done(True)
    again = await governance.admit(call(rt, "k"))
    assert again.error is None and again.done is not None
    await again.done(True)
    # The tool's minute is the tenant's: key j shares it, and it is spent.
    spent = await governance.admit(call(rt, "j"))
    assert spent.error is not None and "requests_per_minute" in spent.error[1]
    other_tool = await governance.admit(call(rt, "j", "calc__rm"))
    assert other_tool.error is None


def test_mcp_names_in_allow_lists_and_chaos_targets() -> None:
    rt = runtime(
        chaos={"enabled": True},
        tenants=[
            {
                "id": "team",
                "allow": {"tools": ["calc__add"], "chaos_targets": ["mcp:calc", "tool:calc__x"]},
            }
        ],
    )
    assert rt.tenants.identity("k").permissions.tools == frozenset({"calc__add"})
    with pytest.raises(ConfigError) as refused:
        parse_config(document(tenants=[{"id": "team", "allow": {"tools": ["nope__add"]}}]), "t")
    assert "unknown tool 'nope__add'" in str(refused.value)


def test_visibility_of_servers() -> None:
    assert visible_servers(None) is None
    assert visible_servers(frozenset({"calc__add", "registered_tool"})) == frozenset({"calc"})
    assert visible_servers(frozenset()) == frozenset()


def test_which_faults_hit_an_mcp_call() -> None:
    engine = ChaosEngine(ChaosConfig(enabled=True), {"d": "m"}, namespaces=["calc", "web"])
    plan = engine.plan(
        "latency;ms=5;target=mcp:calc, forge_tool;mode=wrong;target=tool:web__get, "
        "mcp_drop_session, connect_refused;target=d",
        None,
    )
    assert plan is not None
    assert [f.name for f in call_faults(plan, "calc", "calc__add")] == ["latency"]
    assert [f.name for f in call_faults(plan, "web", "web__get")] == ["forge_tool"]
    assert [f.name for f in session_faults(plan)] == ["mcp_drop_session"]
    # MCP faults never reach model calls.
    assert [f.name for f in plan.firing("d")] == ["connect_refused"]
    assert plan.injected == [
        "latency@tool:calc__add",
        "forge_tool@tool:web__get",
        "mcp_drop_session@mcp",
        "connect_refused@d",
    ]
