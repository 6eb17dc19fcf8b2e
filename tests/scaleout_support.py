"""The scale-out cluster on one machine: the production config, made local, served by N
`seawall serve` processes that share one Redis and one etcd, behind tests/balancer.py.

Used by the proof (tests/test_scaleout.py) and the throughput benchmark
(bench/scaleout.py).

**The config.** `production_config()` is what the Helm chart renders for its
production example: `helm template x helm/seawall -f helm/seawall/examples/production.yaml`
gives a ConfigMap whose `data["config.yaml"]` is the whole gateway config. When the
chart or the Helm binary (tests/helm_binary.py) is not there, `OWN_CONFIG`, written in
the same spirit, stands in (`ConfigSource.origin` says which served).

**Made local** (`localize`), by parsing the YAML and replacing named fields, nothing
else: `limits.store` and `responses.store` point at the test's `redis-server` (the
database number kept); every deployment's `api_base` at the mock upstream (its
`provider` becomes `openai` when it was another API: the mock speaks only OpenAI's);
every `env:NAME` secret among the keys and deployments gets a value in the replicas'
environment; `server.host` and `server.port` are overridden on the command line
(127.0.0.1, port 0), and `telemetry` exporters are dropped (no collector here). A
config with the audit log on is refused: its directory is per pod (a volume each),
which one shared etcd document cannot give four local processes.
One key is added: `scaleout-limited`, with `requests_per_minute: LIMITED_RPM`, the
limit the proof counts, and one admin key when the config has none, for `/admin/*`.

**Served from etcd.** The replicas run `seawall serve --config etcd://.../seawall/`;
the localized config is the document `config.yaml` under that prefix, as an operator
would load the ConfigMap's file into etcd.
"""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml

from tests.balancer import BalancerThread
from tests.services import EtcdServer
from tests.support import SeawallProcess

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "seawall"
PRODUCTION_VALUES = CHART / "examples" / "production.yaml"
HELM_SCRIPT = ROOT / "tests" / "helm_binary.py"
#: The etcd prefix the replicas watch, and the one document under it.
PREFIX = "/seawall/"
DOCUMENT = "config.yaml"
#: The key the limits proof counts, and its limit.
LIMITED_KEY, LIMITED_TOKEN, LIMITED_RPM = "scaleout-limited", "sk-scaleout-limited", 40
ADMIN_KEY, ADMIN_TOKEN = "scaleout-admin", "sk-scaleout-admin"
#: The value every `env:` secret of the config gets (keys get one each: see `localize`).
SECRET_VALUE = "sk-scaleout-secret"

#: Stand-in for the chart's production rendering: what a production values file
#: asks for (keys from Secrets, tenants with limits on Redis, stored responses on
#: Redis, config followed from its source with the default resync).
OWN_CONFIG: dict[str, Any] = {
    "server": {"host": "0.0.0.0", "port": 8080},
    "models": [
        {
            "name": "chat",
            "deployments": [
                {
                    "id": "primary",
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "api_base": "http://llm.internal:8000/v1",
                    "api_key": "env:UPSTREAM_API_KEY",
                }
            ],
        }
    ],
    "tenants": [
        {"id": "acme", "limits": {"requests_per_minute": 100000, "on_store_failure": "fail_closed"}}
    ],
    "keys": [
        {"id": "app", "key": "env:SEAWALL_APP_KEY", "tenant": "acme", "roles": ["user"]},
        {"id": "ops", "key": "env:SEAWALL_ADMIN_KEY", "roles": ["admin", "metrics"]},
    ],
    "limits": {"store": "redis://redis.internal:6379/0"},
    "responses": {"store": "redis://redis.internal:6379/1"},
    "reload": {"resync_s": 10},
}


@dataclass(frozen=True)
class ConfigSource:
    """The config the replicas serve, and where it came from."""

    config: dict[str, Any]
    origin: str


def chart_ready() -> bool:
    return PRODUCTION_VALUES.is_file() and HELM_SCRIPT.is_file()


def production_config() -> ConfigSource:
    """The chart's production rendering when the chart and its Helm are here, else
    `OWN_CONFIG`."""
    if not chart_ready():
        return ConfigSource(copy.deepcopy(OWN_CONFIG), "own (the chart is not there yet)")
    helm = _helm()
    done = subprocess.run(
        [helm, "template", "x", str(CHART), "-f", str(PRODUCTION_VALUES)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    for manifest in yaml.safe_load_all(done.stdout):
        if (
            manifest
            and manifest.get("kind") == "ConfigMap"
            and DOCUMENT in manifest.get("data", {})
        ):
            config = yaml.safe_load(manifest["data"][DOCUMENT])
            return ConfigSource(config, f"helm template -f {PRODUCTION_VALUES.relative_to(ROOT)}")
    raise AssertionError(f"no ConfigMap with data[{DOCUMENT!r}] in the production rendering")


def _helm() -> str:
    """The Helm binary tests/helm_binary.py installs into the venv (`make deps` does)."""
    from tests import helm_binary

    assert helm_binary.install() == 0, "Helm is not installed (tests/helm_binary.py said why)"
    return str(helm_binary.HELM)


def _local_redis(url: str, redis_url: str) -> str:
    """`url` with the host and port of the test's Redis; its database kept."""
    local = urlsplit(redis_url)
    if url.startswith("env:") or "://" not in url:
        return redis_url
    path = urlsplit(url).path or local.path
    return urlunsplit((local.scheme, local.netloc, path, "", ""))


def _secret(value: Any, env: dict[str, str], fill: str) -> None:
    """Gives an `env:NAME` reference a value in the replicas' environment."""
    if isinstance(value, str) and value.startswith("env:"):
        env.setdefault(value[4:], fill)


@dataclass
class LocalConfig:
    """A config ready to serve on this machine: the document and the environment."""

    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    #: Each key's id and the token it authenticates with here.
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def document(self) -> str:
        return yaml.safe_dump(self.config, sort_keys=False)

    def token(self, role: str) -> str:
        """A token of a key that holds `role` (the added keys last)."""
        for key in self.config.get("keys", []):
            if role in key.get("roles", []) and key["id"] in self.tokens:
                return self.tokens[key["id"]]
        raise LookupError(f"no key with role {role!r}")


def localize(config: Mapping[str, Any], redis_url: str, upstream_url: str) -> LocalConfig:
    """The named fields of a production config pointed at this machine (module doc)."""
    local = copy.deepcopy(dict(config))
    env: dict[str, str] = {}
    tokens: dict[str, str] = {}
    for section in ("limits", "responses"):
        block = local.get(section)
        store = block.get("store") if isinstance(block, dict) else None
        if isinstance(block, dict) and isinstance(store, str) and store != "memory":
            block["store"] = _local_redis(store, redis_url)
    for group in local.get("models", []):
        for deployment in group.get("deployments", []):
            if deployment.get("provider") != "mock":
                deployment["provider"] = "openai"
                deployment["api_base"] = upstream_url.rstrip("/") + "/v1"
                deployment.setdefault("api_key", SECRET_VALUE)
                _secret(deployment.get("api_key"), env, SECRET_VALUE)
    keys = local.setdefault("keys", [])
    for n, key in enumerate(keys):
        token = f"sk-scaleout-key-{n}"
        if isinstance(key.get("key"), str) and key["key"].startswith("env:"):
            _secret(key["key"], env, token)
            tokens[key["id"]] = env[key["key"][4:]]
        elif "key_sha256" in key:
            # A hash names a token we do not have: this key cannot be used here.
            continue
        elif isinstance(key.get("key"), str):
            tokens[key["id"]] = key["key"]
    tenant = next((t["id"] for t in local.get("tenants", []) if "parent" not in t), None)
    limited: dict[str, Any] = {"id": LIMITED_KEY, "key": LIMITED_TOKEN, "roles": ["user"]}
    limited["limits"] = {"requests_per_minute": LIMITED_RPM}
    if tenant is not None:
        limited["tenant"] = tenant
    keys.append(limited)
    tokens[LIMITED_KEY] = LIMITED_TOKEN
    if not any("admin" in key.get("roles", []) and key["id"] in tokens for key in keys):
        keys.append({"id": ADMIN_KEY, "key": ADMIN_TOKEN, "roles": ["admin", "metrics"]})
        tokens[ADMIN_KEY] = ADMIN_TOKEN
    local.pop("telemetry", None)
    audit = local.get("audit")
    assert not (isinstance(audit, dict) and audit.get("enabled")), "audit: a directory per pod"
    return LocalConfig(local, env, tokens)


def put_documents(etcd: EtcdServer, documents: Mapping[str, str]) -> None:
    """Writes documents under `PREFIX` through etcd's v3 JSON gateway, in one
    transaction: what `etcdctl put` (or an operator's pipeline) does."""
    puts = []
    for name, text in documents.items():
        key = base64.b64encode((PREFIX + name).encode()).decode()
        value = base64.b64encode(text.encode()).decode()
        puts.append({"request_put": {"key": key, "value": value}})
    reply = httpx.post(etcd.url + "/v3/kv/txn", json={"success": puts}, timeout=10)
    assert reply.status_code == 200, reply.text


class Replica:
    """One `seawall serve` process of the cluster, following the etcd prefix."""

    def __init__(self, etcd: EtcdServer, env: Mapping[str, str], scratch: Path) -> None:
        spec = f"etcd://{etcd.endpoint}{PREFIX}"
        args = ["serve", "--config", spec, "--host", "127.0.0.1", "--port", "0"]
        args += ["--log-level", "warning", "--no-access-log"]
        scratch.mkdir(parents=True, exist_ok=True)
        self.process = SeawallProcess(args, env=dict(env))
        self.scratch = scratch

    def start(self) -> Replica:
        self.process.start()
        self.process.wait_ready()
        return self

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def kill(self) -> None:
        """SIGKILL, and reaped: an OOM kill or a node loss, not a drain."""
        proc = self.process.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)


class MockUpstream:
    """`seawall mock-upstream` as a process (its own core time, apart from the tests')."""

    def __init__(self, latency_ms: int = 0) -> None:
        args = ["mock-upstream", "--port", "0", "--latency-ms", str(latency_ms)]
        self.process = SeawallProcess(args)

    def start(self) -> MockUpstream:
        self.process.start(ready_marker="mock-upstream listening on")
        line = next(x for x in self.process.output if "listening on" in x)
        self.url = line.split("listening on ", 1)[1].split("/v1", 1)[0]
        return self

    def stop(self) -> None:
        self.process.stop()


@dataclass
class Cluster:
    """N replicas behind the balancer, and what they serve."""

    replicas: list[Replica]
    balancer: BalancerThread
    local: LocalConfig
    source: ConfigSource
    etcd: EtcdServer
    scratch: Path

    @property
    def url(self) -> str:
        return self.balancer.url

    def replace(self, index: int) -> Replica:
        """Starts a replacement for replica `index` (a new pod) and balances to it."""
        replica = Replica(self.etcd, self.local.env, self.scratch / f"r{index}-{time.time_ns()}")
        replica.start()
        self.replicas[index] = replica
        self.balancer.balancer.replace(index, ("127.0.0.1", replica.port))
        return replica


def start_replicas(
    etcd: EtcdServer, env: Mapping[str, str], scratch: Path, n: int
) -> list[Replica]:
    """`n` replicas started side by side (each start is mostly imports: in parallel
    they overlap their waits); all stopped if any fails."""
    replicas = [Replica(etcd, env, scratch / f"r{i}") for i in range(n)]
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(replica.start) for replica in replicas]
    try:
        for future in futures:
            future.result()
    except BaseException:
        for replica in replicas:
            replica.kill()
        raise
    return replicas


@contextmanager
def cluster(
    etcd: EtcdServer, redis_url: str, upstream_url: str, scratch: Path, n: int = 4
) -> Iterator[Cluster]:
    """The production config in etcd, `n` replicas on it, the balancer in front."""
    source = production_config()
    local = localize(source.config, redis_url, upstream_url)
    put_documents(etcd, {DOCUMENT: local.document})
    replicas = start_replicas(etcd, local.env, scratch, n)
    balancer = BalancerThread([("127.0.0.1", r.port) for r in replicas]).start()
    cluster_ = Cluster(replicas, balancer, local, source, etcd, scratch)
    try:
        yield cluster_
    finally:
        with suppress(Exception):
            balancer.stop()
        # Killed, not drained: the production `server.drain_s` (10 s) would hold each
        # replica that long, and draining is tests/test_shutdown.py's subject.
        for replica in cluster_.replicas:
            replica.kill()
        shutil.rmtree(scratch, ignore_errors=True)
