"""churn/registry_reads.py: one rule for a model URI, the aliases and a run's threshold, the same
for the batch scorer (churn/score.py) and the service (serve/)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from churn import registry_reads, score
from churn.errors import UsageError
from churn.registry_reads import ModelUri, alias_version, parse_model_uri, run_threshold
from serve.config import ServeSettings
from tests.conftest import Store


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("models:/churn@champion", ModelUri("churn", "champion", None)),
        ("models:/churn/3", ModelUri("churn", None, 3)),
        ("models:/other@prev-champion", ModelUri("other", "prev-champion", None)),
    ],
)
def test_a_model_uri_reads_the_same_in_the_scorer_and_the_service(
    uri: str, parsed: ModelUri
) -> None:
    assert parse_model_uri(uri) == parsed
    assert score.parse_model_uri(uri) == parsed
    s = ServeSettings(model_uri=uri)
    assert (s.model_name, s.model_alias, s.pinned_version) == (
        parsed.name,
        parsed.alias,
        parsed.version,
    )


@pytest.mark.parametrize(
    "uri", ["models:/churn/0", "models:/churn", "runs:/abc/model", "models:/a/b@c", ""]
)
def test_a_malformed_uri_is_refused_by_both_in_their_own_words(uri: str) -> None:
    with pytest.raises(ValueError, match="must be models:/<name>@<alias> or models:/<name>/<ver"):
        parse_model_uri(uri)
    with pytest.raises(UsageError, match=f"--model-uri {uri!r}: give a registry URI"):
        score.parse_model_uri(uri)
    with pytest.raises(ValueError, match="CHURN_MODEL_URI must be models:/<name>@<alias>"):
        ServeSettings(model_uri=uri)


def test_a_run_threshold_is_used_and_a_bad_one_warns(caplog: pytest.LogCaptureFixture) -> None:
    assert run_threshold("0.35", 0.5) == 0.35
    assert run_threshold(None, 0.5) == 0.5
    assert not caplog.records  # nothing logged was nothing to warn about
    with caplog.at_level(logging.WARNING, logger=registry_reads.__name__):
        assert run_threshold("high", 0.5) == 0.5
        assert run_threshold("1.5", 0.4) == 0.4
    assert [r.getMessage() for r in caplog.records] == [
        "run param threshold='high' is not a number; using 0.5",
        "run param threshold=1.5 is outside (0, 1); using 0.4",
    ]


def test_the_scorer_falls_back_to_params_yaml_with_the_same_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("threshold: 0.3\n")
    with caplog.at_level(logging.WARNING, logger=registry_reads.__name__):
        assert score._threshold("nan?", params) == 0.3
    assert "threshold='nan?' is not a number; using 0.3" in caplog.text


def test_an_alias_read_on_a_new_store_is_none_not_an_error(store: Store) -> None:
    assert alias_version(store.client, "champion") is None  # no model registered yet
    version = store.add_version(aliases=("champion",), auc=0.8)
    assert alias_version(store.client, "champion") == version
    assert alias_version(store.client, "challenger") is None
    assert registry_reads.aliases(store.client) == {"champion": version}
