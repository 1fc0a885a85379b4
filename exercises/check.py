"""Run one day's checks against the learner's file, or against the reference solution.

    python -m exercises.check 4              # exercises/day04/rollback.py
    python -m exercises.check 4 --solution   # exercises/solutions/day04/rollback.py

Prints one line per failing check, then a summary line. Exit codes: 0 every check passes, 1 some
fail (or the learner's file does not import), 2 usage error (a day that does not exist).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from exercises.harness import LearnerFileError, Report

HERE = Path(__file__).resolve().parent
DAYS = range(1, 11)


def learner_file(day: int, solution: bool = False) -> Path:
    checks = importlib.import_module(f"exercises.day{day:02d}.check")
    base = HERE / "solutions" if solution else HERE
    return base / f"day{day:02d}" / checks.FILE


def run(day: int, solution: bool = False) -> Report:
    """The day's checks on the learner's (or the reference) file; raises LearnerFileError."""
    checks = importlib.import_module(f"exercises.day{day:02d}.check")
    report = Report(day)
    checks.run(learner_file(day, solution), report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make check DAY=N",
        description="Check a day's exercise. Exit 0 all pass, 1 some fail, 2 bad DAY.",
    )
    parser.add_argument("day", help="the day, 1 to 10")
    parser.add_argument(
        "--solution", action="store_true", help="check the reference solution instead"
    )
    args = parser.parse_args(argv)
    if not args.day.isdigit() or int(args.day) not in DAYS:
        print(f"check: DAY must be a number from 1 to 10, got {args.day!r}: e.g. make check DAY=4",
              file=sys.stderr)  # fmt: skip
        return 2
    day = int(args.day)
    try:
        report = run(day, args.solution)
    except LearnerFileError as exc:
        print(f"Day {day}: {exc}")
        return 1
    print("\n".join(report.lines()))
    return 0 if not report.problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
