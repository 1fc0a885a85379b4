"""Swap churn@champion and churn@prev-champion: the emergency lever after a bad promotion.

Both aliases are read before either is written, so this is a true swap: running it twice lands
you back where you started. The demoted version is tagged rolled_back=true.

    python rollback.py            # swap and report what moved where
    python rollback.py --dry-run  # report what would move, change nothing
"""

from __future__ import annotations

from churn import cli, describe, registry, settings, tracking


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("rollback.py", __doc__ or "")
    p.add_argument("--dry-run", action="store_true", help="report what would move, change nothing")
    p.add_argument("--reason", metavar="TEXT", help="why, recorded on the ledger with the move")
    args = p.parse_args(argv)

    def body() -> int:
        uri = settings.tracking_uri(args.tracking_uri)
        client = tracking.connect(uri, writes=True)
        with tracking.store_errors(uri):
            # The version it brings back must load, or the rollback is a second outage.
            verify = registry.loads("fix or re-register v{version} before rolling back to it")
            result = registry.rollback(client, args.dry_run, verify, uri, args.reason)
        for line in registry.format_rollback(result):
            print(line)
        if not result.dry_run:
            with tracking.store_errors(uri):
                describe.note_rollback(client, result)
        return 0

    return cli.run("rollback.py", body)


if __name__ == "__main__":
    raise SystemExit(main())
