"""The `seawall` command as a user runs it: real processes, real sockets."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aetcd
import httpx
import openai
import pytest

from gateway.cli import main
from tests.services import EtcdServer
from tests.support import SeawallProcess, bound_socket, sdk, write_config


def free_port() -> int:
    sock = bound_socket()
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_serve_embedded_default_answers_at_once() -> None:
    port = free_port()
    process = SeawallProcess(["serve", "--port", str(port)]).start()
    try:
        reply = sdk(f"http://127.0.0.1:{port}").chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "This is a mock reply from mock-gpt to: hi"
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["status"] == "ready"
    finally:
        process.stop(drain=False)


def test_serve_refuses_public_bind_without_keys() -> None:
    code, output = SeawallProcess(["serve", "--host", "0.0.0.0", "--port", "0"]).run_to_exit()
    assert code == 2
    assert "refusing to serve on 0.0.0.0" in output and "keys" in output


def test_bad_config_exits_2_listing_every_problem(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "bad.yaml",
        {
            "models": [
                {"name": "g", "deployments": [{"id": "d", "model": "m", "weight": -1, "nope": 1}]}
            ]
        },
    )
    for args in (["serve", "--config", str(config)], ["check-config", str(config)]):
        code, output = SeawallProcess(args).run_to_exit()
        assert code == 2
        assert "2 problem(s)" in output
        assert "models[0].deployments[0].weight: Input should be greater than 0" in output
        assert "models[0].deployments[0].nope: Extra inputs are not permitted" in output
        assert "Traceback" not in output


def test_check_config_reports_what_serving_would_refuse(tmp_path: Path) -> None:
    # A file check-config passes must not then fail at `serve`: a key-less public
    # bind and a provider litellm does not know are reported by both, exit 2.
    deployment = {"id": "d", "provider": "antropic", "model": "claude", "api_key": "x"}
    config = write_config(
        tmp_path / "typo.yaml",
        {"server": {"host": "0.0.0.0"}, "models": [{"name": "g", "deployments": [deployment]}]},
    )
    for args in (["check-config", str(config)], ["serve", "--config", str(config)]):
        code, output = SeawallProcess(args).run_to_exit()
        assert code == 2
        assert "2 problem(s)" in output
        assert "server.host: refusing to serve on 0.0.0.0" in output
        assert "models[0].deployments[0].provider: unknown provider 'antropic'" in output
        assert "Traceback" not in output


def test_serve_refuses_a_port_out_of_range() -> None:
    code, output = SeawallProcess(["serve", "--port", "99999"]).run_to_exit()
    assert code == 2
    assert "99999 is not a TCP port" in output


def test_check_config_ok(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "ok.yaml",
        {"models": [{"name": "g", "deployments": [{"id": "d", "provider": "mock", "model": "m"}]}]},
    )
    code, output = SeawallProcess(["check-config", str(config)]).run_to_exit()
    assert code == 0 and "ok (1 model groups, 1 deployments)" in output


def test_keys_require_bearer_auth(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "keys.yaml",
        {
            "models": [
                {"name": "g", "deployments": [{"id": "d", "provider": "mock", "model": "m"}]}
            ],
            "keys": [{"id": "team-a", "key_sha256": hashlib.sha256(b"sk-team-a").hexdigest()}],
        },
    )
    process = SeawallProcess(["serve", "--config", str(config), "--port", str(port)]).start()
    base = f"http://127.0.0.1:{port}/v1"
    try:
        good = openai.OpenAI(base_url=base, api_key="sk-team-a", max_retries=0)
        assert good.chat.completions.create(
            model="g", messages=[{"role": "user", "content": "x"}]
        ).choices
        bad = openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            bad.chat.completions.create(model="g", messages=[{"role": "user", "content": "x"}])
        assert info.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        missing = httpx.post(base + "/chat/completions", json={"model": "g"})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        # Liveness probes stay open: orchestrators do not hold API keys.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        process.stop(drain=False)


def test_keys_allow_public_bind(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "keys.yaml",
        {
            "models": [
                {"name": "g", "deployments": [{"id": "d", "provider": "mock", "model": "m"}]}
            ],
            "keys": [{"id": "k", "key_sha256": "0" * 64}],
        },
    )
    process = SeawallProcess(
        ["serve", "--config", str(config), "--host", "0.0.0.0", "--port", str(port)]
    )
    process.start()
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        process.stop(drain=False)


def test_multiple_workers_serve(tmp_path: Path) -> None:
    port = free_port()
    process = SeawallProcess(["serve", "--port", str(port), "--workers", "2"])
    process.start(ready_marker="Application startup complete")
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0
        )
        for _ in range(4):
            assert client.chat.completions.create(
                model="demo", messages=[{"role": "user", "content": "x"}]
            ).choices
    finally:
        process.stop()


def test_mock_upstream_command_serves_the_mock() -> None:
    port = free_port()
    process = SeawallProcess(["mock-upstream", "--port", str(port), "--log-level", "info"])
    process.start(ready_marker="mock-upstream listening on http://127.0.0.1:")
    try:
        client = sdk(f"http://127.0.0.1:{port}")
        reply = client.chat.completions.create(
            model="whatever", messages=[{"role": "user", "content": "yo"}]
        )
        assert reply.choices[0].message.content == "This is a mock reply from mock-gpt to: yo"
        stream = client.chat.completions.create(
            model="x", messages=[{"role": "user", "content": "yo"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).endswith(
            "to: yo"
        )
    finally:
        process.stop()


SIX_PROBLEMS = {
    "server": {"host": "0.0.0.0"},
    "models": [
        {
            "name": "chat",
            "fallbacks": ["nowhere"],
            "deployments": [
                {"id": "a", "model": "m", "weight": -1},
                {"id": "a", "provider": "nosuchprovider", "model": "m"},
            ],
        }
    ],
    "chaos": {"colors": {"blue": {"deployments": ["ghost"]}}},
}


def test_check_config_reports_every_problem_in_one_pass(tmp_path: Path) -> None:
    """Field, cross-reference and serving problems together: a broken field does not
    hide a broken reference, nor either the bind refusal (they came in three rounds)."""
    config = write_config(tmp_path / "six.yaml", SIX_PROBLEMS)
    code, output = SeawallProcess(["check-config", str(config)]).run_to_exit()
    assert code == 2
    expected = [
        "models[0].deployments[0].weight: Input should be greater than 0",
        "models: duplicate deployment id 'a'",
        "models[0].fallbacks[0]: unknown model group 'nowhere'",
        "chaos.colors.blue.deployments: unknown deployment 'ghost'",
        "server.host: refusing to serve on 0.0.0.0",
        "models[0].deployments[1].provider: unknown provider 'nosuchprovider'",
    ]
    for problem in expected:
        assert problem in output
    assert "6 problem(s)" in output


def test_check_config_skip_env_checks_without_the_secrets(tmp_path: Path) -> None:
    deployment = {"id": "d", "model": "m", "api_key": "env:SEAWALL_TEST_NEVER_SET"}
    config = write_config(
        tmp_path / "env.yaml", {"models": [{"name": "g", "deployments": [deployment]}]}
    )
    code, output = SeawallProcess(["check-config", str(config)]).run_to_exit()
    assert code == 2 and "SEAWALL_TEST_NEVER_SET is not set" in output
    code, output = SeawallProcess(["check-config", "--skip-env", str(config)]).run_to_exit()
    assert code == 0, output


CHAT = "models:\n  - name: chat\n    deployments: [{id: m, provider: mock, model: mock-gpt}]\n"


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`seawall ARGV` in this process (argument handling only needs no server)."""
    try:
        code = main(argv)
    except SystemExit as exit:
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_check_config_takes_every_form_serve_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "seawall.yaml"
    file.write_text(CHAT)
    # A ConfigMap mount: files behind the `..data` symlink kubelet swaps.
    mount = tmp_path / "mount"
    (mount / "..2026_12_06").mkdir(parents=True)
    (mount / "..2026_12_06" / "models.yaml").write_text(CHAT)
    (mount / "..data").symlink_to("..2026_12_06")
    (mount / "models.yaml").symlink_to("..data/models.yaml")
    for argv in (
        [str(file)],
        ["--config", str(file)],
        [str(mount)],
        ["--config", str(mount)],
        [str(file), "--config", str(file)],
    ):
        code, output = run_main(["check-config", *argv], capsys)
        assert code == 0, (argv, output)
        assert "ok (1 model groups, 1 deployments)" in output
    code, output = run_main(["check-config", str(file), "--config", str(mount)], capsys)
    assert code == 2 and "give the config once" in output
    code, output = run_main(["check-config"], capsys)
    assert code == 2 and "a config is required" in output


def test_check_config_reads_etcd_as_serve_does(
    etcd: EtcdServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async def put() -> None:
        async with aetcd.Client(host="127.0.0.1", port=etcd.port, timeout=10) as client:
            await client.put(b"/seawall/models.yaml", CHAT.encode())
            await client.put(b"/seawall/chaos.yaml", b"chaos: {enabled: maybe}\n")

    asyncio.run(put())
    code, output = run_main(["check-config", f"etcd://{etcd.endpoint}/seawall/"], capsys)
    assert code == 2
    assert "chaos.enabled" in output and "valid boolean" in output


@pytest.mark.parametrize(
    "command", [["serve"], ["check-config"], ["mock-upstream"], ["chaos"], ["chaos", "run"],
                ["chaos", "list"]]
)  # fmt: skip
def test_every_command_has_help_with_an_example(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_main([*command, "--help"], capsys)
    assert code == 0
    assert "examples:\n  seawall " + " ".join(command) in output


def test_the_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_main(["--help"], capsys)
    assert code == 0
    for command in ("serve", "check-config", "mock-upstream", "chaos"):
        assert f"    {command}" in output


def test_version() -> None:
    code, output = SeawallProcess(["--version"]).run_to_exit()
    assert code == 0 and output.startswith("seawall ")
