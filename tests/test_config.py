"""Config validation: every problem reported with its path; secrets never shown."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.config import ConfigError, is_loopback, load_config, parse_config


def problems_of(data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.yaml")
    return info.value.problems


def minimal(**group: object) -> dict[str, object]:
    return {"models": [{"name": "g", "deployments": [{"id": "d", "model": "m"}], **group}]}


def test_embedded_default_is_two_mocks_on_loopback() -> None:
    config = load_config(None)
    assert config.server.host == "127.0.0.1" and config.server.port == 8080
    assert config.keys == ()
    (group,) = config.models
    assert group.name == "demo"
    assert [d.provider for d in group.deployments] == ["mock", "mock"]
    fast, slow = group.deployments
    assert slow.mock.latency_ms > fast.mock.latency_ms
    assert not config.needs_litellm


def test_every_field_problem_is_listed_with_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEAWALL_TEST_MISSING", raising=False)
    problems = problems_of(
        {
            "models": [
                {
                    "name": "g",
                    "strategy": "random",
                    "deployments": [
                        {
                            "id": "a",
                            "model": "m",
                            "weight": 0,
                            "api_key": "env:SEAWALL_TEST_MISSING",
                        },
                        {"id": "b", "model": "m", "timeouts": {"total_ms": -1}, "colour": "red"},
                    ],
                }
            ],
            "keys": [{"id": "k"}],
            "surprise": True,
        }
    )
    assert problems == [
        "models[0].strategy: Input should be 'weighted', 'latency', 'priority' or 'least-busy'",
        "models[0].deployments[0].api_key: environment variable SEAWALL_TEST_MISSING is not set",
        "models[0].deployments[0].weight: Input should be greater than 0",
        "models[0].deployments[1].timeouts.total_ms: Input should be greater than 0",
        "models[0].deployments[1].colour: Extra inputs are not permitted",
        "keys[0]: set exactly one of key_sha256 or key",
        "surprise: Extra inputs are not permitted",
    ]


def test_cross_references_are_checked() -> None:
    problems = problems_of(
        {
            "models": [
                {
                    "name": "a",
                    "fallbacks": ["a", "ghost"],
                    "deployments": [{"id": "d", "model": "m"}],
                },
                {
                    "name": "a",
                    "context_window_fallbacks": ["nope"],
                    "deployments": [{"id": "d", "model": "m"}],
                },
            ]
        }
    )
    assert problems == [
        "models: duplicate model group name 'a'",
        "models: duplicate deployment id 'd'",
        "models[0].fallbacks[0]: a group cannot fall back to itself",
        "models[0].fallbacks[1]: unknown model group 'ghost'",
        "models[1].context_window_fallbacks[0]: unknown model group 'nope'",
    ]


def test_color_faults_must_aim_at_something_the_gateway_has() -> None:
    # A typo in a color's fault target would silently inject nothing on dyed traffic.
    problems = problems_of(
        {
            "models": [{"name": "g", "deployments": [{"id": "d", "model": "m"}]}],
            "chaos": {
                "enabled": True,
                "colors": {
                    "blue": {"faults": "latency;ms=10;target=dd"},
                    "green": {"faults": "http_error;target=group:g"},
                },
            },
        }
    )
    assert len(problems) == 1
    assert problems[0].startswith("chaos.colors.blue.faults: latency: unknown target 'dd'")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "(top level): the config must be a YAML mapping"),
        ({}, "models: Field required"),
        ({"models": []}, "models: must list at least one entry"),
        (minimal(deployments=[]), "models[0].deployments: must list at least one entry"),
        (minimal(name="bad name!"), "models[0].name: must be 1-64 characters"),
    ],
)
def test_shape_problems(data: object, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems_of(data)), problems_of(data)


def test_env_secret_is_resolved_and_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEAWALL_TEST_KEY", "sk-very-secret")
    config = parse_config(
        {
            "models": [
                {
                    "name": "g",
                    "deployments": [{"id": "d", "model": "m", "api_key": "env:SEAWALL_TEST_KEY"}],
                }
            ]
        },
        "t",
    )
    secret = config.models[0].deployments[0].api_key
    assert secret is not None and secret.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(config) and "sk-very-secret" not in str(config)


def test_keys_by_hash_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEAWALL_TEST_TOKEN", "tok-1")
    digest = hashlib.sha256(b"tok-2").hexdigest()
    config = parse_config(
        {
            **minimal(),
            "keys": [
                {"id": "a", "key": "env:SEAWALL_TEST_TOKEN"},
                {"id": "b", "key_sha256": digest.upper()},
            ],
        },
        "t",
    )
    assert [k.digest for k in config.keys] == [hashlib.sha256(b"tok-1").hexdigest(), digest]
    assert (
        "key_sha256: must be 64 hexadecimal"
        in problems_of({**minimal(), "keys": [{"id": "a", "key_sha256": "abc"}]})[0]
    )


def test_openai_provider_defaults_api_base() -> None:
    config = parse_config(minimal(), "t")
    assert config.models[0].deployments[0].api_base == "https://api.openai.com/v1"
    problems = problems_of(
        {
            "models": [
                {"name": "g", "deployments": [{"id": "d", "model": "m", "api_base": "ftp://x"}]}
            ]
        }
    )
    assert problems == ["models[0].deployments[0]: api_base must be an http:// or https:// URL"]


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_config(tmp_path / "absent.yaml")
    assert "cannot read file" in missing.value.problems[0]
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError) as syntax:
        load_config(broken)
    assert syntax.value.problems[0].startswith("YAML syntax error")


def test_config_is_immutable() -> None:
    config = load_config(None)
    with pytest.raises(Exception, match="frozen"):
        config.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("::", False),
        ("example.com", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("deployment", "problem"),
    [
        ({"headers": {"x-api-key": "abc\r\nx-injected: 1"}}, "'x-api-key' holds a line break"),
        ({"headers": {"x api key": "abc"}}, "is not a valid header name"),
        ({"headers": {"x-a:b": "abc"}}, "is not a valid header name"),
        ({"api_key": "env:SEAWALL_TEST_KEY_FILE_LINE"}, "api_key holds a line break"),
    ],
)
def test_what_would_split_a_request_head_is_a_config_error(
    deployment: dict[str, object], problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEAWALL_TEST_KEY_FILE_LINE", "sk-abc\n")  # `echo key > file` style
    data = {"models": [{"name": "g", "deployments": [{"id": "d", "model": "m", **deployment}]}]}
    (message,) = problems_of(data)
    assert problem in message
    assert "sk-abc" not in message and "injected" not in message
