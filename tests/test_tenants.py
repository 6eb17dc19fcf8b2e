"""The tenant tree (tenants/): config models, every build problem, inheritance,
authentication by key digest, and admin scope."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from common.config import DocumentError
from limits.config import LimitsConfig
from tenants.build import MAX_DEPTH, TenantsError, build_tenants, tenant_problems
from tenants.config import ROOT, KeyConfig, TenantConfig
from tenants.keys import INCORRECT_KEY, MALFORMED_HEADER, MISSING_KEY, Unauthenticated
from tenants.known import Known
from tenants.roles import ROLES
from tenants.tree import LOCAL_KEY_ID, Tenants

KNOWN = Known.of(
    {"gpt-4o": ["openai-4o", "azure-4o"], "mini": ["openai-mini"], "claude": ["anthropic"]},
    tools=["search", "weather"],
)


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tenant(id: str, parent: str | None = None, **fields: Any) -> TenantConfig:
    return TenantConfig.model_validate({"id": id, "parent": parent, **fields})


def key(id: str, token: str | None = None, **fields: Any) -> KeyConfig:
    return KeyConfig.model_validate({"id": id, "key_sha256": sha(token or f"tok-{id}"), **fields})


def build(tenants: list[TenantConfig], keys: list[KeyConfig] | None = None) -> Tenants:
    return build_tenants(tenants, keys or [], KNOWN)


def problems(tenants: list[TenantConfig], keys: list[KeyConfig] | None = None) -> list[str]:
    with pytest.raises(TenantsError) as caught:
        build(tenants, keys)
    return caught.value.problems


def validation_messages(model: type[TenantConfig | KeyConfig], data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in caught.value.errors()]


# -- config models ------------------------------------------------------------------------


def test_a_tenant_cannot_be_called_root() -> None:
    assert validation_messages(TenantConfig, {"id": "root"}) == [
        "id: Value error, 'root' is the implicit root tenant; choose another id"
    ]


def test_tenant_fields_are_checked() -> None:
    messages = validation_messages(
        TenantConfig,
        {
            "id": "bad id",
            "allow": {"models": ["a"], "model": ["typo"]},
            "caps": {"max_tokens": 0, "max_prompt_tokens": -5},
            "metadata": {"team": 3},
            "limits": {"requests_per_minute": 0},
        },
    )
    assert [m.split(":")[0] for m in messages] == [
        "id",
        "allow.model",
        "caps.max_tokens",
        "caps.max_prompt_tokens",
        "metadata.team",
        "limits.requests_per_minute",
    ]


def test_defaults_keep_their_types() -> None:
    config = tenant("t", defaults={"stream": True, "n": 2, "temperature": 0.5, "model": "mini"})
    assert config.defaults == {"stream": True, "n": 2, "temperature": 0.5, "model": "mini"}
    assert [type(v) for v in config.defaults.values()] == [bool, int, float, str]


def test_an_existing_key_config_keeps_its_meaning() -> None:
    old = KeyConfig.model_validate({"id": "ci", "key_sha256": sha("t").upper(), "roles": ["user"]})
    assert (old.tenant, old.roles, old.limits, old.digest) == (None, ("user",), None, sha("t"))
    identity = build([], [old]).authenticate("Bearer t")
    assert identity.tenant_id == ROOT and identity.root_scoped
    explicit = build([tenant("a")], [key("k", "t", tenant="root")]).authenticate("Bearer t")
    assert explicit.root_scoped and explicit.scope == {ROOT, "a"}


def test_key_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEAWALL_TENANT_TEST_TOKEN", "tok-env")
    config = KeyConfig.model_validate({"id": "k", "key": "env:SEAWALL_TENANT_TEST_TOKEN"})
    assert config.digest == sha("tok-env")
    assert build([], [config]).authenticate("Bearer tok-env").key_id == "k"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": "k"}, "set exactly one of key_sha256 or key"),
        ({"id": "k", "key_sha256": sha("a"), "key": "a"}, "set exactly one of key_sha256 or key"),
        ({"id": "k", "key_sha256": "abc"}, "must be 64 hexadecimal characters"),
        (
            {"id": "k", "key": "a", "roles": ["admn"]},
            "unknown role 'admn' (roles are: admin, auditor, chaos, metrics, tools, user)",
        ),
        ({"id": "k", "key": "a", "limits": {"max_concurrent": 0}}, "greater than 0"),
    ],
)
def test_key_config_errors(data: dict[str, Any], message: str) -> None:
    assert any(message in m for m in validation_messages(KeyConfig, data))


# -- build problems -------------------------------------------------------------------------


def test_duplicate_tenant_ids() -> None:
    assert problems([tenant("a"), tenant("b"), tenant("a")]) == [
        "tenants[2].id: duplicate tenant id 'a' (first at tenants[0])"
    ]


def test_unknown_parent_suggests_a_close_name() -> None:
    assert problems([tenant("team-a"), tenant("p", "tem-a"), tenant("q", "zzz")]) == [
        "tenants[1].parent: unknown tenant 'tem-a' (did you mean 'team-a'?)",
        "tenants[2].parent: unknown tenant 'zzz'",
    ]
    # never itself: `acme-ads` is the tenant with the typo, not what it meant
    assert problems([tenant("acme-ads", "acme-adds")]) == [
        "tenants[0].parent: unknown tenant 'acme-adds'"
    ]


def test_a_cycle_is_named_once_and_what_hangs_below_it_is_not_reported() -> None:
    found = problems(
        [
            tenant("ok"),
            tenant("b", "c"),
            tenant("a", "b"),
            tenant("c", "a"),
            tenant("below", "a"),
            tenant("self", "self"),
        ],
        [key("k", tenant="below")],
    )
    assert found == [
        "tenants[1].parent: parents form a cycle: b -> c -> a -> b",
        "tenants[5].parent: parents form a cycle: self -> self",
    ]


def test_parent_root_is_the_implicit_root() -> None:
    tree = build([tenant("a", "root"), tenant("b")])
    assert tree["a"].chain == (*tree["b"].chain[:1], "a") == (ROOT, "a")
    assert tree.root.children == ("a", "b")


def test_depth_is_bounded() -> None:
    chain = [tenant("t1")] + [tenant(f"t{i}", f"t{i - 1}") for i in range(2, MAX_DEPTH + 3)]
    assert len(build(chain[:MAX_DEPTH])[f"t{MAX_DEPTH}"].chain) == MAX_DEPTH + 1
    assert problems(chain) == [
        f"tenants[{MAX_DEPTH}].parent: 't{MAX_DEPTH + 1}' would be {MAX_DEPTH + 1} levels below "
        f"the root; the tree is at most {MAX_DEPTH} levels deep"
    ]


def test_allow_lists_must_name_what_exists() -> None:
    found = problems(
        [
            tenant(
                "a",
                allow={
                    "models": ["gtp-4o", "mini", "mini"],
                    "tools": ["serch"],
                    "deployments": ["openai-4o", "gone"],
                    "chaos_targets": ["group:mini", "tool:weather", "azure-4o", "group:nope"],
                },
            )
        ]
    )
    assert found == [
        "tenants[0].allow.models[0]: unknown model group 'gtp-4o' (did you mean 'gpt-4o'?)",
        "tenants[0].allow.models[2]: model group 'mini' is listed twice",
        "tenants[0].allow.tools[0]: unknown tool 'serch' (did you mean 'search'?)",
        "tenants[0].allow.chaos_targets[3]: unknown chaos target 'group:nope'",
        "tenants[0].allow.deployments[1]: unknown deployment 'gone'",
    ]


def test_an_allow_list_with_nothing_configured_says_so() -> None:
    found = tenant_problems([tenant("a", allow={"tools": ["x"]})], [], Known.of({"g": ["d"]}))
    assert found == ["tenants[0].allow.tools[0]: unknown tool 'x' (none configured)"]


def test_a_child_cannot_name_what_its_ancestors_forbid() -> None:
    # `team` sets no list of its own: `project` is checked against what `org` allows.
    found = problems(
        [
            tenant("org", allow={"models": ["gpt-4o", "mini"], "tools": ["search"]}),
            tenant("team", "org"),
            tenant("project", "team", allow={"models": ["mini", "claude"], "tools": []}),
        ]
    )
    assert found == [
        "tenants[2].allow.models[1]: model group 'claude' is not allowed by parent 'team' "
        "(it allows: gpt-4o, mini)"
    ]


def test_a_child_naming_an_unknown_name_is_reported_once() -> None:
    found = problems(
        [tenant("org", allow={"models": ["mini"]}), tenant("t", "org", allow={"models": ["gtp"]})]
    )
    assert found == ["tenants[1].allow.models[0]: unknown model group 'gtp'"]


def test_a_child_cap_cannot_exceed_an_ancestors() -> None:
    found = problems(
        [
            tenant("org", caps={"max_tokens": 4000, "max_prompt_tokens": 100_000}),
            tenant("team", "org", caps={"max_prompt_tokens": 50_000}),
            tenant("project", "team", caps={"max_tokens": 4001, "max_prompt_tokens": 60_000}),
            tenant("other", "team", caps={"max_tokens": 4000, "max_prompt_tokens": 50_000}),
        ]
    )
    assert found == [
        "tenants[2].caps.max_tokens: 4001 is above the cap of parent 'team' (4000)",
        "tenants[2].caps.max_prompt_tokens: 60000 is above the cap of parent 'team' (50000)",
    ]


def test_key_problems() -> None:
    found = problems(
        [tenant("team-a")],
        [
            key("a", tenant="tem-a"),
            key("b", "same"),
            key("b", "other"),
            key("c", "same", tenant="team-a"),
        ],
    )
    assert found == [
        "keys[0].tenant: unknown tenant 'tem-a' (did you mean 'team-a'?)",
        "keys[2].id: duplicate key id 'b' (first at keys[1])",
        "keys[3]: same token as keys[1] ('b'); a token must identify one key",
    ]


def test_same_token_by_hash_and_by_value_is_one_token() -> None:
    found = problems([], [key("a", "t"), KeyConfig.model_validate({"id": "b", "key": "t"})])
    assert found == ["keys[1]: same token as keys[0] ('a'); a token must identify one key"]


def test_every_problem_is_reported_in_one_pass() -> None:
    with pytest.raises(TenantsError) as caught:
        build(
            [
                tenant("a", allow={"models": ["mini"]}, caps={"max_tokens": 10}),
                tenant("a"),
                tenant("b", "a", allow={"models": ["claude"]}, caps={"max_tokens": 11}),
                tenant("c", "nope"),
                tenant("d", allow={"tools": ["nope"]}),
            ],
            [key("k", tenant="zz")],
        )
    error = caught.value
    assert isinstance(error, DocumentError)
    assert len(error.problems) == 6
    assert str(error).startswith("invalid tenants <config>: 6 problem(s)\n  - tenants[1].id")
    assert tenant_problems([tenant("c", "nope")], [], KNOWN) == [
        "tenants[0].parent: unknown tenant 'nope'"
    ]
    assert tenant_problems([tenant("c")], [], KNOWN) == []


# -- inheritance ----------------------------------------------------------------------------


def worked_example() -> Tenants:
    """The docs' example: the org allows 3 models, the team 2 of them, the project 1."""
    return build(
        [
            tenant(
                "acme",
                allow={"models": ["gpt-4o", "mini", "claude"]},
                caps={"max_tokens": 8000, "max_prompt_tokens": 100_000},
                defaults={"model": "mini", "cost_center": "cc-100"},
                metadata={"owner": "platform@acme.example"},
                limits={"requests_per_minute": 600},
            ),
            tenant(
                "acme-search",
                "acme",
                allow={"models": ["gpt-4o", "mini"], "tools": ["search"]},
                caps={"max_tokens": 4000},
                defaults={"model": "gpt-4o"},
                limits={"tokens_per_minute": 200_000},
            ),
            tenant(
                "acme-search-crawler",
                "acme-search",
                allow={"models": ["mini"]},
                caps={"max_prompt_tokens": 20_000},
                defaults={"cost_center": "cc-130"},
            ),
            tenant("acme-ads", "acme"),
        ],
        [
            key("crawler", tenant="acme-search-crawler", limits={"max_concurrent": 4}),
            key("search-admin", tenant="acme-search", roles=["admin"]),
            key("ops", roles=["admin", "user"]),
        ],
    )


def test_worked_example_three_levels() -> None:
    tree = worked_example()
    acme, search, crawler = tree["acme"], tree["acme-search"], tree["acme-search-crawler"]
    assert crawler.chain == ("root", "acme", "acme-search", "acme-search-crawler")
    assert acme.permissions.models == {"gpt-4o", "mini", "claude"}
    assert search.permissions.models == {"gpt-4o", "mini"}
    assert crawler.permissions.models == {"mini"}
    # tools: unrestricted at acme, narrowed at search, inherited by the crawler
    assert (acme.permissions.tools, crawler.permissions.tools) == (None, {"search"})
    assert tree["acme-ads"].permissions.models == acme.permissions.models
    # caps: the minimum down the chain, each cap independently
    assert (search.permissions.max_tokens, search.permissions.max_prompt_tokens) == (4000, 100_000)
    assert (crawler.permissions.max_tokens, crawler.permissions.max_prompt_tokens) == (4000, 20_000)
    # defaults: inherited, a child's key wins; metadata is the tenant's own
    assert dict(search.defaults) == {"model": "gpt-4o", "cost_center": "cc-100"}
    assert dict(crawler.defaults) == {"model": "gpt-4o", "cost_center": "cc-130"}
    assert dict(acme.metadata) == {"owner": "platform@acme.example"}
    assert dict(search.metadata) == {}
    # limit levels: every ancestor's that sets limits, root-most first
    assert crawler.limit_levels == (
        ("tenant:acme", LimitsConfig(requests_per_minute=600)),
        ("tenant:acme-search", LimitsConfig(tokens_per_minute=200_000)),
    )
    assert acme.subtree == {"acme", "acme-search", "acme-search-crawler", "acme-ads"}
    assert search.children == ("acme-search-crawler",)
    assert [t.id for t in tree] == [
        "root",
        "acme",
        "acme-search",
        "acme-ads",
        "acme-search-crawler",
    ]


def test_the_key_carries_its_tenants_permissions_and_limit_levels() -> None:
    tree = worked_example()
    crawler = tree.authenticate("Bearer tok-crawler")
    assert crawler.tenant_id == "acme-search-crawler"
    assert crawler.permissions is tree["acme-search-crawler"].permissions
    assert [name for name, _ in crawler.limit_levels] == [
        "tenant:acme",
        "tenant:acme-search",
        "key:crawler",
    ]
    assert crawler.limit_levels[-1][1].max_concurrent == 4
    assert crawler.roles == {"user"}
    assert crawler.may_use_model("mini") and not crawler.may_use_model("gpt-4o")
    assert crawler.allowed_models(["claude", "mini", "gpt-4o", "mini-2"]) == ["mini"]
    assert crawler.may_use_tool("search") and not crawler.may_use_tool("weather")
    root = tree.authenticate("Bearer tok-ops")
    assert root.limit_levels == () and root.allowed_models(["b", "a"]) == ["b", "a"]


def test_limits_that_set_nothing_add_no_level() -> None:
    tree = build(
        [tenant("a", limits={"on_store_failure": "fail_open"})],
        [key("k", tenant="a", limits={})],
    )
    assert tree["a"].limit_levels == ()
    assert tree.authenticate("Bearer tok-k").limit_levels == ()


def test_unrestricted_empty_and_narrowed_lists() -> None:
    tree = build(
        [
            tenant("open"),
            tenant("closed", allow={"models": [], "chaos_targets": []}),
            tenant("pinned", allow={"deployments": ["azure-4o"], "chaos_targets": ["group:mini"]}),
        ]
    )
    opened, closed, pinned = (tree[t].permissions for t in ("open", "closed", "pinned"))
    assert opened.may_use_model("anything") and opened.may_use_deployment("anything")
    assert opened.may_target(None) and opened.may_target("openai-4o")
    assert not closed.may_use_model("mini") and not closed.may_target("group:mini")
    assert not closed.may_target(None)
    assert pinned.may_use_deployment("azure-4o") and not pinned.may_use_deployment("openai-4o")
    assert pinned.may_target("group:mini") and not pinned.may_target("openai-mini")
    # an untargeted fault could land anywhere: refused once targets are restricted
    assert not pinned.may_target(None)


def test_effective_permissions_are_immutable() -> None:
    tree = worked_example()
    with pytest.raises(TypeError):
        tree["acme"].defaults["model"] = "claude"  # type: ignore[index]
    with pytest.raises(AttributeError):
        tree["acme"].permissions.models = None  # type: ignore[misc]


# -- authentication -------------------------------------------------------------------------


def test_lookup_by_digest() -> None:
    tree = worked_example()
    identity = tree.identity_for_digest(sha("tok-crawler"))
    assert identity is not None and identity.key_id == "crawler"
    assert tree.identity_for_digest(sha("tok-nobody")) is None
    assert tree.identity("ops") is tree.identity_for_digest(sha("tok-ops"))
    assert [i.key_id for i in tree.identities] == ["crawler", "search-admin", "ops"]
    assert tree.required


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, MISSING_KEY),
        ("", MISSING_KEY),
        ("Basic dXNlcjpwYXNz", MALFORMED_HEADER),
        ("Bearer", MALFORMED_HEADER),
        ("Bearer    ", MALFORMED_HEADER),
        ("tok-ops", MALFORMED_HEADER),
        ("Bearer tok-wrong", INCORRECT_KEY),
        ("Bearer tok-op", INCORRECT_KEY),
    ],
)
def test_the_three_refusals(header: str | None, message: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        worked_example().authenticate(header)
    assert caught.value.message == str(caught.value) == message


def test_the_messages_are_seawalls() -> None:
    assert MISSING_KEY == "Missing API key: send 'Authorization: Bearer <key>'."
    assert MALFORMED_HEADER == "Malformed Authorization header: expected 'Bearer <key>'."
    assert INCORRECT_KEY == "Incorrect API key provided."


@pytest.mark.parametrize("header", ["Bearer tok-ops", "bearer tok-ops", "BEARER  tok-ops  "])
def test_scheme_case_and_surrounding_space_do_not_matter(header: str) -> None:
    assert worked_example().authenticate(header).key_id == "ops"


@pytest.mark.parametrize("header", [None, "", "garbage", "Bearer anything"])
def test_without_keys_the_caller_is_local(header: str | None) -> None:
    tree = build([tenant("a"), tenant("b", "a")])
    identity = tree.authenticate(header)
    assert identity is tree.local
    assert not tree.required
    assert identity.key_id == LOCAL_KEY_ID and identity.roles == ROLES
    assert identity.root_scoped and identity.scope == {"root", "a", "b"}
    assert identity.permissions.models is None and identity.limit_levels == ()


# -- scope ----------------------------------------------------------------------------------


def scoped_tree() -> Tenants:
    return build(
        [
            tenant("org"),
            tenant("team-a", "org"),
            tenant("team-b", "org"),
            tenant("a-project", "team-a"),
        ],
        [
            key("a-admin", tenant="team-a", roles=["admin"]),
            key("org-admin", tenant="org", roles=["admin"]),
            key("root-admin", roles=["admin"]),
        ],
    )


def test_a_team_admin_sees_its_team_and_below_never_a_sibling() -> None:
    tree = scoped_tree()
    admin = tree.authenticate("Bearer tok-a-admin")
    assert admin.has_role("admin") and not admin.has_role("user")
    assert admin.within_scope("team-a") and admin.within_scope("a-project")
    assert not admin.within_scope("team-b")
    assert not admin.within_scope("org") and not admin.within_scope(ROOT)
    assert not admin.root_scoped
    assert admin.visible_tenants == {"team-a", "a-project"}
    assert [t.id for t in tree.visible_to(admin)] == ["team-a", "a-project"]


def test_an_org_admin_sees_its_org_and_a_root_key_sees_everything() -> None:
    tree = scoped_tree()
    org = tree.authenticate("Bearer tok-org-admin")
    assert org.visible_tenants == {"org", "team-a", "team-b", "a-project"}
    assert not org.within_scope(ROOT)
    root = tree.authenticate("Bearer tok-root-admin")
    assert root.root_scoped
    assert root.visible_tenants == {ROOT, "org", "team-a", "team-b", "a-project"}
    assert [t.id for t in tree.visible_to(root)] == [t.id for t in tree]
    assert not root.within_scope("unknown-tenant")


def test_known_chaos_targets_are_spelled_as_chaos_spells_them() -> None:
    from chaos.targets import CONFIG_TARGET, Targets

    groups = {"gpt-4o": ["openai-4o", "azure-4o"], "mini": ["openai-mini"]}
    by_deployment = {d: g for g, ids in groups.items() for d in ids}
    # The config source is a target for the whole gateway's admins, not a tenant's.
    valid = Targets(by_deployment, ["search"]).valid - {CONFIG_TARGET}
    assert Known.of(groups, ["search"]).chaos_targets == valid


# -- the documented example -------------------------------------------------------------------

DOC = Path(__file__).parent.parent / "docs" / "tenants-and-policies.md"


def fenced_blocks(language: str) -> list[str]:
    """The bodies of the docs' code blocks fenced as ```language (`""`: no language)."""
    blocks: list[str] = []
    opened: str | None = None  # the language of the block being read
    body: list[str] = []
    for line in DOC.read_text().splitlines():
        if opened is None and line.startswith("```"):
            opened, body = line[3:], []
        elif opened is not None and line == "```":
            if opened == language:
                blocks.append("\n".join(body))
            opened = None
        else:
            body.append(line)
    return blocks


def documented_example() -> dict[str, Any]:
    """The worked example's YAML in the docs (the block that configures models,
    tenants and keys), with placeholder digests made real."""
    blocks = fenced_blocks("yaml")
    (example,) = [b for b in blocks if "models:" in b and "tenants:" in b and "keys:" in b]
    data: dict[str, Any] = yaml.safe_load(example)
    for key_config in data["keys"]:
        if "key_sha256" in key_config:
            key_config["key_sha256"] = sha(f"tok-{key_config['id']}")
    return data


def build_documented(data: dict[str, Any]) -> Tenants:
    known = Known.of(
        {g["name"]: [d["id"] for d in g["deployments"]] for g in data["models"]},
        [t["name"] for t in data["tools"]],
    )
    return build_tenants(
        [TenantConfig.model_validate(t) for t in data["tenants"]],
        [KeyConfig.model_validate(k) for k in data["keys"]],
        known,
    )


def test_the_documented_example_means_what_the_docs_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAWLER_TOKEN", "tok-crawler-prod")
    tree = build_documented(documented_example())
    crawler = tree.authenticate("Bearer tok-crawler-prod")
    assert crawler.allowed_models(["gpt-4o", "gpt-4o-mini", "claude-sonnet"]) == ["gpt-4o-mini"]
    assert crawler.may_use_tool("web_search")
    assert (crawler.permissions.max_tokens, crawler.permissions.max_prompt_tokens) == (4000, 20000)
    assert dict(crawler.permissions.defaults) == {"model": "gpt-4o", "cost_center": "cc-130"}
    assert [level for level, _ in crawler.limit_levels] == [
        "tenant:acme",
        "tenant:acme-search",
        "key:crawler-prod",
    ]
    admin = tree.authenticate("Bearer tok-search-admin")
    assert admin.visible_tenants == {"acme-search", "acme-search-crawler"}
    assert tree.authenticate("Bearer tok-platform-ops").root_scoped


def test_the_documented_problems_are_the_ones_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAWLER_TOKEN", "tok-crawler-prod")
    data = documented_example()
    crawler = data["tenants"][2]
    crawler["allow"]["models"] = ["gpt-4o-mini", "claude-sonnet"]
    crawler["caps"]["max_tokens"] = 6000
    data["tenants"].append({"id": "acme-ads", "parent": "acme-adds"})
    (documented,) = [b.splitlines() for b in fenced_blocks("") if "is not allowed by" in b]
    with pytest.raises(TenantsError) as caught:
        build_documented(data)
    assert caught.value.problems == documented
