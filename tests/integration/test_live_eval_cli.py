"""`churn outcomes` and `churn live-eval` on real files and a real MLflow store: the report's
numbers recomputed by hand from the Parquet files, a refused labels file, too few outcomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from churn import live_eval, predlog, schema
from churn.__main__ import main
from churn.data import features, generate, normalise
from tests.conftest import Store

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def traffic(n: int, seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A month of split traffic (v1 champion, v2 challenger, v1 also shadowed by v2) and the
    outcomes a month later. The challenger's scores track the truth better."""
    rng = np.random.default_rng(seed)
    rows = normalise(generate(rows=n, seed=seed))
    ids = rows[schema.ID_COLUMN].to_numpy()
    truth = rng.uniform(0.02, 0.9, n)
    churned = rng.uniform(0, 1, n) < truth
    role = np.where(rng.uniform(0, 1, n) < 0.5, "champion", "challenger")
    noisy = np.clip(truth + rng.normal(0, 0.35, n), 0.001, 0.999)
    p = np.where(role == "champion", noisy, truth)
    ts = [T0 + timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 20, n)]
    meta = pd.DataFrame(
        {
            "ts": pd.to_datetime(ts, utc=True),
            "request_id": [f"req-{i}" for i in range(n)],
            schema.ID_COLUMN: ids,
            "version": np.where(role == "champion", 1, 2),
            "role": role,
            "p_churn": p,
            "decision": p >= 0.5,
        }
    )
    log = pd.concat([meta, features(rows).reset_index(drop=True)], axis=1)
    outcomes = pd.DataFrame(
        {
            schema.ID_COLUMN: ids,
            "churned": np.where(churned, "Yes", "No"),
            "observed_at": (T0 + timedelta(days=30)).isoformat(),
        }
    )
    return log, outcomes


def test_live_eval_numbers_are_the_ones_recomputed_from_the_parquet_log(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("champion",), auc=0.8)
    store.add_version(("challenger",), auc=0.81)
    log_dir, out = tmp_path / "log", tmp_path / "report"
    log, labels = traffic(1500)
    predlog.append(predlog.Location.of(str(log_dir)), log)
    labels.to_csv(tmp_path / "labels.csv", index=False)

    assert main(["outcomes", "--labels", str(tmp_path / "labels.csv"), "--log", str(log_dir)]) == 0
    assert capsys.readouterr().out.startswith(f"outcomes: 1500 rows from {tmp_path}/labels.csv")
    argv = ["live-eval", "--since", "2026-11-01", "--until", "2026-12-01", "--log", str(log_dir)]
    assert main([*argv, "--out-dir", str(out), "--resamples", "200"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "live-eval.json").read_text())

    # By hand: every Parquet file of the log, each customer's prediction, their outcome.
    by_hand = pd.concat(pq.read_table(f).to_pandas() for f in sorted(log_dir.glob("day=*/*")))
    by_hand = by_hand.merge(labels, on=schema.ID_COLUMN)
    for group in report["groups"]:
        mine = by_hand[by_hand["version"] == group["version"]]
        auc = roc_auc_score(mine["churned"] == "Yes", mine["p_churn"])
        assert group["outcomes"] == len(mine) and group["auc"] == pytest.approx(auc)
    c = report["comparison"]
    assert (c["champion_version"], c["challenger_version"]) == (1, 2)
    assert c["low"] > 0  # the challenger tracks the truth: its interval clears zero
    assert f"challenger v2 - champion v1 auc: {c['diff']:+.4f}" in printed
    assert (
        '<img alt="reliability curves" src="data:image/png;base64,'
        in (out / "live-eval.html").read_text()
    )
    [run] = store.client.search_runs(
        [store.client.get_experiment_by_name("churn-live-eval").experiment_id]
    )
    assert run.data.tags["challenger_version"] == "2" and run.data.tags["champion_run_id"]
    assert run.data.metrics["auc_diff"] == pytest.approx(c["diff"])
    evidence = live_eval.latest_evidence(store.client, 1, 2)
    assert evidence is not None and evidence.run_id == run.info.run_id
    assert (evidence.metric, evidence.low) == ("auc", pytest.approx(c["low"]))
    assert live_eval.latest_evidence(store.client, 2, 1) is None  # another pair: no evidence


def test_too_few_outcomes_exits_6_and_says_how_many_more(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("champion",), auc=0.8)
    store.add_version(("challenger",), auc=0.81)
    log, labels = traffic(120)
    predlog.append(predlog.Location.of(str(tmp_path)), log)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    main(["outcomes", "--labels", str(tmp_path / "labels.csv"), "--log", str(tmp_path)])
    argv = ["live-eval", "--since", "2026-11-01", "--until", "2026-12-01", "--log", str(tmp_path)]
    assert main([*argv, "--out-dir", str(tmp_path / "r")]) == 6
    out = capsys.readouterr().out
    assert "NOT ENOUGH EVIDENCE: @champion needs " in out
    assert "more outcomes (has " in out and "needs 200 and 20)" in out
    assert live_eval.latest_evidence(store.client, 1, 2) is None  # logged, but not evidence


def test_a_bad_labels_file_exits_1_with_one_line_and_ingests_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("customerID,churned,observed_at\na,yes,2026-12-01\nb,perhaps,2026-12-01\n")
    assert main(["outcomes", "--labels", str(path), "--log", str(tmp_path / "log")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"churn outcomes: error: --labels {path}: 1 bad value(s), nothing ingested: row 3: churned "
        "'perhaps' is not yes/no, true/false or 1/0"
    ]
    assert not (tmp_path / "log").exists()  # checked before a byte is written


def test_an_empty_period_is_a_usage_error_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["live-eval", "--since", "2026-11-01", "--until", "2026-12-01", "--log", str(tmp_path)]
    assert main(argv) == 2
    assert "has no rows between --since and --until: is the service writing it " in (
        capsys.readouterr().err
    )


def test_the_generator_writes_a_month_s_outcomes_that_ingest_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels" / "2026-11.csv"
    assert (
        main(["outcomes", "--generate", "2026-11", "--rows", "300", "--labels", str(labels)]) == 0
    )
    written = pd.read_csv(labels)
    truth = generate(rows=300, seed=42, snapshot="2026-11")  # params.yaml's seed
    assert list(written[schema.ID_COLUMN]) == list(truth[schema.ID_COLUMN])
    assert list(written["churned"]) == list(truth[schema.LABEL_COLUMN])
    assert set(written["observed_at"]) == {"2026-12-31T23:59:59+00:00"}
    assert main(["outcomes", "--labels", str(labels), "--log", str(tmp_path / "log")]) == 0
    assert "outcomes: 300 rows from" in capsys.readouterr().out.splitlines()[-1]


def _live_evaluated(store: Store, tmp_path: Path, seed: int = 5) -> str:
    """v1 @champion and v2 @challenger, a month of their split traffic, its outcomes, and one
    `churn live-eval` run of them; returns that run's id."""
    store.add_version(("champion",), auc=0.8)
    store.add_version(("challenger",), auc=0.81)
    log_dir = tmp_path / "log"
    log, labels = traffic(1500, seed)
    predlog.append(predlog.Location.of(str(log_dir)), log)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    assert main(["outcomes", "--labels", str(tmp_path / "labels.csv"), "--log", str(log_dir)]) == 0
    argv = ["live-eval", "--since", "2026-11-01", "--until", "2026-12-01", "--log", str(log_dir)]
    assert main([*argv, "--out-dir", str(tmp_path / "report"), "--resamples", "200"]) == 0
    evidence = live_eval.latest_evidence(store.client, 1, 2)
    assert evidence is not None
    return evidence.run_id


def test_the_gate_on_live_evidence_promotes_and_records_the_live_run(
    store: Store, tmp_path: Path
) -> None:
    from churn import ledger, promotion, settings

    live_run = _live_evaluated(store, tmp_path)
    params = settings.load_params()
    options = promotion.Options("auc", 0.002, evidence=promotion.LIVE)
    result = promotion.run(store.client, store.uri, params, options)

    assert result.outcome == promotion.PROMOTED and result.evaluation_run == live_run
    assert store.aliases() == {"champion": 2, "prev-champion": 1}
    d = result.decision
    assert d is not None and d.paired is not None and d.paired.live
    evidence = live_eval.latest_evidence(store.client, 1, 2)
    assert evidence is not None
    assert (d.champion, d.challenger) == evidence.scores(1, 2)[:2]
    assert promotion.report(result)[2].startswith("live diff auc=+")
    assert "bootstrap resamples, 1,500 live outcomes)" in promotion.report(result)[2]
    [record] = [r for r in ledger.history(store.client) if r.action == "promote"]
    assert (record.gate, record.evaluation_run_id, record.diff) == ("live", live_run, d.paired.diff)
    assert store.tags(2)["evaluation_run"] == live_run


def test_the_gate_on_live_evidence_refuses_when_the_interval_does_not_clear_epsilon(
    store: Store, tmp_path: Path
) -> None:
    from churn import ledger, promotion, settings

    live_run = _live_evaluated(store, tmp_path)
    options = promotion.Options("auc", 0.5, evidence=promotion.LIVE)  # an impossible margin
    result = promotion.run(store.client, store.uri, settings.load_params(), options)
    assert result.outcome == promotion.KEPT and result.exit_code == 1
    assert store.aliases() == {"champion": 1, "challenger": 2}
    [record] = ledger.history(store.client)[-1:]
    assert (record.decision, record.gate, record.evaluation_run_id) == ("kept", "live", live_run)


def test_promote_evidence_live_without_a_live_evaluation_exits_3_in_one_line(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    import promote

    store.add_version(("champion",), auc=0.8)
    store.add_version(("challenger",), auc=0.9)
    assert promote.main(["--evidence", "live", "--tracking-uri", store.uri]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "promote.py: error: no live evaluation of v2 against v1 with enough outcomes: run churn "
        "live-eval --since ... --until ... once the outcomes are in"
    ]
    assert store.aliases() == {"champion": 1, "challenger": 2}
    with pytest.raises(SystemExit) as usage:
        promote.main(["--evidence", "live", "--holdout", "x.csv"])
    assert usage.value.code == 2
    assert capsys.readouterr().err.endswith(
        "promote.py: error: argument --evidence live: not allowed with --holdout\n"
    )
