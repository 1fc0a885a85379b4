"""The HTTP bound of churn.tracking: no retries and 4 s per request only for the commands that
write the registry (a retried write hides whether the first one landed); read-only commands keep
the bounded retries, also after a writer ran in the same process; a user's own values are kept."""

from __future__ import annotations

import os

import pytest

from churn import tracking
from churn.errors import TrackingUnavailableError

RETRIES, TIMEOUT = "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"


@pytest.fixture(autouse=True)
def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (*tracking._HTTP_DEFAULTS, *tracking._REGISTRY_WRITE_HTTP):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(tracking, "_OURS", {})


def test_a_registry_writer_gets_no_retries_and_a_reader_after_it_gets_them_back() -> None:

    tracking.bound_http_retries(writes=True)
    assert (os.environ[RETRIES], os.environ[TIMEOUT]) == ("0", "4")
    tracking.bound_http_retries()  # `history` next, in the same process
    assert (os.environ[RETRIES], os.environ[TIMEOUT]) == ("1", "5")
    tracking.bound_http_retries(writes=True)
    assert os.environ[RETRIES] == "0"


def test_a_users_own_values_are_kept_by_readers_and_writers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    monkeypatch.setenv(RETRIES, "7")
    tracking.bound_http_retries(writes=True)
    tracking.bound_http_retries()
    assert os.environ[RETRIES] == "7" and os.environ[TIMEOUT] == "5"


@pytest.mark.parametrize("command", ["history", "lineage", "status"])
def test_read_only_commands_connect_without_the_write_bound(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churn.__main__ import main

    seen: list[tuple[bool, str | None]] = []

    def connect(uri: str | None = None, *, writes: bool = False) -> None:
        seen.append((writes, os.environ.get(RETRIES)))  # nothing set the write bound before
        raise TrackingUnavailableError("stop here")

    monkeypatch.setattr(tracking, "connect", connect)
    assert main([command, "--tracking-uri", "http://127.0.0.1:9"]) == 4
    assert seen == [(False, None)]


@pytest.mark.parametrize("script", ["promote", "rollback", "register"])
def test_registry_writers_connect_with_the_write_bound(
    script: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churn.__main__ import main

    seen: list[bool] = []

    def connect(uri: str | None = None, *, writes: bool = False) -> None:
        seen.append(writes)
        raise TrackingUnavailableError("stop here")

    monkeypatch.setattr(tracking, "connect", connect)
    argv = ["--run-id", "abc"] if script == "register" else []
    assert main([script, *argv, "--tracking-uri", "http://127.0.0.1:9"]) == 4
    assert seen == [True]
