"""What the MLflow UI shows, read back from a real SQLite store: run names, descriptions of the
model and its versions, dataset inputs with DVC's md5 as digest, and the lock's own page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import promote
import register
import rollback
from churn import describe
from churn.evaluate import EVALUATION_EXPERIMENT
from churn.provenance import file_md5, git_state
from churn.registry_lock import LOCK_NAME, registry_lock
from churn.training import train
from tests.conftest import ROOT, Store, small_params
from tests.integration.test_retrain import LATER, month, params

pytestmark = pytest.mark.integration


def _contexts(dataset_input) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.value for t in dataset_input.tags if t.key == "mlflow.data.context"]


def _description(store: Store, version: int) -> str:
    return str(store.client.get_model_version("churn", str(version)).description)


def test_a_training_run_says_what_it_is_and_its_dataset_digest_is_the_dvc_md5(
    store: Store, small_data: Path
) -> None:
    client = store.client
    result = train(small_params(), client, store.uri, data_path=small_data, reports_dir=None)
    md5 = file_md5(small_data)

    exp = client.get_experiment_by_name("churn")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_name for r in runs] == [f"train logistic_regression data={md5[:7]} seed=7"]
    inputs = client.get_run(result.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest, _contexts(i)) for i in inputs] == [
        ("customers.parquet", md5, ["training"])
    ]
    run = client.get_run(result.run_id)
    assert md5 == run.data.tags["data_md5"]
    assert run.data.tags["mlflow.note.content"] == (
        "logistic_regression trained on customers.parquet (generator, snapshot 2026-07, seed 7): "
        f"3,000 rows, DVC md5 `{md5}`."
    )
    assert json.loads(inputs[0].dataset.profile)["num_rows"] == 3_000

    model = client.get_registered_model("churn")
    assert model.description == describe.MODEL_DESCRIPTION
    assert "**@challenger**: the newest trained version, set by `train.py`" in model.description
    text = _description(store, result.version)
    commit, _ = git_state(ROOT)
    assert text.startswith(f"logistic_regression trained by run {result.run_id} (train ")
    assert (
        f"- data: customers.parquet (generator, snapshot 2026-07, seed 7), 3,000 rows, "
        f"DVC md5 `{md5}`; 20% held out (seed 7)"
    ) in text.splitlines()
    assert f"- code: git commit `{str(commit)[:12]}`" in text
    assert (
        "- params: `model.logistic_regression.C=1.0`, `model.logistic_regression.max_iter=1000`, "
        "`threshold=0.5`"
    ) in text.splitlines()
    assert f"auc={result.metrics['auc']:.4f}" in text
    assert describe.MOVES_HEADING not in text  # nothing has moved it yet


def test_versions_say_what_promoted_refused_and_rolled_them_back(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    july, october = month(tmp_path, "2026-07"), month(tmp_path, LATER)
    client = store.client
    v1 = train(params("2026-07"), client, store.uri, data_path=july, reports_dir=None)
    training_part = _description(store, 1)
    assert promote.main(["--data", str(october)]) == 0  # cold start
    v2 = train(params(LATER), client, store.uri, data_path=october, reports_dir=None)
    assert promote.main(["--data", str(october)]) == 0
    assert store.aliases() == {"champion": 2, "prev-champion": 1}

    # The evaluation run: named for what it compares, the holdout an "evaluation" input whose
    # digest is the md5 the promoted version is tagged with.
    tags = store.tags(2)
    ev = client.get_run(tags["evaluation_run"])
    assert ev.info.run_name == "evaluate v2 vs v1"
    (holdout,) = ev.inputs.dataset_inputs
    assert _contexts(holdout) == ["evaluation"]
    assert holdout.dataset.name == f"holdout of {october.name}"
    assert holdout.dataset.digest == tags["validated_on_md5"] == ev.data.tags["holdout_md5"]
    assert json.loads(holdout.dataset.profile)["num_rows"] == 800
    assert json.loads(holdout.dataset.source) == {"uri": str(october.resolve())}
    exp = client.get_experiment_by_name(EVALUATION_EXPERIMENT)
    assert [r.info.run_name for r in client.search_runs([exp.experiment_id])] == [
        "evaluate v2 vs v1"
    ]

    one = _description(store, 1).splitlines()
    two = _description(store, 2).splitlines()
    assert "\n".join(one).startswith(training_part)  # appended: the training part is kept
    assert one[-4:-2] == ["", describe.MOVES_HEADING]
    assert one[-2].endswith(": @champion by promote.py (cold start, no champion)")
    assert one[-1].endswith(": @prev-champion: replaced as @champion by v2")
    assert two[-2] == describe.MOVES_HEADING
    assert (
        f"@champion by promote.py over v1 (auc={ev.data.metrics['champion.auc']:.4f} vs "
        in (two[-1])
    )
    assert "paired diff auc=+" in two[-1] and f"evaluation run `{ev.info.run_id}`)" in two[-1]
    assert two[0].startswith(f"logistic_regression trained by run {v2.run_id} ")

    assert rollback.main([]) == 0
    assert (
        _description(store, 1)
        .splitlines()[-1]
        .endswith(": @champion again by rollback.py (v2 demoted)")
    )
    assert (
        _description(store, 2)
        .splitlines()[-1]
        .endswith(": @prev-champion by rollback.py, tagged rolled_back (v1 restored)")
    )

    # The same model as the champion again: refused, and its version says why.
    train(params("2026-07"), client, store.uri, data_path=july, reports_dir=None)
    capsys.readouterr()
    assert promote.main(["--data", str(july)]) == 1
    refusal = capsys.readouterr().out.splitlines()[-1]
    last = _description(store, 3).splitlines()[-1]
    assert f": promote.py kept v1 (auc={v1.metrics['auc']:.4f} vs " in last
    assert last.endswith(f": {refusal}")
    assert len(_description(store, 1).splitlines()) == len(one) + 1  # the champion: no line


def test_register_as_champion_is_described_as_a_move_without_the_gate(
    store: Store, small_data: Path
) -> None:
    first = train(small_params(), store.client, store.uri, small_data, reports_dir=None)
    forced = ["--alias", "champion", "--force", "--reason", "hotfix"]
    assert register.main(["--run-id", first.run_id, *forced]) == 0
    assert register.main(["--run-id", first.run_id, *forced]) == 0
    three = _description(store, 3)
    # Registered by register.py: the same training part as the version train.py registered.
    assert three.startswith(_description(store, 1).split("\n\n")[0])
    assert three.splitlines()[-1].endswith(
        ": @champion by register.py over v2, without the gate (hotfix)"
    )
    assert (
        _description(store, 2)
        .splitlines()[-1]
        .endswith(": @prev-champion: replaced as @champion by v3 (register.py)")
    )


def test_the_lock_says_it_is_a_lock_while_held_and_is_gone_after(store: Store) -> None:
    client = store.client
    with registry_lock(client, "a test"):
        lock = client.get_registered_model(LOCK_NAME)
        assert str(lock.description).startswith(
            "Not a model: the registry lock of 'churn', held by a test, pid "
        )
        assert "takes it over" in str(lock.description)
    assert [m.name for m in client.search_registered_models()] == []
