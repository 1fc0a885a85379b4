"""Promote churn@challenger to @champion if it beats the gate.

With a fresh holdout (the default, --reevaluate) both versions are loaded and scored on the same
held-out rows: by default the rows train.py held out of the data the challenger was trained on
(data/customers.parquet, the newest snapshot), which neither model trained on. The challenger must
beat the champion by at least epsilon AND the lower bound of a paired bootstrap 95% confidence
interval of the difference must be > 0 (for log_loss, lower is better: the difference must be
<= -epsilon with an upper bound < 0). With --epsilon 0 the rule is "at least as good": the bound
may touch 0 (>= 0; <= 0 for log_loss), so a tie -- both score the holdout identically, interval
[0, 0], e.g. a retrain on the same data with the same seed -- is promoted; with any epsilon > 0
a tie is refused. The evaluation is logged to the experiment
churn-evaluations, with the holdout; the promoted version is tagged validated_on_md5.
When that data is not here (or the challenger records none), and with --no-reevaluate, the
logged metrics are compared (fair only if both runs were evaluated on the same split).

On success @prev-champion is set to the old champion first, @champion moves, @challenger is
removed, and the new champion is tagged promoted_over / validated_by. With no champion yet (cold
start) the challenger is promoted. With no @challenger there is nothing to do (exit 0). Every
decision, a refusal included, is on the ledger (python -m churn history). A challenger that should
not be promoted is retired with: churn retire --reason "why".

    python promote.py                    # compare and promote if better
    python promote.py --dry-run          # compare, report, change nothing
    python promote.py --metric auc --epsilon 0.002
    python promote.py --no-reevaluate    # gate on the logged metrics
    python promote.py --holdout sample.parquet   # score both on this file instead
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from churn import cli, decide, describe, ledger, registry, settings, tracking

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from churn import evaluate


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("promote.py", __doc__ or "")
    p.add_argument("--metric", choices=settings.METRICS, help="gate metric (default: params.yaml)")
    p.add_argument("--epsilon", type=float, help="required margin (default: params.yaml)")
    p.add_argument("--dry-run", action="store_true", help="compare and report, change nothing")
    p.add_argument(
        "--reevaluate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score both versions on one fresh holdout (default: when the challenger's data is "
        "here); --no-reevaluate compares logged metrics",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=settings.DATA_FILE,
        help="the challenger's training data; its held-out split is the holdout "
        "(default: data/customers.parquet)",
    )
    p.add_argument("--holdout", type=Path, help="score both on this parquet/CSV file instead")
    p.add_argument("--resamples", type=int, help="bootstrap resamples (default: params.yaml)")
    args = p.parse_args(argv)
    if args.epsilon is not None and not args.epsilon >= 0:
        p.error(f"argument --epsilon: must be >= 0, got {args.epsilon}")
    if args.resamples is not None and args.resamples < 100:
        p.error(f"argument --resamples: must be >= 100, got {args.resamples}")
    if args.holdout is not None and args.reevaluate is False:
        p.error("argument --holdout: not allowed with --no-reevaluate")

    def body() -> int:
        params = settings.load_params()
        metric = args.metric or params.gate.metric
        epsilon = params.gate.epsilon if args.epsilon is None else args.epsilon
        uri = settings.tracking_uri(args.tracking_uri)
        client = tracking.connect(uri, writes=True)
        done: list[evaluate.Evaluation] = []
        source = decide.Holdout(
            data_path=args.data,
            holdout_path=args.holdout,
            required=args.reevaluate is True or args.holdout is not None,
            resamples=args.resamples,
        )
        with tempfile.TemporaryDirectory(prefix="churn-holdout-") as work:
            reevaluate = decide.honest_reevaluator(
                client, Path(work), metric, params, done, _note, source
            )
            with tracking.store_errors(uri):
                result = registry.promote(
                    client,
                    metric,
                    epsilon,
                    dry_run=args.dry_run,
                    reevaluate=None if args.reevaluate is False else reevaluate,
                    verify=registry.loads(f"register a loadable @{settings.CHALLENGER}"),
                    uri=uri,
                )
            d = result.decision
            if d is None:
                print(f"no @{settings.CHALLENGER} alias set: nothing to promote")
                return 0
            for line in registry.format_decision_header(d):
                print(line)
            if d.paired is not None:
                print(registry.format_paired(d))
            if not d.promote:
                print(registry.format_refusal(d))
            elif result.dry_run:
                print(
                    f"DRY RUN: would move @{settings.CHAMPION} -> v{d.challenger.version}{_cold(d)}"
                )
            else:
                print(f"PROMOTED: @{settings.CHAMPION} -> v{d.challenger.version}{_cold(d)}")
            if not result.dry_run:
                with tracking.store_errors(uri):
                    _record_evidence(client, uri, result, done[0] if done else None)
                    describe.note_promotion(client, d, result.promoted)
        return 0 if d.promote else 1

    return cli.run("promote.py", body)


def _record_evidence(
    client: MlflowClient, uri: str, result: registry.PromoteResult, ev: evaluate.Evaluation | None
) -> None:
    """The evaluation run, and the decision's record: a promotion's record was written with
    the move (churn.registry) and gains the evidence here; a refusal's is written here."""
    from churn import evaluate

    d = result.decision
    assert d is not None
    eval_run = None
    md5 = ev.holdout.md5 if ev is not None else None
    if ev is not None:
        eval_run = evaluate.log_evaluation(client, uri, ev, d, result.promoted)
        if result.promoted:
            for key, value in (("validated_on_md5", md5), ("evaluation_run", eval_run)):
                client.set_model_version_tag(
                    settings.MODEL_NAME, str(d.challenger.version), key, value
                )
    if not result.promoted:
        ledger.record_kept(client, uri, d, holdout_md5=md5, evaluation_run_id=eval_run)
    elif result.ledger_run is not None:
        ledger.annotate(client, result.ledger_run, holdout_md5=md5, evaluation_run_id=eval_run)


def _note(message: str) -> None:
    print(f"promote.py: {message}", file=sys.stderr)


def _cold(d: registry.GateDecision) -> str:
    return " (cold start)" if d.champion is None else ""


if __name__ == "__main__":
    raise SystemExit(main())
