"""Every class of bad training input stops the pipeline before training, with one line naming
the column, and registers nothing.

Both ways in: the pipeline's first stage (`python -m churn prepare`, reading the CSV named by
params.yaml's data.source) and train.py given a data file directly.

Protection proved: churn/data.py (`normalise` for the schema, `check_trainable` for rows and
classes) called by churn/prepare.py and churn/training.py before anything is fitted or logged,
and the exit-code mapping in churn/cli.py. Without `check_trainable` a one-class or empty file is
prepared and then fails inside scikit-learn with a traceback; without the mapping train.py
prints a traceback for every class below.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import train
from churn import data
from churn.__main__ import main as churn_main
from tests.conftest import ROOT, Store

pytestmark = pytest.mark.integration


def _raw() -> pd.DataFrame:
    """The Telco layout as the public CSV has it (TotalCharges text, Churn Yes/No)."""
    return data.generate(rows=300, seed=7)


def _missing_column() -> pd.DataFrame:
    return _raw().drop(columns=["Contract"])


def _unknown_category() -> pd.DataFrame:
    df = _raw()
    df.loc[5, "Contract"] = "Monthly"
    return df


def _non_numeric_charges() -> pd.DataFrame:
    df = _raw()
    df.loc[7, "TotalCharges"] = "n/a"
    return df


def _one_class() -> pd.DataFrame:
    df = _raw()
    df["Churn"] = "No"
    return df


def _no_rows() -> pd.DataFrame:
    return _raw().head(0)


CASES = {
    "missing column": (_missing_column, "bad data in 1 column: Contract: missing column"),
    "unknown category": (
        _unknown_category,
        "bad data in 1 column: Contract: unknown values 'Monthly' (row 5)",
    ),
    "non-numeric charges": (
        _non_numeric_charges,
        "bad data in 1 column: TotalCharges: not a number: 'n/a' (row 7)",
    ),
    "all one class": (
        _one_class,
        "bad data in 1 column: Churn: only one class ('No' in all 300 rows); training needs "
        "customers who churned and customers who did not",
    ),
    "empty file": (_no_rows, "bad data in 1 column: Churn: no rows, so nothing to train on"),
}


def one_error_line(err: str, prog: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1, err
    return errors[0].removeprefix(f"{prog}: error: ")


def params_for(source: Path, tmp_path: Path) -> Path:
    text = (ROOT / "params.yaml").read_text()
    assert "source: generator" in text
    params = tmp_path / "params.yaml"
    params.write_text(text.replace("source: generator", f"source: {source}"))
    return params


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_prepare_stage_refuses_bad_data_naming_the_column(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, message = CASES[case]
    source = tmp_path / "customers.csv"
    make().to_csv(source, index=False)
    out = tmp_path / "data" / "customers.parquet"
    capsys.readouterr()
    code = churn_main(["prepare", "--params", str(params_for(source, tmp_path)), "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert (code, stdout) == (1, "")
    assert one_error_line(err, "churn prepare") == message
    assert not out.exists()  # the stage's output is not (re)written: dvc repro stops here


def test_the_prepare_stage_refuses_a_zero_byte_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "customers.csv"
    source.write_bytes(b"")
    out = tmp_path / "customers.parquet"
    capsys.readouterr()
    code = churn_main(["prepare", "--params", str(params_for(source, tmp_path)), "--out", str(out)])
    assert code == 1
    assert one_error_line(capsys.readouterr().err, "churn prepare") == (
        f"data source {source} is empty: no header row, no rows"
    )
    assert not out.exists()


@pytest.mark.parametrize("case", sorted(CASES))
def test_train_refuses_bad_data_before_training_and_registers_nothing(
    case: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, message = CASES[case]
    path = tmp_path / "customers.parquet"
    make().to_parquet(path, index=False)
    reports = tmp_path / "reports"
    capsys.readouterr()
    code = train.main(["--data", str(path), "--reports", str(reports), "--tracking-uri", store.uri])
    stdout, err = capsys.readouterr()
    assert (code, stdout) == (1, "")
    assert one_error_line(err, "train.py") == message
    assert "fitting" not in err  # stopped before training
    # Nothing registered, nothing logged, no reports.
    client = store.client
    assert client.search_registered_models() == []
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments) == []
    assert not reports.exists()
