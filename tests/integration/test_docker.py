"""The Dockerfile, proven without a Docker engine.

`Image` replays a stage of the Dockerfile on this machine: the build context is filtered by
.dockerignore, COPY copies exactly what the stage copies, WORKDIR/ENV/ARG apply, and the RUN
lines that build the image (`uv sync`, `python ...`, `dvc ...`) run as written, inside a
directory standing in for `/` (stages are materialised one after another at the same path, so a
venv built in one stage and copied into the next keeps working, as in the real image). RUN lines
that administer the OS (groupadd, useradd, chown) are not replayed here; the static checks cover
them. Then the CMD and HEALTHCHECK command lines run as written, with the bind address turned
into 127.0.0.1 and the port into a free one. A recipe that forgets a file, breaks the lock or the
command line fails here, engine or not; hadolint (make docker-lint) checks the rest.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from serve.api_models import EXAMPLE_REQUEST
from tests.conftest import ROOT, Store, free_port, small_params, stop_process, wait_for_http

pytestmark = pytest.mark.integration

DOCKERFILE = ROOT / "Dockerfile"
SAMPLE = EXAMPLE_REQUEST["instances"][0]  # 7590-VHVEG
# OS administration: checked statically (non-root USER), not replayed on the test machine.
NOT_REPLAYED = ("groupadd ", "useradd ", "mkdir ", "chown ")


# --------------------------------------------------------------------------------------------
# Parsing


@dataclass
class Instruction:
    op: str
    args: str

    def exec_form(self) -> list[str]:
        text = re.sub(r"^(--[a-z-]+=\S+\s+)+", "", self.args)  # HEALTHCHECK/RUN options
        if text.startswith("CMD "):
            text = text[4:]
        text = text.strip()
        return list(json.loads(text)) if text.startswith("[") else ["/bin/sh", "-c", text]


@dataclass
class Stage:
    name: str
    base: str
    body: list[Instruction] = field(default_factory=list)

    def ops(self, op: str) -> list[Instruction]:
        return [i for i in self.body if i.op == op]


def parse(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """(global ARG defaults, stages by name) from a Dockerfile's text."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line:
            lines.append(line)
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in lines:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest.strip(), re.IGNORECASE)
            assert m, line
            base = re.sub(r"\$\{(\w+)\}", lambda g: args.get(g[1], ""), m[1])
            current = Stage(m[2] or base, base)
            stages[current.name] = current
        elif current is None and op == "ARG":
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
        else:
            assert current is not None, line
            current.body.append(Instruction(op, rest.strip()))
    return args, stages


def env_pairs(args: str) -> dict[str, str]:
    """ENV a=b c="d e" -> {a: b, c: d e} (values keep $VAR references for later expansion)."""
    out = {}
    for token in shlex.split(args, posix=True):
        key, _, value = token.partition("=")
        out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# The build context (.dockerignore) and the replay


def _ignore_rules() -> list[tuple[bool, str]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, line.lstrip("!").strip("/")))
    return rules


def _matches(path: str, pattern: str) -> bool:
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # the path and its parents
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(fnmatch.fnmatchcase(p, tail) for p in parts) or fnmatch.fnmatchcase(path, tail)
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)


def context_files() -> list[str]:
    """The files `docker build .` sends: the work tree (as git sees it) less .dockerignore."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    rules = _ignore_rules()
    kept = []
    for rel in filter(None, listed):
        if not (ROOT / rel).is_file():
            continue
        included = True
        for negate, pattern in rules:
            if _matches(rel, pattern):
                included = negate
        if included:
            kept.append(rel)
    return kept


class Image:
    """Replays stages of the Dockerfile; `root` stands in for `/` of the stage being built."""

    def __init__(self, work: Path) -> None:
        self.global_args, self.stages = parse(DOCKERFILE.read_text())
        self.build_args: dict[str, str] = {}
        self.root = work / "rootfs"
        self.stash = work / "stages"
        self.context = context_files()
        self.built: dict[str, Path] = {}
        self.env: dict[str, str] = {}
        self.workdir = "/"
        self.current = ""

    def host(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def expand(self, text: str) -> str:
        values = {**self.global_args, **self.env}
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)

    def to_host(self, text: str) -> str:
        """Container paths in a value -> their place under `root` (/app/x -> <root>/app/x)."""
        text = text.replace("sqlite:////app/", f"sqlite:///{self.root}/app/")
        return re.sub(r"(?<![\w/])/(app|home)\b", lambda m: f"{self.root}/{m[1]}", text)

    def chain(self, target: str) -> list[Stage]:
        stages = []
        name = target
        while name in self.stages:
            stages.insert(0, self.stages[name])
            name = self.stages[name].base
        return stages

    def replayable(self, name: str) -> bool:
        """A stage of this file with instructions (not a bare external image like uv's)."""
        return name in self.stages and bool(self.stages[name].body)

    def build(self, target: str, **build_args: str) -> None:
        """Replay `target` (and the stages it copies from, once) at `root`."""
        chain = self.chain(target)
        for stage in chain:
            for ins in stage.ops("COPY"):
                m = re.search(r"--from=(\S+)", ins.args)
                if m and self.replayable(m[1]) and m[1] not in self.built:
                    self.build(m[1])
        self.build_args = build_args
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        self.env, self.workdir = {}, "/"
        for stage in chain:
            for ins in stage.body:
                getattr(self, f"_{ins.op.lower()}", lambda _i: None)(ins)
        self.built[target] = self._stash(target)
        self.current = target

    def _stash(self, target: str) -> Path:
        stash = self.stash / target
        if stash.exists():
            shutil.rmtree(stash)
        shutil.copytree(self.root, stash, symlinks=True, copy_function=os.link)
        return stash

    def materialise(self, target: str) -> None:
        """Put a built stage back at `root` (one stage stands at `/` at a time, as in a run)."""
        if self.current == target:
            return
        shutil.rmtree(self.root)
        shutil.copytree(self.built[target], self.root, symlinks=True, copy_function=os.link)
        self.current = target

    def _arg(self, ins: Instruction) -> None:
        key, _, default = ins.args.partition("=")
        self.env[key] = self.build_args.get(key, default)

    def _env(self, ins: Instruction) -> None:
        for key, value in env_pairs(ins.args).items():
            self.env[key] = self.expand(value)

    def _workdir(self, ins: Instruction) -> None:
        self.workdir = ins.args
        self.host(self.workdir).mkdir(parents=True, exist_ok=True)

    def _copy(self, ins: Instruction) -> None:
        words = [w for w in shlex.split(ins.args) if not w.startswith("--chown")]
        source_stage = next((w[7:] for w in words if w.startswith("--from=")), None)
        *sources, dest = [w for w in words if not w.startswith("--")]
        if source_stage is not None and not self.replayable(source_stage):
            return  # an external image (uv's binary): the host's uv stands in for it
        dest_path = self.host(dest if dest.startswith("/") else f"{self.workdir}/{dest}")
        for src in sources:
            if source_stage is not None:
                origin = self.built[source_stage] / src.lstrip("/")
                if origin.is_dir():
                    shutil.copytree(
                        origin, dest_path, symlinks=True, dirs_exist_ok=True, copy_function=os.link
                    )
                else:
                    dest_path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, dest_path)
                continue
            prefix = "" if src in (".", "./") else src.rstrip("/")
            files = [
                f for f in self.context if not prefix or f == prefix or f.startswith(prefix + "/")
            ]
            assert files, f"COPY {src}: nothing in the build context (check .dockerignore)"
            for rel in files:
                if prefix and rel == prefix and not dest.endswith("/"):
                    target = dest_path
                elif prefix and rel == prefix:
                    target = dest_path / Path(rel).name
                else:
                    target = dest_path / rel[len(prefix) :].lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, target)

    def process_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VIRTUAL_ENV"))}
        for key, value in self.env.items():
            env[key] = self.to_host(value)
        path = self.to_host(self.env.get("PATH", "$PATH"))
        env["PATH"] = path.replace("$PATH", os.environ["PATH"])
        env.update(extra)
        return env

    def _run(self, ins: Instruction) -> None:
        command = re.sub(r"^(--mount=\S+\s+)+", "", ins.args)
        for part in re.split(r"\s+&&\s+", command):
            if part.startswith(NOT_REPLAYED):
                continue
            cmd = self.to_host(self.expand(part))
            proc = subprocess.run(
                ["bash", "-c", cmd], cwd=self.host(self.workdir), env=self.process_env(),
                capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            assert proc.returncode == 0, f"RUN {part}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    def last(self, op: str, target: str) -> Instruction:
        found = [i for s in self.chain(target) for i in s.body if i.op == op]
        assert found, f"{target}: no {op}"
        return found[-1]

    def command(self, op: str, target: str, port: int) -> list[str]:
        argv = self.last(op, target).exec_form()
        swapped = [
            "127.0.0.1"
            if a == "0.0.0.0"
            else a.replace(":8000", f":{port}").replace(":5000", f":{port}")
            for a in argv
        ]
        return [str(port) if a in ("8000", "5000") else a for a in swapped]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def get(self, path: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def post(self, path: str, body: object) -> tuple[int, dict]:  # type: ignore[type-arg]
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def start(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    procs: list[subprocess.Popen[bytes]] = []

    def _start(image: Image, target: str, **env: str) -> Server:
        port = free_port()
        argv = image.command("CMD", target, port)
        log = tmp_path / f"{target}-{port}.log"
        proc = subprocess.Popen(
            argv, cwd=image.host(image.workdir), env=image.process_env(**env),
            stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(f"{url}/health", timeout=90, proc=proc)
        except Exception:
            print(log.read_text()[-4000:])
            raise
        return Server(proc, url, log)

    yield _start
    for proc in procs:
        stop_process(proc)


# --------------------------------------------------------------------------------------------
# Static checks


def test_the_recipe_follows_the_rules() -> None:
    args, stages = parse(DOCKERFILE.read_text())
    assert re.fullmatch(r"docker.io/library/python:3\.11\.\d+-slim-bookworm", args["PYTHON_IMAGE"])
    assert {"builder", "runtime", "baked", "tracking", "pipeline"} <= set(stages)
    image_stages = [s for s in stages.values() if s.base != "ghcr.io/astral-sh/uv:0.13.9"]
    for stage in image_stages:
        assert not stage.base.endswith(":latest"), stage.base
    runtime = stages["runtime"]
    sync = [r.args for r in stages["builder"].ops("RUN")]
    assert any(a.endswith("uv sync --frozen --no-dev") for a in sync), sync
    for name in ("runtime", "baked", "tracking", "pipeline"):
        users = [i.args for s in _fake(stages).chain(name) for i in s.body if i.op == "USER"]
        assert users and users[-1] not in ("0", "0:0", "root"), (name, users)
    assert [e.args for e in runtime.ops("EXPOSE")] == ["8000"]
    health = runtime.ops("HEALTHCHECK")[0]
    assert "http://127.0.0.1:8000/health" in health.args
    env = {k: v for e in runtime.ops("ENV") for k, v in env_pairs(e.args).items()}
    assert env["CHURN_MODEL_URI"] == "models:/churn@champion"  # no model baked in
    assert "MLFLOW_TRACKING_URI" in env
    # The runtime image copies the venv and the two packages the service imports, nothing else.
    copies = [c.args for c in runtime.ops("COPY")]
    assert copies == ["--from=builder /app/.venv /app/.venv", "churn/ churn/", "serve/ serve/"]


def _fake(stages: dict[str, Stage]) -> Image:
    image = Image.__new__(Image)
    image.stages = stages
    return image


def test_cmd_is_make_serves_command_line() -> None:
    _, stages = parse(DOCKERFILE.read_text())
    cmd = stages["runtime"].ops("CMD")[-1].exec_form()
    # What `make serve` runs, as make itself expands it (-n: print, do not run).
    shown = subprocess.run(
        ["make", "--no-print-directory", "-n", "serve", "HOST=0.0.0.0", "PORT=8000"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    make_argv = shlex.split(shown)
    assert Path(make_argv[0]).name == "uvicorn"
    assert make_argv[1:] == cmd[1:] == [
        "--factory", "serve.app:main", "--host", "0.0.0.0", "--port", "8000",
        "--timeout-keep-alive", "75",  # > any client's or load balancer's idle timeout
        "--http", "serve.protocol:LimitedHttpToolsProtocol",  # request-head size and time limits
    ]  # fmt: skip


def test_build_context_holds_no_store_data_or_venv() -> None:
    files = context_files()
    assert "serve/app.py" in files and "uv.lock" in files and "deploy/bake.py" in files
    for banned in ("mlflow.db", ".venv/", "mlartifacts/", "data/customers.parquet", ".git/",
                   "tests/", "reports/", "deploy/team.env"):  # fmt: skip
        assert not any(f == banned or f.startswith(banned) for f in files), banned


# --------------------------------------------------------------------------------------------
# Replays


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """builder -> runtime, replayed once for the module (the `uv sync` is most of the time)."""
    img = Image(tmp_path_factory.mktemp("docker"))
    img.build("runtime")
    return img


def _champion(store: Store, small_data: Path) -> int:
    from churn.training import train

    result = train(small_params(), store.client, store.uri, data_path=small_data, reports_dir=None)
    store.client.set_registered_model_alias("churn", "champion", str(result.version))
    return result.version


def test_runtime_image_serves_the_champion(
    image: Image,
    start,
    store: Store,
    small_data: Path,  # type: ignore[no-untyped-def]
) -> None:
    image.materialise("runtime")
    # Nothing is baked in: with an empty registry the service is alive but not ready.
    empty = start(image, "runtime", MLFLOW_TRACKING_URI=store.uri, CHURN_RELOAD_INTERVAL="0.5")
    deadline = time.monotonic() + 60
    code, body = empty.get("/ready")
    while "make pipeline" not in body.get("detail", "") and time.monotonic() < deadline:
        time.sleep(0.3)  # "starting": the first check of the registry is under way
        code, body = empty.get("/ready")
    assert code == 503 and "make pipeline" in body["detail"], body

    port = empty.url.rsplit(":", 1)[1]
    health = image.command("HEALTHCHECK", "runtime", int(port))
    assert subprocess.run(health, env=image.process_env(), timeout=30).returncode == 0

    version = _champion(store, small_data)
    wait_for_http(f"{empty.url}/ready", timeout=60, proc=empty.proc)
    code, body = empty.post("/predict", {"instances": [SAMPLE]})
    assert code == 200, body
    assert body["model"]["version"] == version
    assert 0.0 <= body["predictions"][0]["churn_probability"] <= 1.0


def test_baked_image_serves_without_the_source_registry(
    image: Image,
    start,
    store: Store,
    small_data: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    _champion(store, small_data)
    version = _champion(store, small_data)  # v2: the baked number must survive the copy
    image.build("baked", MODEL_VERSION=str(version), SOURCE_TRACKING_URI=store.uri)
    # Air-gapped: the source registry is gone; the image has everything.
    shutil.rmtree(store.path.parent / "mlartifacts")
    store.path.unlink()
    server = start(image, "baked")
    wait_for_http(f"{server.url}/ready", timeout=60, proc=server.proc)
    code, body = server.post("/predict", {"instances": [SAMPLE]})
    assert code == 200, body
    assert body["model"]["version"] == version
    code, model = server.get("/model")
    assert code == 200, model
    served = model["served"]
    assert served["uri"] == f"models:/churn/{version}" and served["metrics"]["auc"] > 0.7
    assert served["data_md5"] and served["aliases"] == ["champion"]


def test_pipeline_image_trains_and_promotes(
    image: Image,
    store: Store,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    pipe = image
    pipe.build("pipeline")
    argv = pipe.last("CMD", "pipeline").exec_form()
    # A smaller data set keeps the test quick; the command line is the image's.
    params = pipe.host("/app/params.yaml")
    params.write_text(params.read_text().replace("rows: 20000", "rows: 3000"))
    proc = subprocess.run(
        argv, cwd=pipe.host("/app"), env=pipe.process_env(MLFLOW_TRACKING_URI=store.uri),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PROMOTED: @champion -> v1 (cold start)" in proc.stdout
    assert store.aliases() == {"champion": 1}
