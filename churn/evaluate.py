"""The honest gate: champion and challenger re-scored on one fresh holdout, compared pairwise.

Logged metrics are comparable only if both runs were evaluated on the same rows. Once the data
changes month to month they are not, so promote.py (by default) loads both versions through
`mlflow.pyfunc`, scores them on the same holdout and gates on the paired difference: the
challenger must beat the champion by epsilon *and* the lower bound of a seeded paired bootstrap
95% interval of the difference must be above 0 (below 0 for log_loss).

The holdout, precisely: the rows train.py held out when it trained the challenger, i.e. the
data file the challenger's version is tagged with (`data_md5`, normally data/customers.parquet,
the newest snapshot) split again with the seed and test_size its run logged. The challenger
never trained on them by construction. The champion trained on an earlier file (an earlier
month: other rows), or on this same file with this same split; a champion trained on this file
with another split would have seen some of these rows, and re-evaluation refuses (exit 3).
Deriving it, rather than writing a second file in the prepare stage, keeps one source of data
bytes (DVC's) and works the same for the generator and for a real CSV source. `--holdout FILE`
takes any other held-out file instead (e.g. a labelled sample of the month after). Either way
the holdout is written as parquet and logged with the evaluation run, and its md5 is what the
promoted version is tagged with (`validated_on_md5`): anyone can download it and re-score.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn import data, schema, settings
from churn.errors import RegistryStateError, first_line
from churn.gate import Candidate, GateDecision, PairedDiff

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput

EVALUATION_EXPERIMENT = "churn-evaluations"
CONFIDENCE = 0.95
# Bootstrap weights are built in blocks of at most this many cells (resamples x rows): ~16 MB.
_BLOCK_CELLS = 2_000_000


class HoldoutUnavailable(RegistryStateError):
    """No holdout both models can be scored on fairly. `quiet`: nothing to say (no data lineage)."""

    def __init__(self, message: str, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


@dataclass(frozen=True)
class Holdout:
    frame: pd.DataFrame  # normalised rows (features and label)
    md5: str  # md5 of `path`, the parquet logged with the evaluation run
    path: Path
    source: str  # how it was built, one line
    origin: Path | None = None  # the file its rows come from (the data file, or --holdout)


@dataclass(frozen=True)
class Evaluation:
    """Both versions scored on one holdout; what promote.py gates on and logs."""

    holdout: Holdout
    metric: str
    threshold: float
    champion: Candidate
    challenger: Candidate
    paired: PairedDiff
    seed: int
    champion_run_id: str
    challenger_run_id: str
    champion_metrics: dict[str, float] = field(default_factory=dict)
    challenger_metrics: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Weighted metrics and the paired bootstrap: pure numpy, one row of weights per resample.


def bootstrap_weights(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of rows of multiplicities: row b says how often each of the n rows is in resample b.

    Same (n, resamples, seed), same weights, whatever the block size.
    """
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // max(n, 1))
    done = 0
    while done < resamples:
        b = min(block, resamples - done)
        draws = rng.integers(0, n, size=(b, n))
        flat = (draws + (np.arange(b) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


def _auc_scorer(y: np.ndarray, score: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Mann-Whitney AUC per row of weights (ties count one half). The scores are sorted once,
    here, not per block of weights: with 500,000 rows the sort was most of a bootstrap's time."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    y_sorted = y[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    tied = len(starts) < len(s)  # tied scores: one group per distinct score

    def auc(w: np.ndarray) -> np.ndarray:
        ws = np.take(w, order, axis=1)
        pos = ws * y_sorted
        neg = ws - pos
        if tied:
            pos = np.add.reduceat(pos, starts, axis=1)
            neg = np.add.reduceat(neg, starts, axis=1)
        below = np.cumsum(neg, axis=1)
        below -= neg  # negatives scored strictly lower than each group
        below += 0.5 * neg
        n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.einsum("ij,ij->i", pos, below) / (n_pos * n_neg))

    return auc


def _ratio_scorer(
    metric: str, y: np.ndarray, proba: np.ndarray, threshold: float
) -> Callable[[np.ndarray], np.ndarray]:
    predicted = (proba >= threshold).astype(np.float64)
    if metric == "accuracy":
        correct = (predicted == y).astype(np.float64)
        return lambda w: np.asarray(w @ correct / w.sum(axis=1))
    if metric not in ("precision", "recall", "f1"):
        raise ValueError(f"unknown metric {metric!r}")
    hits = predicted * y

    def ratio(w: np.ndarray) -> np.ndarray:
        tp = w @ hits
        with np.errstate(invalid="ignore", divide="ignore"):
            if metric == "precision":
                value = tp / (w @ predicted)
            elif metric == "recall":
                value = tp / (w @ y)
            else:
                value = 2 * tp / (w @ predicted + w @ y)
        return np.asarray(np.nan_to_num(value, nan=0.0))  # sklearn's zero_division=0

    return ratio


def metric_scorer(
    metric: str, y: np.ndarray, proba: np.ndarray, threshold: float
) -> Callable[[np.ndarray], np.ndarray]:
    """`metric` of these labels and probabilities as a function of a block of weights
    (resamples x n): what does not depend on the weights is computed once, here."""
    y = np.asarray(y, dtype=np.float64)
    proba = np.asarray(proba, dtype=np.float64)
    if metric == "auc":
        return _auc_scorer(y, proba)
    if metric == "log_loss":
        eps = np.finfo(np.float64).eps
        p = np.clip(proba, eps, 1 - eps)
        loss = -(y * np.log(p) + (1 - y) * np.log1p(-p))
        return lambda w: np.asarray(w @ loss / w.sum(axis=1))
    return _ratio_scorer(metric, y, proba, threshold)


def weighted_metric(
    metric: str, y: np.ndarray, proba: np.ndarray, w: np.ndarray, threshold: float
) -> np.ndarray:
    """`metric` under each row of weights `w` (resamples x n); all ones gives the plain metric
    (the same numbers as sklearn's, which train.py logs)."""
    return metric_scorer(metric, y, proba, threshold)(w)


def paired_bootstrap(
    metric: str,
    y: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    threshold: float = 0.5,
    resamples: int = 1000,
    seed: int = 42,
    confidence: float = CONFIDENCE,
) -> PairedDiff:
    """challenger - champion on all rows, and the percentile interval of that difference over
    `resamples` bootstrap resamples of the rows, each model scored on the *same* resample."""
    y = np.asarray(y)
    ones = np.ones((1, len(y)))
    diff = float(
        weighted_metric(metric, y, challenger, ones, threshold)[0]
        - weighted_metric(metric, y, champion, ones, threshold)[0]
    )
    new, old = (metric_scorer(metric, y, p, threshold) for p in (challenger, champion))
    diffs = np.concatenate([new(w) - old(w) for w in bootstrap_weights(len(y), resamples, seed)])
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.nanpercentile(diffs, [tail, 100.0 - tail])
    return PairedDiff(diff, float(low), float(high), resamples, len(y), confidence)


# ---------------------------------------------------------------------------------------------
# The holdout.


_Lineage = tuple[str | None, int | None, float | None, str]


def _lineage(client: MlflowClient, version: int) -> _Lineage:
    """(data_md5 tag, split seed, test_size, run id) of a version, as its training run logged."""
    mv = client.get_model_version(settings.MODEL_NAME, str(version))
    run = client.get_run(str(mv.run_id))
    p = run.data.params
    seed = int(p["seed"]) if "seed" in p else None
    test_size = float(p["split.test_size"]) if "split.test_size" in p else None
    return (mv.tags or {}).get("data_md5"), seed, test_size, str(mv.run_id)


def _read(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".csv":
        return data.load_source(str(path.resolve()), 0, 0, "", settings.ROOT)
    return data.read_parquet(path)


def build_holdout(
    client: MlflowClient,
    champion: int,
    challenger: int,
    work_dir: Path,
    data_path: Path = settings.DATA_FILE,
    holdout_path: Path | None = None,
) -> Holdout:
    """The rows to score both versions on (see the module docstring), written to work_dir.

    Raises HoldoutUnavailable when there is none that is fair to both.
    """
    from churn.provenance import file_md5

    chal = _lineage(client, challenger)
    champ = _lineage(client, champion)
    if holdout_path is not None:
        frame, source, origin = _given_holdout(holdout_path, (champion, champ), (challenger, chal))
    else:
        frame, source, origin = _held_out_split(data_path, (champion, champ), (challenger, chal))
    frame = frame.reset_index(drop=True)
    if frame[schema.LABEL_COLUMN].nunique() < 2:
        raise HoldoutUnavailable("the holdout has only one class: AUC is undefined on it")
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "holdout.parquet"
    data.write_parquet(frame, path)
    return Holdout(frame, file_md5(path), path, source, origin)


def _given_holdout(
    holdout_path: Path, champion: tuple[int, _Lineage], challenger: tuple[int, _Lineage]
) -> tuple[pd.DataFrame, str, Path]:
    """--holdout FILE: all its rows, if neither version was trained on it (frame, source,
    origin)."""
    from churn.provenance import file_md5

    if not holdout_path.is_file():
        raise HoldoutUnavailable(f"holdout file {holdout_path} not found")
    md5 = file_md5(holdout_path)
    for v, (trained_on, *_) in (champion, challenger):
        if md5 == trained_on:
            raise HoldoutUnavailable(
                f"{holdout_path} is the data v{v} was trained on: a holdout must be rows "
                "neither model trained on"
            )
    try:
        frame = _read(holdout_path)
    except (FileNotFoundError, data.DataValidationError) as exc:
        raise HoldoutUnavailable(f"holdout {holdout_path}: {exc}") from exc
    return frame, f"{holdout_path} (all rows, md5 {md5})", holdout_path


def _held_out_split(
    data_path: Path, champion: tuple[int, _Lineage], challenger: tuple[int, _Lineage]
) -> tuple[pd.DataFrame, str, Path]:
    """The rows the challenger was evaluated on at training, if the champion never saw them
    (frame, source, origin)."""
    from churn.provenance import file_md5

    (champ_v, (champ_md5, champ_seed, champ_test, _)) = champion
    (chal_v, (chal_md5, chal_seed, chal_test, _)) = challenger
    if chal_md5 is None or chal_seed is None or chal_test is None:
        raise HoldoutUnavailable(
            f"v{chal_v} records no training data (data_md5) or split", quiet=True
        )
    shown = _shown(data_path)
    if not data_path.is_file():
        raise HoldoutUnavailable(
            f"{shown} (the data v{chal_v} was trained on) is not here: "
            "dvc pull / dvc repro, or pass --holdout FILE"
        )
    md5 = file_md5(data_path)
    if md5 != chal_md5:
        raise HoldoutUnavailable(
            f"{shown} (md5 {md5}) is not the data v{chal_v} was trained on "
            f"(md5 {chal_md5}): dvc checkout that data, or pass --holdout FILE"
        )
    if champ_md5 == chal_md5 and (champ_seed, champ_test) != (chal_seed, chal_test):
        raise HoldoutUnavailable(
            f"v{champ_v} was trained on this same data with another split (seed "
            f"{champ_seed}, test_size {champ_test}), so it has seen some of v{chal_v}'s "
            "held-out rows: pass --holdout FILE, or --no-reevaluate"
        )
    from churn.training import split

    _, test = split(data.read_parquet(data_path), chal_test, chal_seed)
    source = (
        f"held-out split of {shown} (md5 {md5}; seed {chal_seed}, test_size {chal_test}), "
        f"the rows v{chal_v} was evaluated on"
    )
    return test, source, data_path


def _shown(path: Path) -> str:
    resolved = path.resolve()
    root = settings.ROOT
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


# ---------------------------------------------------------------------------------------------
# Scoring both versions.


def _predict(version: int, x: pd.DataFrame, alias: str) -> np.ndarray:
    from churn.loading import load_version

    uri = f"models:/{settings.MODEL_NAME}/{version}"
    try:
        model = load_version(settings.MODEL_NAME, version)
    except Exception as exc:
        from churn.registry import store_outage

        if store_outage(exc):  # the store is down (exit 4): not a reason to skip re-evaluation
            raise
        first = first_line(exc)
        # A challenger that cannot be loaded cannot be served either: never suggest skipping
        # the check that found it.
        what_next = (
            "register a loadable @challenger"
            if alias == settings.CHALLENGER
            else "use --no-reevaluate to gate on logged metrics"
        )
        raise RegistryStateError(
            f"could not load @{alias} v{version} ({uri}) to re-evaluate it: {first}; {what_next}"
        ) from exc
    return np.asarray(model.predict(x), dtype=np.float64).reshape(-1)


def reevaluate(
    client: MlflowClient,
    champion: int,
    challenger: int,
    holdout: Holdout,
    metric: str,
    threshold: float,
    resamples: int,
    seed: int,
) -> Evaluation:
    from churn.training import evaluate as all_metrics

    x, y = data.features(holdout.frame), data.labels(holdout.frame)
    p_champ = _predict(champion, x, settings.CHAMPION)
    p_chal = _predict(challenger, x, settings.CHALLENGER)
    champ_all = all_metrics(y, p_champ, threshold)
    chal_all = all_metrics(y, p_chal, threshold)
    paired = paired_bootstrap(metric, y, p_champ, p_chal, threshold, resamples, seed)
    return Evaluation(
        holdout=holdout,
        metric=metric,
        threshold=threshold,
        # sklearn's numbers (as train.py logs them) for the lines; equal to the weighted ones.
        champion=Candidate(champion, champ_all[metric]),
        challenger=Candidate(challenger, chal_all[metric]),
        paired=paired,
        seed=seed,
        champion_run_id=_lineage(client, champion)[3],
        challenger_run_id=_lineage(client, challenger)[3],
        champion_metrics=champ_all,
        challenger_metrics=chal_all,
    )


def log_evaluation(
    client: MlflowClient, uri: str, ev: Evaluation, decision: GateDecision, promoted: bool
) -> str:
    """One run in `churn-evaluations` linking both versions, the holdout and the interval."""
    from mlflow.entities import Metric, Param, RunTag

    from churn.describe import evaluation_run_name
    from churn.tracking import ensure_experiment

    exp = ensure_experiment(client, uri, EVALUATION_EXPERIMENT)
    name = evaluation_run_name(ev.challenger.version, ev.champion.version)
    run = client.create_run(exp, run_name=name)
    rid = run.info.run_id
    tags, params, metrics = _evaluation_record(ev, decision, promoted)
    now = int(time.time() * 1000)
    client.log_batch(
        rid,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    summary = {**params, **tags, **metrics, "gate_passed": decision.promote}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "evaluation.json").write_text(json.dumps(summary, indent=2) + "\n")
        client.log_artifact(rid, str(Path(tmp) / "evaluation.json"))
    # Both: the input (name, digest = holdout_md5, rows, schema) shows in the UI's Datasets;
    # the artifact is the file anyone can download and re-score.
    client.log_inputs(rid, datasets=[holdout_input(ev.holdout)])
    client.log_artifact(rid, str(ev.holdout.path))
    client.set_terminated(rid)
    return str(rid)


def _evaluation_record(
    ev: Evaluation, decision: GateDecision, promoted: bool
) -> tuple[dict[str, str], dict[str, Any], dict[str, float]]:
    """The evaluation run's tags, params and metrics."""
    champ, chal = ev.champion, ev.challenger
    outcome = "promoted" if promoted else ("would-promote" if decision.promote else "kept")
    tags = {
        "champion_version": str(champ.version),
        "challenger_version": str(chal.version),
        "champion_run_id": ev.champion_run_id,
        "challenger_run_id": ev.challenger_run_id,
        "holdout_md5": ev.holdout.md5,
        "holdout_source": ev.holdout.source,
        "decision": outcome,
        "mlflow.note.content": ev.holdout.source,
    }
    params = {
        "metric": ev.metric,
        "epsilon": decision.epsilon,
        "threshold": ev.threshold,
        "bootstrap_resamples": ev.paired.resamples,
        "bootstrap_seed": ev.seed,
        "confidence": ev.paired.confidence,
        "holdout_rows": ev.paired.rows,
        "champion_version": champ.version,
        "challenger_version": chal.version,
    }
    metrics = {f"champion.{k}": v for k, v in ev.champion_metrics.items()}
    metrics |= {f"challenger.{k}": v for k, v in ev.challenger_metrics.items()}
    metrics |= {"diff": ev.paired.diff, "ci_low": ev.paired.low, "ci_high": ev.paired.high}
    return tags, params, metrics


def holdout_input(holdout: Holdout) -> DatasetInput:
    """The holdout as an MLflow dataset input, context `evaluation`; its digest is the md5 the
    promoted version is tagged with (`validated_on_md5`), its source the file the rows come from."""
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import Dataset, DatasetInput, InputTag

    origin = (holdout.origin or holdout.path).resolve()
    with warnings.catch_warnings():
        # As in training: MLflow's note on two equivalent local sources, and on int columns.
        warnings.filterwarnings("ignore", message="The specified dataset source")
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        dataset = from_pandas(
            holdout.frame,
            source=str(origin),
            name=f"holdout of {origin.name}",
            targets=schema.LABEL_COLUMN,
            digest=holdout.md5,
        )
        entity = Dataset(**dataset.to_dict())  # (the schema is inferred here)
    return DatasetInput(entity, tags=[InputTag("mlflow.data.context", "evaluation")])
