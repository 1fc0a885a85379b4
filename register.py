"""Register a tracked run's model as a new version of `churn`.

python register.py --run-id e5f6a7b8c9d0...           # register runs:/<id>/model
python register.py --best --metric auc                # the experiment's best run
python register.py --run-id ... --alias challenger    # and point an alias at it
python register.py --run-id ... --alias champion --force --reason "hotfix for INC-42"

Every alias it sets is on the ledger (python -m churn history), with --reason if given.
@champion moves only through the gate (promote.py); --alias champion skips it, so it is refused
(exit 3) unless --force and --reason say so, and is recorded as forced. The champion it replaces
becomes @prev-champion first, so rollback.py undoes it.
"""

from __future__ import annotations

import argparse

from churn import cli, describe, registry, settings, tracking


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser("register.py", __doc__ or "")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-id", metavar="ID", help="the run whose 'model' artifact to register")
    which.add_argument("--best", action="store_true", help="pick the best run of the experiment")
    p.add_argument(
        "--metric", choices=settings.METRICS, default="auc", help="with --best (default: auc)"
    )
    p.add_argument(
        "--alias",
        metavar="NAME",
        help="set this alias on the new version, under the registry lock; with champion, the "
        "champion it replaces becomes prev-champion (rollback.py undoes it)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --alias champion: move @champion outside the gate (needs --reason)",
    )
    p.add_argument("--reason", metavar="TEXT", help="why, recorded on the ledger")
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be registered, change nothing"
    )
    args = p.parse_args(argv)
    if args.force and not (args.reason or "").strip():
        p.error('argument --force: needs --reason "why" (it is recorded on the ledger)')
    if args.force and args.alias is None:
        p.error("argument --force: only with --alias")
    if args.alias is not None and not _valid_alias(args.alias):
        p.error(f"argument --alias: '{args.alias}' is not a valid alias (letters, digits, - and _)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        uri = settings.tracking_uri(args.tracking_uri)
        client = tracking.connect(uri, writes=True)
        with tracking.store_errors(uri):
            run_id = args.run_id
            if args.best:
                experiment_id = tracking.ensure_experiment(client, uri)
                run_id = registry.best_run(client, experiment_id, args.metric)
                metric = client.get_run(run_id).data.metrics[args.metric]
                print(f"best run by {args.metric}: {run_id}  {args.metric}={metric:.4f}")
            if args.dry_run:
                registry.check_override(args.alias, args.force, args.reason)
                client.get_run(run_id)
                print(
                    f"DRY RUN: would register runs:/{run_id}/model as a new version of "
                    f"{settings.MODEL_NAME}"
                )
                return 0
            # With --alias: under the registry lock, like promote.py and rollback.py (exit 3
            # and nothing registered while another change is in progress).
            registration = registry.register(
                client, run_id, args.alias, uri, args.reason, force=args.force
            )
            describe.note_registration(client, registration, args.reason)
            for line in registration.lines():
                print(line)
        return 0

    return cli.run("register.py", body)


def _valid_alias(alias: str) -> bool:
    # MLflow rejects version-like aliases ("v3") and anything outside these characters.
    import re

    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,255}", alias)) and not re.fullmatch(
        r"[vV]\d+", alias
    )


if __name__ == "__main__":
    raise SystemExit(main())
