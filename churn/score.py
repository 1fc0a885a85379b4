"""`python -m churn score`: batch scoring on Apache Spark (issue 10). Being written."""

from __future__ import annotations

import argparse

from churn.errors import ChurnError


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--input", required=True)
    sp.add_argument("--output", required=True)


def run(args: argparse.Namespace) -> int:
    raise ChurnError("churn score: not built yet")
