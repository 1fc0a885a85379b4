"""Running the DVC pipeline against a tracking store: the steps `make pipeline`, `make retrain`
and the CI workflow (deploy/ci.py) share.

DVC decides what to rebuild from files; the registry lives outside DVC. So after `dvc repro`, a
store that has no version trained on the current data (a new or different tracking server) gets
one trained into it, even though DVC reports the stages as up to date.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from churn import settings, tracking
from churn.errors import ChurnError

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Where the steps are echoed: the caller (a script) decides; library code does not print.
Progress = Callable[[str], None]


def step(
    cmd: list[str],
    env: dict[str, str],
    progress: Progress,
    ok: tuple[int, ...] = (0,),
) -> int:
    """Run one command of the pipeline, echoing it; an exit code outside `ok` is an error."""
    shown = " ".join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd))
    progress(f"$ {shown}")
    rc = subprocess.run(cmd, cwd=settings.ROOT, env=env).returncode
    if rc not in ok:
        raise ChurnError(f"`{shown}` failed (exit {rc}): see its output above")
    return rc


def environment(uri: str) -> dict[str, str]:
    """The environment of the steps: this venv first on PATH (DVC stages run `python`)."""
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, MLFLOW_TRACKING_URI=uri, PATH=bin_dir + os.pathsep + os.environ["PATH"])


def dvc() -> list[str]:
    local = Path(sys.executable).parent / "dvc"
    return [str(local)] if local.exists() else ["dvc"]


def repro(uri: str, progress: Progress) -> tuple[MlflowClient, dict[str, str]]:
    """`dvc repro`, and a training run into a store that has no model on this data yet."""
    from churn.provenance import file_md5

    # A bad value in params.yaml is one line and exit 2 here, not a stage's failure inside DVC's
    # output minutes later (DVC reports any stage failure as its own exit 1).
    settings.load_params()
    tracking.check_reachable(uri)
    env = environment(uri)
    step([*dvc(), "repro"], env, progress)
    client = tracking.connect(uri)
    md5 = file_md5(settings.DATA_FILE)
    with tracking.store_errors(uri):
        trained = client.search_model_versions(
            f"name='{settings.MODEL_NAME}' and tags.data_md5='{md5}'"
        )
    if not trained:
        progress(
            f"no version of '{settings.MODEL_NAME}' in {tracking.redact(uri)} was "
            f"trained on this data (md5 {md5}): training it"
        )
        step([*dvc(), "repro", "--force", "--single-item", "train"], env, progress)
    return client, env
