"""Names, paths and the typed view of params.yaml. Nothing here touches the network or the disk
at import time; callers ask for what they need."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MODEL_NAME = "churn"
EXPERIMENT_NAME = "churn"
CHAMPION = "champion"
CHALLENGER = "challenger"
PREV_CHAMPION = "prev-champion"
ALIASES = (CHAMPION, CHALLENGER, PREV_CHAMPION)

ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = ROOT / "params.yaml"
DATA_FILE = ROOT / "data" / "customers.parquet"
DVC_LOCK = ROOT / "dvc.lock"
REPORTS_DIR = ROOT / "reports"

MODEL_TYPES = ("logistic_regression", "random_forest", "hist_gradient_boosting")
# Metrics train.py logs; the gate may use any of them.
METRICS = ("auc", "f1", "precision", "recall", "accuracy", "log_loss")
LOWER_IS_BETTER = frozenset({"log_loss"})


class ParamsError(ValueError):
    """params.yaml is missing or holds a value we cannot use."""


def default_tracking_uri(root: Path = ROOT) -> str:
    """Embedded SQLite store in the repository, so nothing needs a server."""
    return f"sqlite:///{root / 'mlflow.db'}"


def tracking_uri(explicit: str | None = None) -> str:
    """--tracking-uri beats MLFLOW_TRACKING_URI beats the embedded default."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


@dataclass(frozen=True)
class DataParams:
    source: str = "generator"
    rows: int = 20_000
    snapshot: str = "2026-07"


@dataclass(frozen=True)
class GateParams:
    metric: str = "auc"
    epsilon: float = 0.002
    # promote.py --reevaluate: paired bootstrap resamples of the holdout (seeded by `seed`).
    bootstrap_resamples: int = 1000


@dataclass(frozen=True)
class DriftParams:
    """`python -m churn drift`: PSI thresholds (per feature and on the champion's predictions)."""

    psi_warn: float = 0.1
    psi_alert: float = 0.25
    bins: int = 10


@dataclass(frozen=True)
class Params:
    seed: int = 42
    data: DataParams = field(default_factory=DataParams)
    test_size: float = 0.2
    model_type: str = "logistic_regression"
    model_params: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5
    gate: GateParams = field(default_factory=GateParams)
    drift: DriftParams = field(default_factory=DriftParams)

    def flat(self) -> dict[str, Any]:
        """What train.py logs as MLflow params (dotted names, as `dvc params diff` shows them)."""
        out: dict[str, Any] = {
            "seed": self.seed,
            "data.source": self.data.source,
            "data.rows": self.data.rows,
            "data.snapshot": self.data.snapshot,
            "split.test_size": self.test_size,
            "model.type": self.model_type,
            "threshold": self.threshold,
        }
        out.update({f"model.{self.model_type}.{k}": v for k, v in self.model_params.items()})
        return out


def _section(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ParamsError(f"params.yaml: '{key}' must be a mapping, got {value!r}")
    return value


def load_params(path: Path = PARAMS_FILE) -> Params:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run from the repository root") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    data = _section(raw, "data")
    split = _section(raw, "split")
    model = _section(raw, "model")
    gate = _section(raw, "gate")
    drift = _section(raw, "drift")
    model_type = str(model.get("type", "logistic_regression"))
    if model_type not in MODEL_TYPES:
        raise ParamsError(
            f"params.yaml: model.type '{model_type}' is not one of {', '.join(MODEL_TYPES)}"
        )
    metric = str(gate.get("metric", "auc"))
    if metric not in METRICS:
        raise ParamsError(f"params.yaml: gate.metric '{metric}' is not one of {', '.join(METRICS)}")
    try:
        params = Params(
            seed=int(raw.get("seed", 42)),
            data=DataParams(
                source=str(data.get("source", "generator")),
                rows=int(data.get("rows", 20_000)),
                snapshot=str(data.get("snapshot", "2026-07")),
            ),
            test_size=float(split.get("test_size", 0.2)),
            model_type=model_type,
            model_params=dict(_section(model, model_type)),
            threshold=float(raw.get("threshold", 0.5)),
            gate=GateParams(
                metric=metric,
                epsilon=float(gate.get("epsilon", 0.002)),
                bootstrap_resamples=int(gate.get("bootstrap_resamples", 1000)),
            ),
            drift=DriftParams(
                psi_warn=float(drift.get("psi_warn", 0.1)),
                psi_alert=float(drift.get("psi_alert", 0.25)),
                bins=int(drift.get("bins", 10)),
            ),
        )
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"params.yaml: {exc}") from None
    if not 0.0 < params.test_size < 1.0:
        raise ParamsError(f"params.yaml: split.test_size must be in (0, 1), got {params.test_size}")
    if not 0.0 < params.threshold < 1.0:
        raise ParamsError(f"params.yaml: threshold must be in (0, 1), got {params.threshold}")
    if params.gate.bootstrap_resamples < 100:
        raise ParamsError(
            "params.yaml: gate.bootstrap_resamples must be at least 100, "
            f"got {params.gate.bootstrap_resamples}"
        )
    if not 0.0 < params.drift.psi_warn <= params.drift.psi_alert:
        raise ParamsError(
            "params.yaml: drift needs 0 < psi_warn <= psi_alert, got "
            f"psi_warn={params.drift.psi_warn}, psi_alert={params.drift.psi_alert}"
        )
    if not 2 <= params.drift.bins <= 100:
        raise ParamsError(f"params.yaml: drift.bins must be in 2..100, got {params.drift.bins}")
    if params.data.rows < 100:
        raise ParamsError(f"params.yaml: data.rows must be at least 100, got {params.data.rows}")
    return params


_SNAPSHOT_LINE = re.compile(
    r"""^(?P<head>\s+snapshot:\s*)(?P<q>["']?)(?P<value>[^"'#\s]*)(?P=q)(?P<tail>.*)$"""
)


def set_data_snapshot(snapshot: str, path: Path = PARAMS_FILE) -> str:
    """Set `data.snapshot` in params.yaml in place (comments and layout kept); returns the old one.

    A line edit rather than a YAML dump, so the file's comments survive; the result is re-read
    and checked to differ from the original in that one key only.
    """
    text = path.read_text()
    before = yaml.safe_load(text) or {}
    lines = text.splitlines(keepends=True)
    in_data, done = False, False
    for i, line in enumerate(lines):
        if line.strip() and not line[0].isspace() and not line.lstrip().startswith("#"):
            in_data = line.split("#")[0].strip() == "data:"
            continue
        match = _SNAPSHOT_LINE.match(line.rstrip("\n")) if in_data else None
        if match and not done:
            q = match["q"] or '"'
            newline = "\n" if line.endswith("\n") else ""
            lines[i] = f"{match['head']}{q}{snapshot}{q}{match['tail']}{newline}"
            done = True
    if not done:
        raise ParamsError(f"{path}: no data.snapshot line to update; add `snapshot:` under data:")
    new_text = "".join(lines)
    after = yaml.safe_load(new_text)
    expected = dict(before, data=dict(before.get("data", {}), snapshot=snapshot))
    if after != expected:
        raise ParamsError(f"{path}: could not update data.snapshot safely; edit it by hand")
    partial = path.with_name(path.name + ".partial")
    partial.write_text(new_text)
    os.replace(partial, path)
    return str(before.get("data", {}).get("snapshot", ""))
