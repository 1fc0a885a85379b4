"""Drift between two samples of customers: per feature, and in the champion's predictions.

The measure is the Population Stability Index, PSI = sum over bins (c - r) * ln(c / r), with r and
c the shares of the reference and current samples in each bin. Numeric features use the
reference's quantiles as bin edges (so every bin holds ~1/bins of the reference; missing values get
a bin of their own); categorical ones use the schema's categories; the prediction PSI bins the
champion's P(churn) on the reference by its quantiles. Empty bins are floored at 1e-4 so an unseen
value shows as a large but finite PSI. Common reading: < 0.1 stable, 0.1-0.25 moderate shift,
>= 0.25 a shift worth retraining for; the thresholds live in params.yaml (`drift`).

PSI, not a test's p-value: with thousands of rows every difference is "significant", while PSI
measures how much the population moved, and the same thresholds fit every feature.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn import data, profile, schema, settings
from churn.errors import UsageError
from churn.figures import png_base64
from churn.settings import DriftParams

if TYPE_CHECKING:
    from mlflow import MlflowClient

DRIFT_EXPERIMENT = "churn-drift"
PREDICTION = "prediction"
_FLOOR = 1e-4
_SNAPSHOT = re.compile(r"\d{4}-\d{2}")
LEVELS = ("ok", "warn", "alert")
CHAMPION_REFERENCE = "champion"


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


@dataclass(frozen=True)
class Drift:
    name: str
    kind: str  # numeric | categorical | prediction
    psi: float
    level: str  # ok | warn | alert
    reference: str  # a short summary of the reference sample, e.g. "mean 64.8" or "DSL 34%"
    current: str
    bins: list[str]
    reference_share: list[float]
    current_share: list[float]


@dataclass(frozen=True)
class Report:
    reference: str
    current: str
    reference_rows: int
    current_rows: int
    thresholds: DriftParams
    features: list[Drift]
    prediction: Drift | None
    champion_version: int | None

    @property
    def all(self) -> list[Drift]:
        return self.features + ([self.prediction] if self.prediction else [])

    @property
    def level(self) -> str:
        return max((d.level for d in self.all), key=LEVELS.index, default="ok")

    def counts(self) -> dict[str, int]:
        return {lv: sum(d.level == lv for d in self.all) for lv in LEVELS}

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "current": self.current,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "thresholds": self.thresholds.model_dump(),
            "level": self.level,
            "champion_version": self.champion_version,
            "features": [asdict(d) for d in self.features],
            "prediction": asdict(self.prediction) if self.prediction else None,
        }


# ---------------------------------------------------------------------------------------------
# PSI


def psi(reference_share: np.ndarray, current_share: np.ndarray) -> float:
    r = np.maximum(np.asarray(reference_share, dtype=np.float64), _FLOOR)
    c = np.maximum(np.asarray(current_share, dtype=np.float64), _FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def _level(value: float, t: DriftParams) -> str:
    return "alert" if value >= t.psi_alert else "warn" if value >= t.psi_warn else "ok"


def _shares(codes: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(codes, minlength=k).astype(np.float64) / max(len(codes), 1)


def numeric_drift(
    name: str, ref: np.ndarray, cur: np.ndarray, t: DriftParams, kind: str = "numeric"
) -> Drift:
    ref = np.asarray(ref, dtype=np.float64)
    cur = np.asarray(cur, dtype=np.float64)
    finite = ref[~np.isnan(ref)]
    inner = np.linspace(0.0, 1.0, t.bins + 1)[1:-1]
    edges = np.unique(np.quantile(finite, inner)) if len(finite) else np.array([])
    k = len(edges) + 2  # len(edges) + 1 intervals, then one bin for missing values

    def codes(x: np.ndarray) -> np.ndarray:
        out = np.searchsorted(edges, x, side="right")
        return np.where(np.isnan(x), k - 1, out)

    r, c = _shares(codes(ref), k), _shares(codes(cur), k)
    labels = [f"< {edges[0]:.4g}"] if len(edges) else ["all"]
    labels += [f"[{lo:.4g}, {hi:.4g})" for lo, hi in itertools.pairwise(edges)]
    labels += [f">= {edges[-1]:.4g}"] if len(edges) else []
    labels.append("missing")
    if r[-1] == 0 and c[-1] == 0:  # no missing values on either side: drop the empty bin
        r, c, labels = r[:-1], c[:-1], labels[:-1]
    value = psi(r, c)

    def mean(x: np.ndarray) -> str:
        return f"mean {np.nanmean(x):.4g}" if np.isfinite(x).any() else "mean -"

    return Drift(
        name, kind, value, _level(value, t), mean(ref), mean(cur), labels, r.tolist(), c.tolist()
    )


def categorical_drift(
    name: str, ref: pd.Series, cur: pd.Series, categories: list[str], t: DriftParams
) -> Drift:
    index = {cat: i for i, cat in enumerate(categories)}
    k = len(categories) + 1  # last: a value outside the schema (only from unvalidated input)

    def codes(x: pd.Series) -> np.ndarray:
        return np.array([index.get(v, k - 1) for v in x.astype(str)], dtype=np.int64)

    r, c = _shares(codes(ref), k), _shares(codes(cur), k)
    return _categorical(name, r, c, [*categories, "other"], t)


def _categorical(
    name: str, r: np.ndarray, c: np.ndarray, labels: list[str], t: DriftParams
) -> Drift:
    """Drift of shares `r` -> `c` over `labels`, the last being "other" (dropped when empty)."""
    if r[-1] == 0 and c[-1] == 0:
        r, c, labels = r[:-1], c[:-1], labels[:-1]
    value = psi(r, c)
    moved = int(np.argmax(np.abs(c - r)))  # the category whose share moved most
    return Drift(
        name,
        "categorical",
        value,
        _level(value, t),
        f"{labels[moved]} {r[moved]:.1%}",
        f"{labels[moved]} {c[moved]:.1%}",
        labels,
        r.tolist(),
        c.tolist(),
    )


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, t: DriftParams) -> list[Drift]:
    out: list[Drift] = []
    for col in schema.FEATURES:
        if col.kind is schema.Kind.CATEGORY:
            cats = list(col.categories)
            out.append(categorical_drift(col.name, reference[col.name], current[col.name], cats, t))
        elif col.kind is schema.Kind.FLAG:
            cats = ["0", "1"]
            out.append(categorical_drift(col.name, reference[col.name], current[col.name], cats, t))
        else:
            ref, cur = reference[col.name].to_numpy(), current[col.name].to_numpy()
            out.append(numeric_drift(col.name, ref, cur, t))
    return out


# ---------------------------------------------------------------------------------------------
# From traffic profiles (what the service records: counts on a fixed grid, no rows)


def _share(counts: np.ndarray) -> np.ndarray:
    return counts.astype(np.float64) / max(int(counts.sum()), 1)


def _approx_mean(grid: profile.Grid, counts: np.ndarray) -> str:
    """Mean from bin midpoints (the grid's 1% bins make this close), ignoring missing values."""
    mids = grid.midpoints()
    seen = counts[:-1]
    total = int(seen.sum())
    return f"mean {float(np.dot(mids, seen)) / total:.4g}" if total else "mean -"


def grouped_numeric_drift(
    grid: profile.Grid, ref: np.ndarray, cur: np.ndarray, t: DriftParams, kind: str = "numeric"
) -> Drift:
    """PSI over groups of adjacent fine bins holding ~1/bins of the reference each."""
    r_fine, c_fine = ref[:-1], cur[:-1]  # the last bin is "missing"
    total = int(r_fine.sum())
    if total:
        cum = np.cumsum(r_fine) / total
        targets = np.linspace(0.0, 1.0, t.bins + 1)[1:-1]
        # Like quantile edges with side="right": the bin holding a quantile starts a group.
        cuts = np.searchsorted(cum, targets, side="left")
        starts = np.unique(np.concatenate([[0], cuts[cuts < len(r_fine)]]))
    else:
        starts = np.array([0])
    r = np.concatenate([np.add.reduceat(r_fine, starts), [ref[-1]]])
    c = np.concatenate([np.add.reduceat(c_fine, starts), [cur[-1]]])
    e = grid.edges
    ends = [*starts[1:].tolist(), len(r_fine)]
    labels = []
    for s, end in zip(starts.tolist(), ends, strict=True):
        lo = f"{e[s - 1]:.4g}" if s > 0 else None
        hi = f"{e[end - 1]:.4g}" if end - 1 < len(e) else None
        labels.append(f"[{lo}, {hi})" if lo and hi else f"< {hi}" if hi else f">= {lo}")
    labels.append("missing")
    rs, cs = _share(r), _share(c)
    if r[-1] == 0 and c[-1] == 0:
        rs, cs, labels = rs[:-1], cs[:-1], labels[:-1]
    value = psi(rs, cs)
    return Drift(
        grid.name,
        kind,
        value,
        _level(value, t),
        _approx_mean(grid, ref),
        _approx_mean(grid, cur),
        labels,
        rs.tolist(),
        cs.tolist(),
    )


def profile_report(
    reference: profile.Profile,
    current: profile.Profile,
    t: DriftParams,
    reference_name: str,
    current_name: str,
    champion_version: int | None = None,
) -> Report:
    """Drift between two traffic profiles (e.g. training data vs what the service scored)."""
    features: list[Drift] = []
    for name, grid in profile.GRIDS.items():
        ref, cur = reference.counts[name], current.counts[name]
        if grid.kind == "categorical":
            features.append(_categorical(name, _share(ref), _share(cur), grid.bin_labels(), t))
        else:
            features.append(grouped_numeric_drift(grid, ref, cur, t))
    prediction = None
    if reference.predictions and current.predictions:
        prediction = grouped_numeric_drift(
            profile.PREDICTION_GRID,
            reference.counts[profile.PREDICTION],
            current.counts[profile.PREDICTION],
            t,
            kind="prediction",
        )
    return Report(
        reference_name,
        current_name,
        reference.rows,
        current.rows,
        t,
        features,
        prediction,
        champion_version,
    )


def fetch_profile(url: str, timeout: float = 10.0) -> profile.Profile:
    """GET a running service's traffic profile (GET /monitoring/profile)."""
    import httpx

    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise UsageError(f"{url}: the service did not answer ({type(exc).__name__})") from exc
    if response.status_code != 200:
        raise UsageError(f"{url}: HTTP {response.status_code}, expected a traffic profile")
    try:
        return profile.Profile.from_json(response.json())
    except ValueError as exc:
        raise UsageError(f"{url}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Inputs


def load_sample(spec: str, rows: int, seed: int, root: Path = settings.ROOT) -> pd.DataFrame:
    """A generator month (YYYY-MM, with params.yaml's rows and seed) or a parquet/CSV path."""
    if _SNAPSHOT.fullmatch(spec):
        try:
            return data.normalise(data.generate(rows=rows, seed=seed, snapshot=spec))
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    path = Path(spec) if Path(spec).is_absolute() else root / spec
    try:
        if path.suffix.lower() == ".parquet":
            return data.read_parquet(path)
        if path.suffix.lower() == ".csv":
            return data.load_source(str(path), rows, seed, spec, root)
    except data.DataFileError as exc:  # its message names the file
        raise UsageError(str(exc)) from exc
    except (FileNotFoundError, data.DataValidationError) as exc:
        raise UsageError(f"{spec}: {exc}") from exc
    raise UsageError(
        f"'{spec}' is neither a month (YYYY-MM, generated) nor a .parquet or .csv file"
    )


def training_sample(
    client: MlflowClient, version: int, root: Path = settings.ROOT
) -> tuple[pd.DataFrame, str]:
    """Rebuild the data set `version` was trained on, from its run's params (source, rows,
    seed, snapshot): the generator is deterministic, and a CSV source is read again."""
    from churn.errors import RegistryStateError

    mv = client.get_model_version(settings.MODEL_NAME, str(version))
    params = client.get_run(mv.run_id).data.params if mv.run_id else {}
    source = params.get("data.source")
    try:
        rows, seed = int(params["data.rows"]), int(params["seed"])
        snapshot = params["data.snapshot"]
    except (KeyError, ValueError):
        source = None
    if source is None:
        raise RegistryStateError(
            f"the run of {settings.MODEL_NAME} v{version} records no data.source/rows/seed/"
            "snapshot params, so its training data cannot be rebuilt: pass --reference "
            "<month|file>"
        )
    try:
        frame = data.load_source(source, rows, seed, snapshot, root)
    except (FileNotFoundError, data.DataValidationError, ValueError) as exc:
        raise RegistryStateError(f"training data of v{version} ({source}): {exc}") from exc
    what = (
        f"{snapshot} (generator, {rows:,} rows, seed {seed})" if source == "generator" else source
    )
    return frame, f"training data of v{version}: {what}"


def describe(spec: str, rows: int, seed: int) -> str:
    if _SNAPSHOT.fullmatch(spec):
        return f"{spec} (generator, {rows:,} rows, seed {seed})"
    return spec


# ---------------------------------------------------------------------------------------------
# The report


def build_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    t: DriftParams,
    reference_name: str,
    current_name: str,
    predict: Any = None,
    champion_version: int | None = None,
) -> Report:
    """`predict`: features -> P(churn) (the champion), or None to skip prediction drift."""
    features = feature_drift(reference, current, t)
    prediction = None
    if predict is not None:
        p_ref = np.asarray(predict(data.features(reference)), dtype=np.float64).reshape(-1)
        p_cur = np.asarray(predict(data.features(current)), dtype=np.float64).reshape(-1)
        prediction = numeric_drift(PREDICTION, p_ref, p_cur, t, kind="prediction")
    return Report(
        reference_name,
        current_name,
        len(reference),
        len(current),
        t,
        features,
        prediction,
        champion_version,
    )


def format_table(report: Report) -> list[str]:
    t = report.thresholds
    lines = [
        f"reference: {report.reference}  ->  current: {report.current}",
        f"{'feature':<18}  {'kind':<11}  {'psi':>7}  {'level':<5}  {'reference':<26}  current",
    ]
    for d in sorted(report.all, key=lambda d: -d.psi):
        lines.append(
            f"{d.name:<18}  {d.kind:<11}  {d.psi:>7.4f}  {d.level:<5}  {d.reference:<26}  "
            f"{d.current}"
        )
    n = report.counts()
    pred = (
        f"prediction psi {report.prediction.psi:.4f} (champion v{report.champion_version})"
        if report.prediction
        else "prediction drift skipped (no champion)"
    )
    lines.append(
        f"DRIFT {report.level.upper()}: {n['alert']} alert, {n['warn']} warn "
        f"(psi_warn {t.psi_warn:g}, psi_alert {t.psi_alert:g}); {pred}"
    )
    return lines


def _figure(d: Drift) -> str:
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 2.6), dpi=80)
    x = np.arange(len(d.bins))
    ax.bar(x - 0.2, d.reference_share, width=0.4, label="reference", color="#4c72b0")
    ax.bar(x + 0.2, d.current_share, width=0.4, label="current", color="#dd8452")
    ax.set_xticks(x, d.bins, rotation=30 if len(d.bins) > 4 else 0, ha="right", fontsize=7)
    ax.set_ylabel("share")
    ax.set_title(f"{d.name}: PSI {d.psi:.3f} ({d.level})", fontsize=9)
    ax.legend(fontsize=7)
    return png_base64(fig)


def render_html(report: Report) -> str:
    import matplotlib

    matplotlib.use("Agg")
    esc = html.escape
    colours = {"ok": "#e8f5e9", "warn": "#fff8e1", "alert": "#ffebee"}
    rows = "".join(
        f'<tr style="background:{colours[d.level]}"><td>{esc(d.name)}</td><td>{d.kind}</td>'
        f"<td>{d.psi:.4f}</td><td>{d.level}</td><td>{esc(d.reference)}</td>"
        f"<td>{esc(d.current)}</td></tr>"
        for d in sorted(report.all, key=lambda d: -d.psi)
    )
    plots = "".join(
        f'<figure><img alt="{esc(d.name)}" src="data:image/png;base64,{_figure(d)}"></figure>'
        for d in sorted(report.all, key=lambda d: -d.psi)
    )
    t = report.thresholds
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>churn drift: {esc(report.current)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;font-size:13px}}
figure{{display:inline-block;margin:4px}}
</style></head><body>
<h1>Drift: {esc(report.level.upper())}</h1>
<p>reference <b>{esc(report.reference)}</b> ({report.reference_rows:,} rows) &rarr;
current <b>{esc(report.current)}</b> ({report.current_rows:,} rows).
PSI thresholds: warn {t.psi_warn:g}, alert {t.psi_alert:g}; {t.bins} quantile bins.
Champion: {f"v{report.champion_version}" if report.champion_version else "none"}.</p>
<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>level</th><th>reference</th>
<th>current</th></tr>{rows}</table>
<h2>Distributions</h2>{plots}
</body></html>
"""


def write_outputs(report: Report, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "drift.json", out_dir / "drift.html"
    json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    html_path.write_text(render_html(report))
    return json_path, html_path


def _metric_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


def log_report(client: MlflowClient, uri: str, report: Report, files: list[Path]) -> str:
    """One run in `churn-drift`: a psi.<feature> metric each, the thresholds, the two files."""
    import time

    from mlflow.entities import Metric, Param, RunTag

    from churn.tracking import ensure_experiment

    exp = ensure_experiment(client, uri, DRIFT_EXPERIMENT)
    run = client.create_run(exp, run_name=f"{report.reference} -> {report.current}")
    rid = run.info.run_id
    now = int(time.time() * 1000)
    n = report.counts()
    metrics = {f"psi.{_metric_name(d.name)}": d.psi for d in report.all}
    metrics |= {
        "psi_max": max((d.psi for d in report.all), default=0.0),
        "features_alert": float(n["alert"]),
        "features_warn": float(n["warn"]),
    }
    if report.prediction is not None:
        metrics["prediction_psi"] = report.prediction.psi
    params = {
        "reference": report.reference,
        "current": report.current,
        "reference_rows": report.reference_rows,
        "current_rows": report.current_rows,
        "psi_warn": report.thresholds.psi_warn,
        "psi_alert": report.thresholds.psi_alert,
        "bins": report.thresholds.bins,
    }
    tags = {"drift_level": report.level}
    if report.champion_version is not None:
        tags["champion_version"] = str(report.champion_version)
    client.log_batch(
        rid,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(v)],
        params=[Param(k, str(v)[:500]) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    for path in files:
        client.log_artifact(rid, str(path))
    client.set_terminated(rid)
    return str(rid)
