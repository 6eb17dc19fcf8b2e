"""The programs the benchmark runs: how to install them, configure them and start them.

Each `*_argv` function writes whatever config its program needs into `workdir`
(a temporary directory) and returns the command line; `bench/run.py` spawns it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from upstream import COMPLETION_BODY, MODEL

BENCH_DIR = Path(__file__).resolve().parent
LITELLM_VENV = BENCH_DIR / ".litellm-venv"
#: Pinned: later 1.106.x need a certifi the local registry lacks, and 1.107.0 was a
#: compromised release.
LITELLM_REQUIREMENT = "litellm[proxy]==1.106.2"
LITELLM_MASTER_KEY = "sk-bench-master"
PORTKEY_DIR = BENCH_DIR / "portkey"
PORTKEY_PACKAGE = "@portkey-ai/gateway"
PORTKEY_START = PORTKEY_DIR / "node_modules" / PORTKEY_PACKAGE / "build" / "start-server.js"
#: Portkey 1.15.2 answers every stream with HTTP 500 on Node 20: its
#: ResponseService.updateHeaders appends to the immutable headers of a fetch Response.
#: Re-check (and drop this) when bench/portkey/package.json pins a newer version.
PORTKEY_STREAM_NOT_RUN = (
    "Portkey 1.15.2 fails streams on Node 20 (TypeError: immutable, Portkey-AI/gateway#1389)"
)
UPSTREAM_KEY = "sk-bench"
MODEL_GROUP = "bench"
#: Debian keeps nginx in sbin, which a non-login PATH may lack.
_TOOL_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


class NotRun(RuntimeError):
    """A target that cannot be measured on this machine; the message says why."""


def find_tool(binary: str) -> str | None:
    return shutil.which(binary, path=_TOOL_PATH)


def _apt_get(*args: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", *args], env=env, capture_output=True, check=False)
    return done.returncode == 0


def ensure_tool(binary: str, package: str) -> str | None:
    """The path of `binary`, installing Debian's `package` if needed (None if impossible).

    `apt-get update` is slow and needs the network, so it runs only when a plain
    install fails (typically: no package lists yet).
    """
    found = find_tool(binary)
    if found is None and shutil.which("apt-get"):
        print(f"installing {package} with apt-get ...", file=sys.stderr)
        if not _apt_get("install", "-y", package) and _apt_get("update"):
            _apt_get("install", "-y", package)
        found = find_tool(binary)
    return found


def upstream_argv(port: int) -> list[str]:
    return [sys.executable, str(BENCH_DIR / "upstream.py"), "--port", str(port)]


def nginx_argv(nginx: str, workdir: Path, port: int) -> list[str]:
    """nginx answering the chat route with the upstream's fixed JSON, tuned to be no bottleneck.

    Every path nginx would write to (pid, logs, temp dirs) points into `workdir`, so
    it runs beside any system nginx and leaves nothing behind.
    """
    prefix = workdir / "nginx"
    prefix.mkdir(exist_ok=True)
    body = COMPLETION_BODY.decode()
    if "'" in body or "$" in body:
        raise ValueError("the completion JSON cannot be quoted in an nginx config")
    temp_paths = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = prefix / "nginx.conf"
    config.write_text(f"""\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
{temp_paths}
    server {{
        listen 127.0.0.1:{port};
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
""")
    return [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(config)]


def floor_argv(port: int, upstream_port: int) -> list[str]:
    """bench/floor.py: a bare aiohttp relay, the least a Python proxy can do."""
    upstream = f"http://127.0.0.1:{upstream_port}"
    argv = [sys.executable, str(BENCH_DIR / "floor.py"), "--port", str(port)]
    return [*argv, "--upstream", upstream]


def ensure_floor() -> None:
    """aiohttp is a bench-only requirement: without it the floor is not run."""
    if importlib.util.find_spec("aiohttp") is None:
        raise NotRun("aiohttp missing (`pip install aiohttp`)")


def seawall_argv(
    workdir: Path, port: int, upstream_port: int, max_prompt_tokens: int | None = None
) -> list[str]:
    """`seawall serve` with one group `bench` whose one deployment is the upstream.

    `max_prompt_tokens` sets the group's prompt limit: close above the prompt's
    size, it makes the guard count every prompt exactly (its worst case)."""
    config = workdir / f"seawall-{upstream_port}.yaml"
    deployment = {
        "id": "upstream",
        "provider": "openai",
        "model": MODEL,
        "api_base": f"http://127.0.0.1:{upstream_port}/v1",
        "api_key": UPSTREAM_KEY,
    }
    document = {
        "server": {"host": "127.0.0.1", "port": port},
        "models": [{"name": MODEL_GROUP, "deployments": [deployment]}],
    }
    if max_prompt_tokens is not None:
        document["models"][0]["max_prompt_tokens"] = max_prompt_tokens  # type: ignore[index]
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    seawall = Path(sys.executable).with_name("seawall")
    return [
        str(seawall),
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def litellm_argv(workdir: Path, port: int, upstream_port: int) -> list[str]:
    """LiteLLM's proxy, one worker, a master key, one model `bench` -> the upstream."""
    config = workdir / f"litellm-{upstream_port}.yaml"
    document = {
        "model_list": [
            {
                "model_name": MODEL_GROUP,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                    "api_key": UPSTREAM_KEY,
                },
            }
        ],
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
    }
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    litellm = LITELLM_VENV / "bin" / "litellm"
    return [
        str(litellm),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]


def litellm_env() -> dict[str, str]:
    """Environment for an offline LiteLLM proxy with no database.

    The bundled cost map replaces the download at import; without DATABASE_URL the
    proxy authenticates with the master key alone and skips spend logs and migrations.
    The feedback banner is only log noise.
    """
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOG="ERROR",
        DISABLE_SCHEMA_UPDATE="True",
        LITELLM_DONT_SHOW_FEEDBACK_BOX="True",
    )
    return env


def _venv_python() -> Path:
    return LITELLM_VENV / "bin" / "python"


def _marker() -> Path:
    """Written after a complete install: a venv half-built by an interrupted run is redone."""
    return LITELLM_VENV / ".bench-requirement"


def _last_error(log_path: Path, limit: int = 300) -> str:
    """pip's last ERROR line (else its last line), cut short: it can list every version."""
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    last = (errors or lines or ["(no output)"])[-1]
    return last if len(last) <= limit else last[:limit] + " ..."


def ensure_litellm(log_path: Path) -> None:
    """Create `bench/.litellm-venv` with the pinned LiteLLM proxy, unless already there.

    Raises NotRun with the reason (and pip's last words) if it cannot be installed.
    """
    marker = _marker()
    if marker.exists() and marker.read_text() == LITELLM_REQUIREMENT:
        return
    print(f"installing {LITELLM_REQUIREMENT} into {LITELLM_VENV} ...", file=sys.stderr)
    python3 = shutil.which("python3") or sys.executable
    steps = {
        "python3 -m venv": [python3, "-m", "venv", "--clear", str(LITELLM_VENV)],
        "pip install": [str(_venv_python()), "-m", "pip", "install", "-q", LITELLM_REQUIREMENT],
    }
    log_path.write_bytes(b"")
    for step, argv in steps.items():
        _install_step(step, argv, log_path, timeout_s=1800)
    marker.write_text(LITELLM_REQUIREMENT)


def litellm_versions() -> dict[str, str]:
    """Versions inside the LiteLLM venv (its uvicorn is not seawall's)."""
    script = (
        "import importlib.metadata as m, json, platform\n"
        "print(json.dumps({'litellm': m.version('litellm'), 'uvicorn': m.version('uvicorn'),"
        " 'python': platform.python_version()}))"
    )
    done = subprocess.run(
        [str(_venv_python()), "-c", script], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def portkey_version() -> str:
    """The pinned gateway version: bench/portkey/package.json is the one place it is set."""
    document = json.loads((PORTKEY_DIR / "package.json").read_text())
    return str(document["dependencies"][PORTKEY_PACKAGE])


def _installed_portkey() -> str | None:
    manifest = PORTKEY_DIR / "node_modules" / PORTKEY_PACKAGE / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _install_step(step: str, argv: list[str], log_path: Path, timeout_s: int) -> None:
    """Runs one install command, its output appended to `log_path`; NotRun if it fails."""
    with log_path.open("ab") as log:
        try:
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NotRun(f"{step} failed: {exc}") from exc
    if done.returncode != 0:
        raise NotRun(f"{step} exited {done.returncode}: {_last_error(log_path)}")


def ensure_portkey(log_path: Path) -> None:
    """`npm install` the pinned Portkey gateway into bench/portkey, unless already there.

    Raises NotRun with the reason if node or npm is missing or the install fails.
    """
    if shutil.which("node") is None:
        raise NotRun("node missing (Portkey's gateway runs on Node.js)")
    wanted = portkey_version()
    if _installed_portkey() == wanted and PORTKEY_START.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise NotRun("npm missing (needed to install Portkey's gateway)")
    print(f"installing {PORTKEY_PACKAGE}@{wanted} into {PORTKEY_DIR} ...", file=sys.stderr)
    argv = [npm, "install", "--prefix", str(PORTKEY_DIR), "--no-audit", "--no-fund"]
    log_path.write_bytes(b"")
    _install_step("npm install", argv, log_path, timeout_s=900)
    if _installed_portkey() != wanted or not PORTKEY_START.exists():
        raise NotRun(f"npm install did not leave {PORTKEY_PACKAGE}@{wanted} in {PORTKEY_DIR}")


def portkey_argv(port: int) -> list[str]:
    """Portkey's gateway without its console; the provider comes with each request."""
    return ["node", str(PORTKEY_START), f"--port={port}", "--headless"]


def portkey_env() -> dict[str, str]:
    return {**os.environ, "NODE_ENV": "production"}


def portkey_headers(upstream_port: int) -> dict[str, str]:
    """Portkey picks the provider and its base URL from request headers, not a config."""
    return {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"http://127.0.0.1:{upstream_port}/v1",
    }


def portkey_versions() -> dict[str, str]:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return {"gateway": _installed_portkey() or "unknown", "node": node.stdout.strip()}
