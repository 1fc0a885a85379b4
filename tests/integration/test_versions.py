"""`python -m churn versions` against a real SQLite registry: every version with its aliases, the
gate metric its run logged, its data md5, when it was created and what the project did to it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from churn.__main__ import main
from tests.conftest import Store, free_port

pytestmark = pytest.mark.integration

MD5_1 = "0123456789abcdef0123456789abcdef"
MD5_2 = "fedcba9876543210fedcba9876543210"


def _history(store: Store) -> None:
    """v1 cold start, v2 promoted over it and rolled back, v3 retired, v4 the challenger."""
    c = store.client
    v1 = store.add_version(("champion",), auc=0.85)
    v2 = store.add_version(("prev-champion",), auc=0.8612345)
    v3 = store.add_version(auc=0.84)
    v4 = store.add_version(("challenger",), auc=0.86)
    for version, md5 in ((v1, MD5_1), (v2, MD5_2), (v3, MD5_2), (v4, MD5_2)):
        run_id = c.get_model_version("churn", str(version)).run_id
        c.set_tag(run_id, "data_md5", md5)
    c.set_model_version_tag("churn", str(v1), "promoted_over", "cold-start")
    c.set_model_version_tag("churn", str(v2), "promoted_over", "v1 (auc=0.8500)")
    c.set_model_version_tag("churn", str(v2), "validated_by", "promote.py")
    c.set_model_version_tag("churn", str(v2), "rolled_back", "true")
    c.set_model_version_tag("churn", str(v3), "retired", "refused by the gate")


def _created(store: Store, version: int) -> datetime:
    mv = store.client.get_model_version("churn", str(version))
    return datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC)


def test_lists_every_version_with_aliases_evidence_and_marks(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    _history(store)
    assert main(["versions", "--tracking-uri", store.uri]) == 0
    out = capsys.readouterr().out.splitlines()
    when = {v: _created(store, v).strftime("%Y-%m-%d %H:%M:%S") for v in (1, 2, 3, 4)}
    assert out == [
        "version  aliases                              auc  data md5      created (UTC)"
        "        marks",
        f"v4       @challenger                       0.8600  fedcba987654  {when[4]}  -",
        f"v3       -                                 0.8400  fedcba987654  {when[3]}  "
        "retired: refused by the gate",
        f"v2       @prev-champion                    0.8612  fedcba987654  {when[2]}  "
        "promoted over v1 (auc=0.8500), rolled back",
        f"v1       @champion                         0.8500  0123456789ab  {when[1]}  "
        "promoted at cold start",
    ]


def test_json_for_scripts(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    _history(store)
    store.client.set_registered_model_alias("churn", "champion", "4")  # two aliases on v4
    assert main(["versions", "--json"]) == 0  # the store fixture sets MLFLOW_TRACKING_URI
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "churn" and doc["metric"] == "auc"
    rows = {row["version"]: row for row in doc["versions"]}
    assert [row["version"] for row in doc["versions"]] == [4, 3, 2, 1]
    assert rows[4]["aliases"] == ["champion", "challenger"]
    assert rows[1]["aliases"] == []
    assert rows[2] == {
        "version": 2,
        "aliases": ["prev-champion"],
        "metric": "auc",
        "score": 0.8612345,
        "data_md5": MD5_2,
        "created": _created(store, 2).isoformat(timespec="seconds"),
        "run_id": store.client.get_model_version("churn", "2").run_id,
        "promoted_over": "v1 (auc=0.8500)",
        "validated_by": "promote.py",
        "rolled_back": True,
        "retired": None,
        "marks": ["promoted over v1 (auc=0.8500)", "rolled back"],
    }
    assert rows[3]["retired"] == "refused by the gate" and rows[3]["rolled_back"] is False


def test_a_version_without_the_metric_or_data_md5_is_still_listed(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(f1=0.5)
    assert main(["versions"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("v1       -                                      -  -             ")
    assert line.endswith("  -")


def test_no_model_is_exit_3_in_one_line(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["versions"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "churn versions: error: model 'churn' is not in the registry: train one first "
        "(make pipeline)\n"
    )


def test_unreachable_store_is_exit_4_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    assert main(["versions", "--tracking-uri", dead, "--json"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("churn versions: error: ")
    assert f"tracking server {dead} is unreachable" in err


def test_help_names_the_marks_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["versions", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--json", "--tracking-uri", "promoted_over", "rolled_back", "retired",
                   "3  model 'churn' is not in the registry", "4  tracking server"):  # fmt: skip
        assert needle in text, needle
