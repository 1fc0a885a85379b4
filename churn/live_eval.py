"""Live evaluation: champion vs challenger judged on the customers each actually served.

Input (`from_log`, what `churn live-eval` calls): the prediction log joined to the outcomes
(churn.outcomes.join): one row per outcome and role, with the version that scored it and its
P(churn). Output (LiveReport): per version and role, AUC, log loss, the reliability curve and
the course's business figure (the share of this period's churners that the top decile of scores
caught); and the served challenger minus the served champion on the gate metric, with a
bootstrap interval.

The split is sticky by customer, so the two served groups are different customers: each group
is resampled on its own (an unpaired bootstrap), unlike the holdout gate, which scores both
models on the same rows (churn.evaluate.paired_bootstrap). The shadow role scores the
champion's customers too; it is reported, never compared: its customers were not served by it.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn import outcomes, predlog, settings
from churn.errors import UsageError
from churn.evaluate import CONFIDENCE, bootstrap_weights, metric_scorer, weighted_metric
from churn.figures import png_base64
from churn.gate import Candidate, PairedDiff

if TYPE_CHECKING:
    from mlflow import MlflowClient

TOP_SHARE = 0.10  # the business figure: churners caught in the top decile of P(churn)
CALIBRATION_BINS = 10
NOT_ENOUGH_EVIDENCE = 6  # exit code of `churn live-eval` (see its --help)


@dataclass(frozen=True)
class Evidence:
    """What a served group needs before its figures decide anything."""

    min_outcomes: int = 200
    min_churners: int = 20


@dataclass
class GroupScore:
    version: int
    role: str
    outcomes: int
    churners: int
    auc: float
    log_loss: float
    top_decile_capture: float
    reliability: list[tuple[float, float, int]] = field(default_factory=list)  # mean p, rate, n


@dataclass
class Comparison:
    metric: str
    champion_version: int
    challenger_version: int
    champion: float
    challenger: float
    diff: float  # challenger - champion
    low: float
    high: float
    confidence: float
    resamples: int
    outcomes: int = 0  # of both served groups compared


@dataclass
class LiveReport:
    since: str
    until: str
    joined_rows: int
    groups: list[GroupScore]
    comparison: Comparison | None
    shortfall: dict[str, str]  # served role -> what it still needs

    @property
    def enough(self) -> bool:
        return self.comparison is not None and not self.shortfall

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {k: _finite(v) for k, v in asdict(self).items()}
        return out | {"enough_evidence": self.enough}


def _finite(value: object) -> object:
    """NaN (an AUC with one class) as null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def top_capture(y: np.ndarray, p: np.ndarray, share: float = TOP_SHARE) -> float:
    """Share of the churners found among the `share` highest scores (ties broken by order)."""
    churners = int(y.sum())
    if churners == 0:
        return math.nan
    k = max(1, math.ceil(len(p) * share))
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].sum() / churners)


def reliability(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> list:
    """(mean predicted, observed churn rate, rows) per equal-width bin of P(churn) with rows."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    curve = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            curve.append((float(p[mask].mean()), float(y[mask].mean()), int(mask.sum())))
    return curve


def _plain(metric: str, y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    return float(weighted_metric(metric, y, p, np.ones((1, len(y))), threshold)[0])


def score_group(version: int, role: str, rows: pd.DataFrame) -> GroupScore:
    y = rows["label"].to_numpy(dtype=np.float64)
    p = rows["p_churn"].to_numpy(dtype=np.float64)
    both = 0 < y.sum() < len(y)
    return GroupScore(
        version=version,
        role=role,
        outcomes=len(y),
        churners=int(y.sum()),
        auc=_plain("auc", y, p) if both else math.nan,
        log_loss=_plain("log_loss", y, p),
        top_decile_capture=top_capture(y, p),
        reliability=reliability(y, p),
    )


def unpaired_bootstrap(
    metric: str,
    champion: tuple[np.ndarray, np.ndarray],
    challenger: tuple[np.ndarray, np.ndarray],
    resamples: int = 1000,
    seed: int = 42,
    threshold: float = 0.5,
) -> tuple[float, float, float]:
    """challenger - champion on `metric` (each a (labels, P(churn)) pair of different
    customers), and the percentile interval of that difference, each group resampled alone."""
    diff = _plain(metric, *challenger, threshold) - _plain(metric, *champion, threshold)
    draws = []
    for side, side_seed in ((champion, seed), (challenger, seed + 1)):
        y, p = side
        scorer = metric_scorer(metric, y, p, threshold)  # the scores sorted once per side
        draws.append(
            np.concatenate([scorer(w) for w in bootstrap_weights(len(y), resamples, side_seed)])
        )
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    low, high = np.nanpercentile(draws[1] - draws[0], [tail, 100.0 - tail])
    return diff, float(low), float(high)


def shortfall(group: GroupScore | None, need: Evidence) -> str | None:
    """What a served group still lacks, in words; None when it has enough."""
    have_rows = group.outcomes if group else 0
    have_churners = group.churners if group else 0
    missing = []
    if have_rows < need.min_outcomes:
        missing.append(f"{need.min_outcomes - have_rows} more outcomes")
    if have_churners < need.min_churners:
        missing.append(f"{need.min_churners - have_churners} more churners")
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} (has {have_rows} outcomes, {have_churners} churners; "
        f"needs {need.min_outcomes} and {need.min_churners})"
    )


def _served(groups: list[GroupScore], role: str) -> GroupScore | None:
    """The group that served `role` with the most outcomes (one version per role, normally)."""
    mine = [g for g in groups if g.role == role]
    return max(mine, key=lambda g: g.outcomes) if mine else None


def evaluate(
    joined: pd.DataFrame,
    since: str,
    until: str,
    metric: str = "auc",
    need: Evidence = Evidence(),
    resamples: int = 1000,
    seed: int = 42,
) -> LiveReport:
    groups = [
        score_group(int(str(version)), str(role), rows)
        for (version, role), rows in joined.groupby(["version", "role"], sort=True)
    ]
    champ, chal = _served(groups, "champion"), _served(groups, "challenger")
    missing = {
        role: text
        for role, group in (("champion", champ), ("challenger", chal))
        if (text := shortfall(group, need)) is not None
    }
    comparison = None
    if champ is not None and chal is not None and not missing:
        sides = [
            joined[(joined["role"] == g.role) & (joined["version"] == g.version)]
            for g in (champ, chal)
        ]
        pairs = [
            (s["label"].to_numpy(np.float64), s["p_churn"].to_numpy(np.float64)) for s in sides
        ]
        diff, low, high = unpaired_bootstrap(metric, pairs[0], pairs[1], resamples, seed)
        comparison = Comparison(
            metric, champ.version, chal.version,
            _plain(metric, *pairs[0]), _plain(metric, *pairs[1]),
            diff, low, high, CONFIDENCE, resamples, champ.outcomes + chal.outcomes,
        )  # fmt: skip
    return LiveReport(since, until, len(joined), groups, comparison, missing)


class EmptyPeriodError(UsageError):
    """The log holds no prediction in the period asked for."""


def from_log(
    root: str,
    since: datetime,
    until: datetime,
    window: timedelta,
    metric: str = "auc",
    need: Evidence = Evidence(),
    resamples: int = 1000,
    seed: int = 42,
) -> LiveReport:
    """The live evaluation of [since, until) from the log under `root` (a folder or s3://…):
    its predictions, each outcome joined to the one in force (within `window`), the figures and
    the bootstrap. Raises EmptyPeriodError when no prediction falls in the period."""
    loc = predlog.Location.of(root)
    log = predlog.read(loc, since, until)
    if log.empty:
        raise EmptyPeriodError(
            f"the prediction log {root} has no rows between --since and --until: is the "
            f"service writing it ({settings.PREDICTION_LOG_ENV})?"
        )
    joined = outcomes.join(log, predlog.read_outcomes(loc), window)
    period = f"{since:%Y-%m-%dT%H:%M}", f"{until:%Y-%m-%dT%H:%M}"
    return evaluate(joined, period[0], period[1], metric, need, resamples, seed)


def format_table(report: LiveReport) -> list[str]:
    lines = [
        f"live evaluation {report.since} -> {report.until}: {report.joined_rows} outcomes "
        "joined to predictions",
        f"{'version':>7}  {'role':<10} {'outcomes':>8} {'churners':>8} {'auc':>7} "
        f"{'log_loss':>8} {'top10%':>7}",
    ]
    for g in report.groups:
        lines.append(
            f"{'v' + str(g.version):>7}  {g.role:<10} {g.outcomes:>8} {g.churners:>8} "
            f"{g.auc:>7.4f} {g.log_loss:>8.4f} {g.top_decile_capture:>7.3f}"
        )
    c = report.comparison
    if c is not None:
        lines.append(
            f"challenger v{c.challenger_version} - champion v{c.champion_version} "
            f"{c.metric}: {c.diff:+.4f}, {c.confidence:.0%} CI [{c.low:+.4f}, {c.high:+.4f}] "
            f"({c.resamples} bootstrap resamples of each side)"
        )
    for role, text in report.shortfall.items():
        lines.append(f"NOT ENOUGH EVIDENCE: @{role} needs {text}")
    return lines


def _calibration_figure(report: LiveReport) -> str:
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 4.0), dpi=80)
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfect")
    for g in report.groups:
        if g.reliability:
            xs, ys, _ = zip(*g.reliability, strict=True)
            ax.plot(xs, ys, marker="o", label=f"v{g.version} {g.role}")
    ax.set_xlabel("mean P(churn) in bin")
    ax.set_ylabel("observed churn rate")
    ax.set_title("reliability (calibration)", fontsize=10)
    ax.legend(fontsize=8)
    return png_base64(fig)


def render_html(report: LiveReport) -> str:
    import matplotlib

    matplotlib.use("Agg")
    table = html.escape("\n".join(format_table(report)))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>churn live evaluation {html.escape(report.since)} ->
{html.escape(report.until)}</title><style>body{{font-family:sans-serif;margin:2em}}</style>
</head><body><h1>Live evaluation</h1><pre>{table}</pre>
<figure><img alt="reliability curves" src="data:image/png;base64,{_calibration_figure(report)}">
</figure></body></html>
"""


def write_outputs(report: LiveReport, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "live-eval.json", out_dir / "live-eval.html"
    json_path.write_text(json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n")
    html_path.write_text(render_html(report))
    return json_path, html_path


LIVE_EXPERIMENT = "churn-live-eval"


def _metrics(report: LiveReport) -> dict[str, float]:
    figures: dict[str, float] = {}
    for g in report.groups:
        prefix = f"v{g.version}.{g.role}"
        figures |= {
            f"{prefix}.auc": g.auc,
            f"{prefix}.log_loss": g.log_loss,
            f"{prefix}.top_decile_capture": g.top_decile_capture,
            f"{prefix}.outcomes": float(g.outcomes),
        }
    if (c := report.comparison) is not None:
        figures |= {f"{c.metric}_diff": c.diff, f"{c.metric}_diff_low": c.low}
        figures |= {f"{c.metric}_diff_high": c.high, "resamples": float(c.resamples)}
        figures |= {f"{c.metric}_champion": c.champion, f"{c.metric}_challenger": c.challenger}
        figures["compared_outcomes"] = float(c.outcomes)
    return {k: v for k, v in figures.items() if math.isfinite(v)}


def log_run(client: MlflowClient, uri: str, report: LiveReport, files: list[Path]) -> str:
    """One run in `churn-live-eval`, tagged with both versions and their training runs."""
    import time

    from mlflow.entities import Metric, RunTag

    from churn.tracking import ensure_experiment

    exp = ensure_experiment(client, uri, LIVE_EXPERIMENT)
    c = report.comparison
    versions = sorted({g.version for g in report.groups})
    title = (
        f"live evaluation v{c.challenger_version} vs v{c.champion_version}"
        if c
        else f"live evaluation {' '.join(f'v{v}' for v in versions)}"
    )
    run = client.create_run(exp, run_name=f"{title} {report.since}..{report.until}")
    tags = {"since": report.since, "until": report.until, "enough_evidence": str(report.enough)}
    tags["versions"] = ",".join(str(v) for v in versions)
    if c is not None:
        for role, version in (
            ("champion", c.champion_version),
            ("challenger", c.challenger_version),
        ):
            mv = client.get_model_version(settings.MODEL_NAME, str(version))
            tags |= {f"{role}_version": str(version), f"{role}_run_id": str(mv.run_id)}
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, v, now, 0) for k, v in _metrics(report).items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    for path in files:
        client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


@dataclass(frozen=True)
class LiveEvidence:
    """The latest live evaluation of exactly this champion and challenger, as the gate reads it."""

    run_id: str
    metric: str
    champion: float  # the champion's figure on the customers it served
    challenger: float
    diff: float  # challenger - champion
    low: float
    high: float
    resamples: int
    outcomes: int  # live outcomes of both served groups
    since: str
    until: str

    def scores(self, champion: int, challenger: int) -> tuple[Candidate, Candidate, PairedDiff]:
        """As the gate takes them (churn.gate): the unpaired interval marked live."""
        interval = PairedDiff(
            self.diff, self.low, self.high, self.resamples, self.outcomes, live=True
        )
        return Candidate(champion, self.champion), Candidate(challenger, self.challenger), interval


def latest_evidence(client: MlflowClient, champion: int, challenger: int) -> LiveEvidence | None:
    """The newest `churn-live-eval` run that compared these two versions with enough outcomes;
    None when there is none (the gate then says to run `churn live-eval`)."""
    exp = client.get_experiment_by_name(LIVE_EXPERIMENT)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=(
            f"tags.champion_version = '{champion}' and tags.challenger_version = '{challenger}' "
            "and tags.enough_evidence = 'True'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    run = runs[0]
    metric = next(k[: -len("_diff")] for k in run.data.metrics if k.endswith("_diff"))
    m = run.data.metrics
    return LiveEvidence(
        run.info.run_id, metric, m[f"{metric}_champion"], m[f"{metric}_challenger"],
        m[f"{metric}_diff"], m[f"{metric}_diff_low"], m[f"{metric}_diff_high"],
        int(m["resamples"]), int(m["compared_outcomes"]), run.data.tags["since"],
        run.data.tags["until"],
    )  # fmt: skip
