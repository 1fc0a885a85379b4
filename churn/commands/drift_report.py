"""`churn drift`: PSI drift per feature and of the champion's predictions, reference -> current.

`compare` is the command as a library call: deploy/ci.py's drift step runs it in process and
builds its job summary from the report, never from this command's printed table.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churn import cli, drift, settings, tracking
from churn.errors import RegistryStateError, UsageError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from churn import profile

DRIFT_EXIT = 5
DRIFT_EXIT_HELP = f"""\
Each side is a generator month (YYYY-MM, with params.yaml's data.rows and seed) or a .parquet /
.csv file in the Telco layout. --reference champion rebuilds the data the champion was trained
on (from its run's params). --current http://HOST:PORT/monitoring/profile compares with what a
running service has scored (histograms it keeps; no request is stored), e.g.
  python -m churn drift --reference champion --current http://127.0.0.1:8000/monitoring/profile
Prints a table (worst first), writes drift.json and drift.html (plots embedded) to --out-dir and
logs both, with a psi.<feature> metric each, as a run of the experiment churn-drift. Prediction
drift uses models:/churn@champion when there is one (against a service: the version it served).

exit codes (drift):
  0  no feature and no prediction PSI reached the alert threshold (warnings are reported)
  2  usage error (bad flag, month or file; bad params.yaml)
  3  registry state: --reference champion with no @champion, or the champion's version is
     refused (not a model train.py wrote, or its artifact is missing or corrupt)
  4  tracking server or store unreachable or failing
  {DRIFT_EXIT}  drift: some PSI >= drift.psi_alert (or >= psi_warn with --fail-on warn).
     Not 1: 1 means "the gate kept the champion" to CI. A workflow retrains on 5:
     python -m churn drift ... ; [ $? -eq {DRIFT_EXIT} ] && make retrain SNAPSHOT=..."""

Predict = Callable[[Any], Any]


def compare(
    client: MlflowClient,
    uri: str,
    params: settings.Params,
    reference: str,
    current: str,
    rows: int | None = None,
    seed: int | None = None,
) -> drift.Report:
    """The drift report of `current` (a month, a file or a service's profile URL) against
    `reference` (a month, a file or `champion`); rows and seed default to params.yaml's."""
    rows = rows or params.data.rows
    seed = params.seed if seed is None else seed
    # --current URL: what a running service scored (its traffic profile), not rows.
    served = drift.fetch_profile(current) if drift.is_url(current) else None
    current_rows = None if served is not None else drift.load_sample(current, rows, seed)
    with tracking.store_errors(uri):
        version = _compared_version(client, served)
        ref, ref_name = _reference(client, reference, version, rows, seed)
        predict = _predictor(version)
    if served is not None:
        return _against_service(ref, ref_name, served, current, params, predict, version)
    assert current_rows is not None
    current_name = drift.describe(current, rows, seed)
    return drift.build_report(
        ref, current_rows, params.drift, ref_name, current_name, predict, version
    )


def _compared_version(client: MlflowClient, served: profile.Profile | None) -> int | None:
    """Against a service, the version it served (its predictions are in the profile), else the
    current champion (None: there is none)."""
    from churn.registry_reads import alias_version

    champion = alias_version(client, settings.CHAMPION)
    return served.model_version if served and served.model_version else champion


def _reference(
    client: MlflowClient, spec: str, version: int | None, rows: int, seed: int
) -> tuple[pd.DataFrame, str]:
    if spec != drift.CHAMPION_REFERENCE:
        return drift.load_sample(spec, rows, seed), drift.describe(spec, rows, seed)
    if version is None:
        raise RegistryStateError(
            f"--reference {drift.CHAMPION_REFERENCE}: no @{settings.CHAMPION} yet "
            "(run make pipeline), or pass a month or file"
        )
    return drift.training_sample(client, version)


def _predictor(version: int | None) -> Predict | None:
    if version is None:
        return None
    from churn.loading import load_verified

    # Checked against what train.py writes before any byte is deserialised: a corrupt or
    # hostile version is refused with one line (exit 3).
    model = load_verified(settings.MODEL_NAME, version, "point @champion at a loadable version")
    predict: Predict = model.predict
    return predict


def _against_service(
    reference: pd.DataFrame,
    reference_name: str,
    served: profile.Profile,
    url: str,
    params: settings.Params,
    predict: Predict | None,
    version: int | None,
) -> drift.Report:
    import numpy as np

    from churn import data, profile

    if served.rows == 0:
        raise UsageError(
            f"--current {url}: the service has scored nothing since v{version} was loaded; "
            "send traffic first"
        )
    features = data.features(reference)
    proba = np.asarray(predict(features)) if predict is not None else None
    shown = f"{url} (v{served.model_version}, {served.rows:,} rows since {served.since[:19]})"
    return drift.profile_report(
        profile.from_frame(features, proba), served, params.drift, reference_name, shown, version
    )


def publish(
    client: MlflowClient, uri: str, report: drift.Report, out_dir: Path
) -> tuple[Path, Path, str]:
    """drift.json and drift.html in `out_dir`, logged as a run of churn-drift: (json, html, run)."""
    json_path, html_path = drift.write_outputs(report, out_dir)
    with tracking.store_errors(uri):
        run_id = drift.log_report(client, uri, report, [json_path, html_path])
    return json_path, html_path, run_id


def run(args: argparse.Namespace) -> int:
    params = settings.load_params(args.params)
    uri = settings.tracking_uri(args.tracking_uri)
    client = tracking.connect(uri)
    report = compare(client, uri, params, args.reference, args.current, args.rows, args.seed)
    json_path, html_path, run_id = publish(client, uri, report, args.out_dir)
    table = drift.format_table(report)
    cli.report_written("drift", table, (json_path, html_path), run_id, drift.DRIFT_EXPERIMENT)
    failing = ("warn", "alert") if args.fail_on == "warn" else ("alert",)
    return DRIFT_EXIT if report.level in failing else 0


def add_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`drift` on churn's parser (`command` makes one subcommand)."""
    sp = command(
        "drift",
        "PSI drift per feature and of the champion's predictions, reference -> current",
        epilog=DRIFT_EXIT_HELP,
    )
    sp.add_argument(
        "--reference",
        required=True,
        metavar="MONTH|FILE|champion",
        help="e.g. 2026-07; champion: the data the champion was trained on",
    )
    sp.add_argument(
        "--current",
        required=True,
        metavar="MONTH|FILE|URL",
        help="e.g. 2026-10, or a running service's http://HOST:PORT/monitoring/profile",
    )
    sp.add_argument(
        "--rows", type=cli.positive_int, help="rows per generated month (default: data.rows)"
    )
    sp.add_argument("--seed", type=int, help="generator seed (default: seed in params.yaml)")
    sp.add_argument(
        "--out-dir",
        type=Path,
        default=settings.REPORTS_DIR / "drift",
        help="where drift.json and drift.html go (default: reports/drift)",
    )
    sp.add_argument(
        "--fail-on", choices=("alert", "warn"), default="alert", help="level that exits 5"
    )
    sp.add_argument("--params", type=Path, default=settings.PARAMS_FILE, help=argparse.SUPPRESS)
    sp.set_defaults(func=run)  # fmt: skip
