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
With --evidence live the scores are the outcomes of the customers each version served (the split
traffic's prediction log joined to `churn outcomes`): the latest `churn live-eval` run of exactly
this champion and challenger with enough outcomes, its unpaired bootstrap interval in place of the
paired one, the same rule; that run is the decision's evidence on the ledger.

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
    python promote.py --evidence live    # gate on live outcomes (churn live-eval's latest run)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from churn import cli, promotion, registry, settings, tracking


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
    p.add_argument(
        "--evidence",
        choices=promotion.EVIDENCE,
        default=promotion.HOLDOUT,
        help="holdout (default): score both on one holdout; live: the latest churn live-eval "
        "of these two versions (the outcomes of the customers each served)",
    )
    args = p.parse_args(argv)
    if args.epsilon is not None and not args.epsilon >= 0:
        p.error(f"argument --epsilon: must be >= 0, got {args.epsilon}")
    if args.resamples is not None and args.resamples < 100:
        p.error(f"argument --resamples: must be >= 100, got {args.resamples}")
    if args.holdout is not None and args.reevaluate is False:
        p.error("argument --holdout: not allowed with --no-reevaluate")
    if args.evidence == promotion.LIVE:
        given = [f for f, v in (("--holdout", args.holdout), ("--resamples", args.resamples),
                                ("--reevaluate", args.reevaluate)) if v is not None]  # fmt: skip
        if given:
            p.error(f"argument --evidence live: not allowed with {', '.join(given)}")

    def body() -> int:
        params = settings.load_params()
        options = promotion.Options(
            metric=args.metric or params.gate.metric,
            epsilon=params.gate.epsilon if args.epsilon is None else args.epsilon,
            dry_run=args.dry_run,
            reevaluate=args.reevaluate,
            holdout=promotion.Holdout(
                data_path=args.data,
                holdout_path=args.holdout,
                required=args.reevaluate is True or args.holdout is not None,
                resamples=args.resamples,
            ),
            record=not args.dry_run,
            evidence=args.evidence,
        )
        uri = settings.tracking_uri(args.tracking_uri)
        client = tracking.connect(uri, writes=True)
        result = promotion.run(
            client,
            uri,
            params,
            options,
            note=lambda msg: print(f"promote.py: {msg}", file=sys.stderr),
            verify=registry.loads(f"register a loadable @{settings.CHALLENGER}"),
        )
        print("\n".join(promotion.report(result)))
        return result.exit_code

    return cli.run("promote.py", body)


if __name__ == "__main__":
    raise SystemExit(main())
