"""The peers `make bench-peers` measures us against: how each is installed, started, asked and read.

Each peer is a directory beside this file: a pinned `pyproject.toml` + `uv.lock` (its own
environment, `uv sync --frozen` into `<dir>/.venv`, never the project's .venv) and the glue a
user of that server writes (BentoML's service.py, LitServe's server.py, MLServer's
settings.json and model-settings.json). Every peer serves the same @champion with its batching
on; requests carry the same feature rows in the peer's own protocol.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from churn.procs import HOST, free_port

HERE = Path(__file__).resolve().parent
Rows = Sequence[dict[str, Any]]  # feature rows, as MLflow's dataframe_records


@dataclass(frozen=True)
class Peer:
    name: str  # its directory beside this file, and its key in the results
    title: str  # its column in the table
    batching: str  # how its batching is set (said under the table)
    ready_path: str
    predict_path: str
    body: Callable[[Rows], bytes]  # feature rows -> a request body in its protocol
    answer: Callable[[Any], list[float]]  # its parsed JSON answer -> one probability per row
    command: Callable[[Path, int, Path], list[str]]  # (its venv's bin, port, work dir) -> argv
    cwd_in_dir: bool = False  # started in its own directory (it imports its glue module)

    @property
    def directory(self) -> Path:
        return HERE / self.name

    def bin_dir(self) -> Path:
        return self.directory / ".venv" / "bin"


def install(
    peer: Peer, run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run
) -> str:
    """Create the peer's environment from its lock (`uv sync --frozen`; a no-op when it is
    already in sync). '' when done, else why not, in one line."""
    uv = shutil.which("uv")
    argv = [uv] if uv else [sys.executable, "-m", "uv"]
    # The peer's own .venv, whatever environment the bench itself runs in.
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    try:
        done = run(
            [*argv, "sync", "--frozen", "--quiet", "--project", str(peer.directory)],
            env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"uv sync failed: {exc}"
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
        return f"uv sync exited with {done.returncode}: {lines[-1].strip() if lines else '?'}"
    return ""


def records(rows: Rows) -> bytes:
    return orjson.dumps({"dataframe_records": list(rows)})


def predictions(answer: Any) -> list[float]:
    return [float(p) for p in answer["predictions"]]


# Open Inference Protocol (V2) datatypes of churn/schema.py's kinds
V2_TYPES = {"category": "BYTES", "flag": "INT64", "integer": "INT64", "number": "FP64"}


def v2_body(rows: Rows) -> bytes:
    """An Open Inference Protocol request whose inputs are the frame's columns (MLServer's
    pandas codec, content type "pd"): what MLServer's adaptive batcher merges."""
    from churn import schema

    kinds = {c.name: str(c.kind) for c in schema.FEATURES}
    inputs = [
        {
            "name": name,
            "shape": [len(rows)],
            "datatype": V2_TYPES[kinds[name]],
            "data": [row[name] for row in rows],
        }
        for name in schema.FEATURE_NAMES
    ]
    return orjson.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs})


def v2_answer(answer: Any) -> list[float]:
    return [float(p) for p in answer["outputs"][0]["data"]]


def mlserver_command(bin_dir: Path, port: int, work: Path) -> list[str]:
    # The model repository the bench lays out in work/ (settings + the champion beside them).
    return [str(bin_dir / "mlserver"), "start", str(work / "mlserver")]


def bentoml_command(bin_dir: Path, port: int, work: Path) -> list[str]:
    return [str(bin_dir / "bentoml"), "serve", "service:Churn", "--host", HOST, "--port", str(port)]


def litserve_command(bin_dir: Path, port: int, work: Path) -> list[str]:
    return [str(bin_dir / "python"), "server.py", str(port)]


def mlflow_command(bin_dir: Path, port: int, work: Path) -> list[str]:
    return [
        str(bin_dir / "mlflow"), "models", "serve", "-m", "models:/churn@champion",
        "--env-manager", "local", "-h", HOST, "-p", str(port),
    ]  # fmt: skip


PEERS = (
    Peer(
        "mlflow", "mlflow serve", "none (it has no batching)", "/ping", "/invocations",
        records, predictions, mlflow_command,
    ),
    Peer(
        "mlserver", "MLServer", "adaptive batching: up to 64 requests, 2 ms (model-settings.json)",
        "/v2/models/churn/ready", "/v2/models/churn/infer", v2_body, v2_answer, mlserver_command,
    ),
    Peer(
        "bentoml", "BentoML", "batchable=True, max_batch_size 1,000 rows (service.py)",
        "/readyz", "/predict", lambda rows: orjson.dumps({"data": list(rows)}),
        lambda answer: [float(p) for p in answer], bentoml_command, cwd_in_dir=True,
    ),
    Peer(
        "litserve", "LitServe", "max_batch_size 64 requests, batch_timeout 2 ms (server.py)",
        "/health", "/predict", records, predictions, litserve_command, cwd_in_dir=True,
    ),
)  # fmt: skip


def peer_env(
    peer: Peer, base: dict[str, str], work: Path, model_dir: Path, port: int
) -> dict[str, str]:
    """The peer's environment: its venv first on PATH (`mlflow models serve` execs uvicorn from
    PATH), the champion's directory for the glue, its ports, no telemetry."""
    env = {k: v for k, v in base.items() if k != "VIRTUAL_ENV"}
    env.update(
        PATH=os.pathsep.join([str(peer.bin_dir()), base.get("PATH", "")]),
        BENCH_MODEL_DIR=str(model_dir),
        BENTOML_HOME=str(work / "bentoml-home"),
        BENTOML_DO_NOT_TRACK="True",
        MLSERVER_HTTP_PORT=str(port),
        MLSERVER_GRPC_PORT=str(free_port()),
        MLSERVER_METRICS_PORT=str(free_port()),
    )
    return env


def lay_out(work: Path, model_dir: Path) -> None:
    """MLServer's model repository in work/: its settings beside the champion's files."""
    repo = work / "mlserver"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "churn").mkdir(parents=True)
    shutil.copy(HERE / "mlserver" / "settings.json", repo / "settings.json")
    shutil.copy(HERE / "mlserver" / "churn" / "model-settings.json", repo / "churn")
    shutil.copytree(model_dir, repo / "churn" / "champion")
