"""The same registry flows against a real `mlflow server` subprocess (HTTP, proxied artifacts)."""

from __future__ import annotations

from pathlib import Path

import pytest

import promote
import register
import rollback
from churn.__main__ import main as churn_main
from churn.training import train
from tests.conftest import small_params

pytestmark = pytest.mark.integration


def test_train_promote_rollback_lineage_over_http(
    mlflow_server: str,
    small_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from churn import tracking
    from churn.registry_reads import aliases

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    client = tracking.connect(mlflow_server)
    r1 = train(small_params(), client, mlflow_server, data_path=small_data, reports_dir=None)
    assert promote.main([]) == 0
    r2 = train(small_params(C=0.001), client, mlflow_server, data_path=small_data, reports_dir=None)
    capsys.readouterr()
    code = promote.main(["--epsilon", "0"])
    out = capsys.readouterr().out.splitlines()
    by_alias = aliases(MlflowClient(mlflow_server))
    if code == 0:
        assert out[-1] == f"PROMOTED: @champion -> v{r2.version}"
        assert by_alias == {"champion": r2.version, "prev-champion": r1.version}
        assert rollback.main([]) == 0
        assert aliases(MlflowClient(mlflow_server)) == {
            "champion": r1.version,
            "prev-champion": r2.version,
        }
    else:  # the weaker model must be refused, leaving the aliases as they were
        assert code == 1 and out[-1].startswith("GATE FAILED")
        assert by_alias == {"champion": r1.version, "challenger": r2.version}

    # The champion loads from the server's proxied artifact store.
    preds = mlflow.pyfunc.load_model("models:/churn@champion").predict(
        __import__("churn.data", fromlist=["x"])
        .features(__import__("churn.data", fromlist=["x"]).read_parquet(small_data))
        .head(5)
    )
    assert preds.shape == (5,)

    # Register an existing run again by id, with an alias.
    capsys.readouterr()
    assert register.main(["--run-id", r1.run_id, "--alias", "audit"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"registered churn v3, source run {r1.run_id}"
    assert out[1] == "@audit -> v3"

    assert churn_main(["lineage"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("alias          : @champion")

    # The promotion ledger lives on the server too, newest first.
    assert churn_main(["history"]) == 0
    rows = [line.split()[2:4] for line in capsys.readouterr().out.splitlines()[1:]]
    # Every alias move is on the record: train's @challenger and register's @audit too.
    expected = [["train", "set"], ["cold-start", "promoted"], ["train", "set"]]
    expected.insert(0, ["promote", "promoted"] if code == 0 else ["promote", "kept"])
    if code == 0:
        expected.insert(0, ["rollback", "rolled-back"])
    expected.insert(0, ["register", "set"])
    assert rows == expected


def test_server_that_dies_gives_exit_4_fast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening behaves like a crashed server: one line, exit 4, no traceback."""
    import time

    from tests.conftest import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    assert register.main(["--best", "--tracking-uri", uri]) == 4
    assert churn_main(["lineage", "--tracking-uri", uri]) == 4
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("is unreachable" in line for line in err)
    assert time.monotonic() - start < 15
