"""A bad day's faults, met through the scripts as a user runs them: each is one stderr line that
says what is wrong and what to do, the contract's exit code, and never a traceback.

Each test names the protection it proves; removing it makes the test fail:
- an unreadable data file (churn/data.py `read_parquet` -> DataFileError): a truncated parquet
  given to train.py or `churn drift` was a pyarrow traceback;
- params.yaml checked when read (churn/settings.py `load_params`, churn/model.py
  `hyperparameter_errors`): a bad hyper-parameter failed inside scikit-learn's `fit` with a
  traceback, also inside `make pipeline`'s DVC output, and a negative gate.epsilon was accepted
  (it promotes a worse model); `churn pipeline` now checks params.yaml before `dvc repro`;
- a read-only store (churn/cli.py `quiet_mlflow`, churn/tracking.py `_one_line`): MLflow's SQL
  store logged 60-90 lines of SQLAlchemy traceback before the exit-4 line, and train.py's line
  showed SQLAlchemy's autoflush note instead of the error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from churn import data
from tests.conftest import ROOT, Store, small_params
from tests.e2e.conftest import fresh_clone

pytestmark = pytest.mark.integration

PYTHON = sys.executable


def run(argv: list[str], cwd: Path = ROOT, timeout: float = 180) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTEST_"))}
    proc = subprocess.run(
        [PYTHON, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


def the_error(err: str, prog: str, max_lines: int = 6) -> str:
    """The one error line of `prog` (progress lines around it are allowed, few of them)."""
    assert "Traceback" not in err, err
    assert len(err.splitlines()) <= max_lines, err
    errors = [line for line in err.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1, err
    return errors[0].removeprefix(f"{prog}: error: ")


@pytest.fixture(scope="module")
def truncated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("faults")
    good = work / "good.parquet"
    data.write_parquet(data.normalise(data.generate(rows=300, seed=7)), good)
    cut = work / "customers.parquet"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a copy cut short
    return cut


def test_a_truncated_parquet_is_one_line_for_train(truncated: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, err = run(["train.py", "--data", str(truncated), "--tracking-uri", uri])
    assert (code, out) == (1, "")
    assert the_error(err, "train.py") == (
        f"{truncated} is not a readable parquet file (Parquet magic bytes not found in footer. "
        "Either the file is corrupted or this is not a parquet file.): rebuild it with "
        "`dvc repro` (or `make pipeline`), or pass a good file"
    )


def test_a_truncated_parquet_is_one_line_for_drift(truncated: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["-m", "churn", "drift", "--current", str(truncated), "--reference", "2026-07"]
    code, out, err = run([*argv, "--tracking-uri", uri])
    assert (code, out) == (2, "")
    assert the_error(err, "churn drift").startswith(
        f"{truncated} is not a readable parquet file (Parquet magic bytes not found"
    )


def test_a_bad_hyperparameter_is_one_line_for_train(truncated: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text().replace("C: 1.0", "C: -1.0"))
    code, out, err = run(["train.py", "--params", str(params), "--data", str(truncated)])
    assert (code, out) == (2, "")
    assert the_error(err, "train.py") == (
        "params.yaml: model.logistic_regression.C: must be a float in the range (0.0, inf]; "
        "got -1.0; fix params.yaml"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "max_iter: 200",
            "max_iter: -5",
            "params.yaml: model.hist_gradient_boosting.max_iter: must be an int in the range "
            "[1, inf); got -5; fix params.yaml",
        ),
        (
            "epsilon: 0.002",
            "epsilon: -0.05",
            "params.yaml: gate.epsilon must be in [0, 1) (the least improvement that promotes), "
            "got -0.05; fix params.yaml",
        ),
    ],
)
def test_a_bad_param_stops_make_pipeline_in_one_line_before_dvc(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    repo = fresh_clone(tmp_path / "repo")
    params = repo / "params.yaml"
    assert old in params.read_text()
    params.write_text(params.read_text().replace(old, new))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, err = run(["-m", "churn", "pipeline", "--tracking-uri", uri], cwd=repo)
    assert (code, out) == (2, "")
    assert the_error(err, "churn pipeline", max_lines=1) == message
    assert not (repo / "data" / "customers.parquet").exists()  # dvc repro never started


def read_only(store: Store) -> str:
    """The same store opened read-only (SQLite's own mode=ro): every write fails in the driver,
    as on a read-only volume or a database user without write grants."""
    return f"sqlite:///file:{store.path}?mode=ro&uri=true"


RO_ERROR = "(sqlite3.OperationalError) attempt to write a readonly database"


@pytest.mark.parametrize("script", ["rollback.py", "promote.py"])
def test_a_read_only_store_is_one_exit_4_line(store: Store, small_data: Path, script: str) -> None:
    from churn.settings import MODEL_NAME
    from churn.training import train

    # Real, loadable versions: promote and rollback check their target loads before moving.
    runs = [
        train(small_params(), store.client, store.uri, small_data, reports_dir=None)
        for _ in range(3)
    ]
    for alias, trained in zip(("prev-champion", "champion", "challenger"), runs, strict=True):
        store.client.set_registered_model_alias(MODEL_NAME, alias, str(trained.version))
    store.client.log_metric(runs[2].run_id, "auc", 0.99)  # the challenger clears the gate
    before = store.aliases()
    uri = read_only(store)
    extra = ["--no-reevaluate"] if script == "promote.py" else []
    code, _, err = run([script, *extra, "--tracking-uri", uri])
    assert code == 4, err
    assert the_error(err, script, max_lines=1) == (
        f"tracking store {uri} failed: {RO_ERROR}; check the server or MLFLOW_TRACKING_URI"
    )
    assert store.aliases() == before


def test_a_read_only_store_is_one_exit_4_line_for_train(
    store: Store, small_data: Path, tmp_path: Path
) -> None:
    store.add_version(("champion",), auc=0.80)  # the store exists, with its tables
    uri = read_only(store)
    code, out, err = run(
        [
            "train.py",
            "--data",
            str(small_data),
            "--reports",
            str(tmp_path / "r"),
            "--tracking-uri",
            uri,
        ]
    )
    assert (code, out) == (4, "")
    assert the_error(err, "train.py") == (
        f"tracking store {uri} failed: {RO_ERROR}; check the server or MLFLOW_TRACKING_URI"
    )
