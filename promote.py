"""Promote churn@challenger to @champion if it beats the metric gate.

The challenger must beat the champion's held-out metric (as logged by each version's own run) by
at least epsilon; for metrics where lower is better (log_loss) it must be lower by epsilon. On
success @prev-champion is set to the old champion first, @champion moves, @challenger is removed,
and the new champion is tagged promoted_over / validated_by. With no champion yet (cold start)
the challenger is promoted. With no @challenger there is nothing to do (exit 0).

    python promote.py                    # compare and promote if better
    python promote.py --dry-run          # compare, report, change nothing
    python promote.py --metric auc --epsilon 0.002
"""

from __future__ import annotations

from churn import cli, ledger, registry, settings, tracking


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("promote.py", __doc__ or "")
    p.add_argument("--metric", choices=settings.METRICS, help="gate metric (default: params.yaml)")
    p.add_argument("--epsilon", type=float, help="required margin (default: params.yaml)")
    p.add_argument("--dry-run", action="store_true", help="compare and report, change nothing")
    args = p.parse_args(argv)
    if args.epsilon is not None and not args.epsilon >= 0:
        p.error(f"argument --epsilon: must be >= 0, got {args.epsilon}")

    def body() -> int:
        gate_params = settings.load_params().gate
        metric = args.metric or gate_params.metric
        epsilon = gate_params.epsilon if args.epsilon is None else args.epsilon
        uri = settings.tracking_uri(args.tracking_uri)
        client = tracking.connect(uri)
        with tracking.store_errors(uri):
            result = registry.promote(client, metric, epsilon, dry_run=args.dry_run)
        d = result.decision
        if d is None:
            print(f"no @{settings.CHALLENGER} alias set: nothing to promote")
            return 0
        for line in registry.format_decision_header(d):
            print(line)
        if not d.promote:
            print(registry.format_refusal(d))
        elif result.dry_run:
            print(f"DRY RUN: would move @{settings.CHAMPION} -> v{d.challenger.version}{_cold(d)}")
        else:
            print(f"PROMOTED: @{settings.CHAMPION} -> v{d.challenger.version}{_cold(d)}")
        if not result.dry_run:
            with tracking.store_errors(uri):
                ledger.record_promotion(client, uri, d, result.promoted)
        return 0 if d.promote else 1

    return cli.run("promote.py", body)


def _cold(d: registry.GateDecision) -> str:
    return " (cold start)" if d.champion is None else ""


if __name__ == "__main__":
    raise SystemExit(main())
