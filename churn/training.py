"""Seeded training: split, fit, evaluate, log everything to MLflow, register a new version.

The same params and the same data give the same metrics and the same predictions; the run
records what is needed to rebuild it: params, the git commit (and whether the tree was dirty)
and the md5 DVC records for the data file.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.model_selection import train_test_split

from churn import data, describe, schema, settings
from churn.model import ChurnProbability, build, signature, trusted_types
from churn.provenance import file_md5, git_state
from churn.registry import set_challenger
from churn.settings import Params

if TYPE_CHECKING:
    from mlflow import MlflowClient

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    version: int
    metrics: dict[str, float]
    data_md5: str


def split(df: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = train_test_split(
        df, test_size=test_size, random_state=seed, stratify=df[schema.LABEL_COLUMN]
    )
    return train, test


def evaluate(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = (proba >= threshold).astype(int)
    return {
        "auc": float(skm.roc_auc_score(y_true, proba)),
        "f1": float(skm.f1_score(y_true, predicted, zero_division=0)),
        "precision": float(skm.precision_score(y_true, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y_true, predicted, zero_division=0)),
        "accuracy": float(skm.accuracy_score(y_true, predicted)),
        "log_loss": float(skm.log_loss(y_true, proba, labels=[0, 1])),
    }


def write_reports(
    reports_dir: Path,
    metrics: dict[str, float],
    y_true: np.ndarray,
    proba: np.ndarray,
    threshold: float,
) -> None:
    """The files dvc.yaml declares as metrics and plots (`dvc metrics show`, `dvc plots show`)."""
    plots = reports_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    rounded = {k: round(v, 6) for k, v in metrics.items()}
    (reports_dir / "metrics.json").write_text(json.dumps(rounded, indent=2, sort_keys=True) + "\n")
    fpr, tpr, _ = skm.roc_curve(y_true, proba)
    pd.DataFrame({"fpr": fpr.round(6), "tpr": tpr.round(6)}).to_csv(plots / "roc.csv", index=False)
    labels = np.array(["No", "Yes"])
    pd.DataFrame(
        {"actual": labels[y_true], "predicted": labels[(proba >= threshold).astype(int)]}
    ).to_csv(plots / "confusion.csv", index=False)


def _figures(y_true: np.ndarray, proba: np.ndarray, threshold: float, auc: float) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    roc_fig, ax = plt.subplots(figsize=(5, 5))
    # Built from the curve, not from_predictions: that appends its own 2-decimal "(AUC = ...)"
    # to the name, and the legend would show the AUC twice.
    fpr, tpr, _ = skm.roc_curve(y_true, proba)
    skm.RocCurveDisplay(fpr=fpr, tpr=tpr, name=f"churn (AUC {auc:.3f})").plot(ax=ax)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_title("ROC on the held-out split")
    cm_fig, ax = plt.subplots(figsize=(5, 4.5))
    skm.ConfusionMatrixDisplay.from_predictions(
        y_true,
        (proba >= threshold).astype(int),
        display_labels=["No", "Yes"],
        ax=ax,
        colorbar=False,
    )
    ax.set_title(f"Confusion matrix at threshold {threshold}")
    return {"plots/roc.png": roc_fig, "plots/confusion.png": cm_fig}


def _pip_requirements() -> list[str]:
    # What the model needs to load and predict, pinned to what trained it; not the whole project.
    packages = ["mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy"]
    return [f"{p}=={metadata.version(p)}" for p in packages]


def _log_model(model: ChurnProbability, model_type: str, example: pd.DataFrame) -> Any:
    import mlflow.sklearn

    return mlflow.sklearn.log_model(
        model,
        name="model",
        serialization_format="skops",
        skops_trusted_types=trusted_types(model_type),
        signature=signature(),
        input_example=example,
        # The model's own code travels with it, so `mlflow models serve` and other consumers
        # can load it without this repository installed.
        code_paths=[str(Path(__file__).resolve().parent)],
        pip_requirements=_pip_requirements(),
        registered_model_name=settings.MODEL_NAME,
    )


@dataclass(frozen=True)
class _Fit:
    """A model fitted on the training split, and its scores on the held-out one."""

    model: ChurnProbability
    x_test: pd.DataFrame
    y_test: np.ndarray
    proba: np.ndarray
    scores: dict[str, float]


def _fit(params: Params, df: pd.DataFrame, progress: Progress) -> _Fit:
    train_df, test_df = split(df, params.test_size, params.seed)
    x_train, y_train = data.features(train_df), data.labels(train_df)
    x_test, y_test = data.features(test_df), data.labels(test_df)

    progress(f"fitting {params.model_type} on {len(train_df):,} rows (seed {params.seed})")
    model: ChurnProbability = build(params.model_type, params.model_params, params.seed)
    model.fit(x_train, y_train)
    proba = model.predict(x_test)
    scores = evaluate(y_test, proba, params.threshold)
    progress("held-out " + "  ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    return _Fit(model, x_test, y_test, proba, scores)


def _tags(
    params: Params, data_path: Path, data_md5: str, rows: int, root: Path
) -> tuple[dict[str, str], dict[str, str]]:
    """The model version's tags, and the run's: those plus the note and the git commit."""
    commit, dirty = git_state(root)
    training_data = (
        f"{data_path.name} (generator, snapshot {params.data.snapshot}, seed {params.seed})"
        if params.data.source == "generator"
        else f"{data_path.name} (from {params.data.source})"
    )
    tags = {"data_md5": data_md5, "training_data": training_data}
    run_tags = dict(tags)
    run_tags["mlflow.note.content"] = describe.training_run_note(
        params.model_type, training_data, data_md5, rows
    )
    if commit is not None:
        # Set explicitly: MLflow only infers it for some entry points, not under `dvc repro`.
        run_tags["mlflow.source.git.commit"] = commit
        run_tags["git_dirty"] = str(dirty).lower()
    return tags, run_tags


def _log_dataset(df: pd.DataFrame, data_path: Path, data_md5: str) -> None:
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    with warnings.catch_warnings():
        # MLflow registers two equivalent local-file source types and warns it picked one.
        warnings.filterwarnings("ignore", message="The specified dataset source")
        # The dataset profile infers a schema; our int columns are never missing.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        # The digest is DVC's md5 of the file (the `data_md5` tag), not MLflow's hash of
        # the frame: the UI then names the same snapshot `dvc` and `churn lineage` do.
        dataset = from_pandas(
            df,
            source=str(data_path),
            name=data_path.name,
            targets=schema.LABEL_COLUMN,
            digest=data_md5,
        )
        mlflow.log_input(dataset, context="training")  # (the schema is inferred here)


def _log_figures(fit: _Fit, threshold: float) -> None:
    import mlflow
    from matplotlib import pyplot as plt

    for path, fig in _figures(fit.y_test, fit.proba, threshold, fit.scores["auc"]).items():
        mlflow.log_figure(fig, path)
        plt.close(fig)


def _log_model_quietly(fit: _Fit, model_type: str) -> Any:
    example = fit.x_test.head(5)
    with warnings.catch_warnings():
        # MLflow's type-hint check on our sklearn wrapper: the signature (from the schema)
        # is what validates inputs, so the "Any type hint" notice does not apply.
        warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType")
        # The input example's schema is inferred too (the signature is not); same reason.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        return _log_model(fit.model, model_type, example)


def train(
    params: Params,
    client: MlflowClient,
    tracking_uri: str,
    data_path: Path = settings.DATA_FILE,
    reports_dir: Path | None = settings.REPORTS_DIR,
    root: Path = settings.ROOT,
    progress: Progress = lambda _msg: None,
) -> TrainResult:
    import mlflow
    import mlflow.sklearn

    from churn.tracking import ensure_experiment

    # The fluent API (start_run, log_model's registration) follows the process-wide URI;
    # pin it to the store we were given, whatever an earlier caller set.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)

    progress(f"reading {data_path}")
    df = data.read_parquet(data_path)
    data.check_trainable(df)  # before anything is fitted, logged or registered
    data_md5 = file_md5(data_path)
    fit = _fit(params, df, progress)
    if reports_dir is not None:
        write_reports(reports_dir, fit.scores, fit.y_test, fit.proba, params.threshold)
    tags, run_tags = _tags(params, data_path, data_md5, len(df), root)

    experiment_id = ensure_experiment(client, tracking_uri)
    progress(f"logging run and model to {tracking_uri}")
    run_name = describe.training_run_name(params.model_type, data_md5, params.seed)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=run_tags) as run:
        mlflow.log_params(params.flat())
        mlflow.log_metrics(fit.scores)
        _log_dataset(df, data_path, data_md5)
        _log_figures(fit, params.threshold)
        info = _log_model_quietly(fit, params.model_type)
    version = int(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(settings.MODEL_NAME, str(version), key, value)
    describe.describe_version(client, version, run.info.run_id)
    # On the ledger like every alias move: who, when, which commit, the run and its metric.
    set_challenger(client, version, tracking_uri, run.info.run_id, params.gate.metric)
    return TrainResult(run.info.run_id, version, fit.scores, data_md5)
