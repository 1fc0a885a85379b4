"""promote.py / rollback.py / register.py against a real MLflow SQLite registry.

Exact stdout lines (the course's formats), exit codes (ARCHITECTURE.md), and the registry state
after each call, including that refused or failed calls change nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import promote
import register
import rollback
from tests.conftest import Store

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def versions_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Store.add_version` registers no model files; what promote.py and rollback.py do with a
    version that does not load is tested on real damaged artifacts (tests/reliability)."""
    monkeypatch.setattr("churn.loading.load_verified", lambda *args: None)


def run(
    capsys: pytest.CaptureFixture[str], main: Callable[[list[str]], int], *args: str
) -> tuple[int, list[str], str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_no_model_at_all_is_exit_3_with_a_hint(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, promote.main, "--tracking-uri", store.uri)
    assert code == 3 and out == []
    assert err == (
        "promote.py: error: model 'churn' is not in the registry: train one first (make pipeline)\n"
    )


def test_no_challenger_is_nothing_to_do(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    store.add_version(("champion",), auc=0.8)
    code, out, _ = run(capsys, promote.main)
    assert code == 0
    assert out == ["no @challenger alias set: nothing to promote"]
    assert store.aliases() == {"champion": 1}


def test_cold_start_promotes_and_tags(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    store.add_version(("challenger",), auc=0.81)
    code, out, _ = run(capsys, promote.main)
    assert code == 0
    assert out == [
        "champion   : none (cold start)",
        "challenger : v1  auc=0.8100",
        "PROMOTED: @champion -> v1 (cold start)",
    ]
    assert store.aliases() == {"champion": 1}
    assert store.tags(1) == {"promoted_over": "cold-start", "validated_by": "promote.py"}


def test_promotion_moves_prev_champion_first_and_removes_challenger(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("champion",), auc=0.86)
    store.add_version(("challenger",), auc=0.88)
    code, out, _ = run(capsys, promote.main, "--dry-run")
    assert code == 0
    assert out == [
        "champion   : v1  auc=0.8600",
        "challenger : v2  auc=0.8800",
        "DRY RUN: would move @champion -> v2",
    ]
    assert store.aliases() == {"champion": 1, "challenger": 2}  # dry run wrote nothing

    code, out, _ = run(capsys, promote.main)
    assert code == 0
    assert out[-1] == "PROMOTED: @champion -> v2"
    assert store.aliases() == {"champion": 2, "prev-champion": 1}
    assert store.tags(2) == {"promoted_over": "v1 (auc=0.8600)", "validated_by": "promote.py"}


def test_refused_gate_leaves_every_alias_untouched(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("prev-champion",), auc=0.84)
    store.add_version(("champion",), auc=0.86)
    store.add_version(("challenger",), auc=0.861)
    before = store.aliases()
    for args in ([], ["--dry-run"]):
        code, out, _ = run(capsys, promote.main, *args)
        assert code == 1
        assert out == [
            "champion   : v2  auc=0.8600",
            "challenger : v3  auc=0.8610",
            "GATE FAILED: needs >= 0.8620. No change.",
        ]
        assert store.aliases() == before
    assert store.tags(3) == {}


def test_metric_and_epsilon_flags_override_params(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("champion",), auc=0.86, log_loss=0.45)
    store.add_version(("challenger",), auc=0.85, log_loss=0.40)
    code, out, _ = run(capsys, promote.main, "--metric", "log_loss", "--epsilon", "0.01")
    assert code == 0
    assert out == [
        "champion   : v1  log_loss=0.4500",
        "challenger : v2  log_loss=0.4000",
        "PROMOTED: @champion -> v2",
    ]


def test_missing_metric_is_exit_3(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    store.add_version(("champion",), auc=0.86)
    store.add_version(("challenger",), f1=0.7)
    code, out, err = run(capsys, promote.main)
    assert code == 3 and out == []
    assert "(@challenger, v2) has no metric 'auc': choose a logged metric with --metric" in err
    assert store.aliases() == {"champion": 1, "challenger": 2}


def test_champion_and_challenger_on_one_version_is_exit_3(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("champion", "challenger"), auc=0.86)
    code, _, err = run(capsys, promote.main)
    assert code == 3
    assert err == (
        "promote.py: error: @champion and @challenger both point at v1: retire the challenger "
        'with churn retire --reason "why", or train a new one\n'
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epsilon", "-1"], "argument --epsilon: must be >= 0, got -1.0"),
        (["--epsilon", "abc"], "argument --epsilon: invalid float value: 'abc'"),
        (["--metric", "speed"], "argument --metric: invalid choice: 'speed'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        promote.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_rollback_twice_restores_the_start(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("challenger",), auc=0.86)
    assert promote.main([]) == 0
    store.add_version(("challenger",), auc=0.88)
    assert promote.main([]) == 0
    capsys.readouterr()
    start = store.aliases()
    assert start == {"champion": 2, "prev-champion": 1}

    code, out, _ = run(capsys, rollback.main, "--dry-run")
    assert code == 0
    assert out == [
        "DRY RUN: would roll back @champion      v2 -> v1",
        "                         @prev-champion v1 -> v2",
    ]
    assert store.aliases() == start

    code, out, _ = run(capsys, rollback.main)
    assert code == 0
    assert out == [
        "ROLLBACK: @champion      v2 -> v1",
        "          @prev-champion v1 -> v2",
    ]
    assert store.aliases() == {"champion": 1, "prev-champion": 2}
    assert store.tags(2)["rolled_back"] == "true"

    code, out, _ = run(capsys, rollback.main)
    assert code == 0
    assert out == [
        "ROLLBACK: @champion      v1 -> v2",
        "          @prev-champion v2 -> v1",
    ]
    assert store.aliases() == start
    assert "rolled_back" not in store.tags(2)  # the restored champion is not "rolled back"
    assert store.tags(1)["rolled_back"] == "true"


def test_rollback_without_prev_champion_is_exit_3(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("champion",), auc=0.86)
    code, out, err = run(capsys, rollback.main)
    assert code == 3 and out == []
    assert err == (
        "rollback.py: error: alias @prev-champion not set on 'churn': cannot roll back "
        "(nothing has been promoted over a champion yet)\n"
    )
    assert store.aliases() == {"champion": 1}


def test_rollback_with_both_aliases_on_one_version_is_exit_3(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add_version(("champion", "prev-champion"), auc=0.86)
    code, _, err = run(capsys, rollback.main)
    assert code == 3
    assert "both point at v1: nothing to roll back to" in err


def test_register_by_run_id_and_best(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    # Versions need real logged models to register from runs; reuse a registered version's run
    # only for the error path, and train-free checks of --best ordering.
    store.add_version(auc=0.80)
    store.add_version(auc=0.90, log_loss=0.5)
    store.add_version(auc=0.85, log_loss=0.3)
    c = store.client
    runs = {int(mv.version): mv.run_id for mv in c.search_model_versions("name='churn'")}

    code, out, _ = run(capsys, register.main, "--best", "--metric", "auc", "--dry-run")
    assert code == 0
    assert out == [
        f"best run by auc: {runs[2]}  auc=0.9000",
        f"DRY RUN: would register runs:/{runs[2]}/model as a new version of churn",
    ]
    code, out, _ = run(capsys, register.main, "--best", "--metric", "log_loss", "--dry-run")
    assert out[0] == f"best run by log_loss: {runs[3]}  log_loss=0.3000"

    code, _, err = run(capsys, register.main, "--run-id", "0123456789abcdef0123456789abcdef")
    assert code == 3
    assert err == (
        "register.py: error: run '0123456789abcdef0123456789abcdef' not found: "
        "check the id (mlflow ui)\n"
    )


def test_register_needs_run_id_or_best(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        register.main([])
    assert exc.value.code == 2
    assert "one of the arguments --run-id --best is required" in capsys.readouterr().err


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for main in (promote.main, rollback.main, register.main):
        with pytest.raises(SystemExit) as exc:
            main(["--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "--tracking-uri" in out
        assert "4  tracking server or store unreachable or failing" in out


def test_dead_server_is_exit_4_within_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from tests.conftest import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    for main in (promote.main, rollback.main):
        start = time.monotonic()
        code, out, err = run(capsys, main, "--tracking-uri", uri)
        assert code == 4 and out == []
        assert err.count("\n") == 1
        assert f"tracking server {uri} is unreachable" in err
        assert "start it (make server) or fix MLFLOW_TRACKING_URI" in err
        assert time.monotonic() - start < 15


def test_champion_moved_while_deciding_changes_nothing_and_exits_3(
    store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another promotion lands between our read and our write: we must not overwrite it."""
    from churn import registry

    store.add_version(("champion",), auc=0.80)
    store.add_version(("challenger",), auc=0.90)
    rival = store.add_version(auc=0.95)
    real_score = registry.version_score

    def score_then_race(client, version, metric, alias):  # type: ignore[no-untyped-def]
        result = real_score(client, version, metric, alias)
        if alias == "champion":  # a concurrent promote.py moves @champion right now
            client.set_registered_model_alias("churn", "champion", str(rival))
        return result

    monkeypatch.setattr(registry, "version_score", score_then_race)
    code, out, err = run(capsys, promote.main)
    assert code == 3 and out == []
    assert err == (
        "promote.py: error: the registry changed while deciding (@champion v1 -> v3); "
        "nothing was changed: run again\n"
    )
    assert store.aliases() == {"champion": rival, "challenger": 2}
    assert store.tags(2) == {}
