"""A fresh copy of the repository, as a learner or CI gets it: `git clone` of this checkout.

Uncommitted changes in the working tree are laid over the clone and committed there, so the
e2e tests exercise the code you have, from a clean tree with a real HEAD.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def fresh_clone(dest: Path) -> Path:
    _git("clone", "--quiet", str(ROOT), str(dest), cwd=ROOT)
    changed = _git("ls-files", "--modified", "--others", "--exclude-standard", cwd=ROOT).split("\n")
    deleted = set(_git("ls-files", "--deleted", cwd=ROOT).split("\n"))
    for rel in filter(None, changed):
        if rel in deleted:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    for rel in filter(None, deleted):
        (dest / rel).unlink(missing_ok=True)
    if _git("status", "--porcelain", cwd=dest):
        _git("add", "-A", cwd=dest)
        _git(
            "-c", "user.name=e2e", "-c", "user.email=e2e@localhost",
            "commit", "--quiet", "-m", "working tree under test", cwd=dest,
        )  # fmt: skip
    return dest


def clean_env(**extra: str) -> dict[str, str]:
    """The environment a learner's shell has: no tracking URI of ours, no venv of ours."""
    # PYTEST_*: the outer run's (an xdist worker's ids, PYTEST_CURRENT_TEST) must not reach a
    # pytest the course runs. MAKE*: the inner make would print "Entering directory" lines.
    drop = ("MLFLOW_", "VIRTUAL_ENV", "PYTEST_", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_clone(tmp_path_factory.mktemp("e2e") / "churn-mlops")
