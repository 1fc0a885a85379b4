"""Errors become one line on stderr and the contract's exit code, never a traceback."""

from __future__ import annotations

import pytest

from churn import cli
from churn.errors import RegistryStateError, TrackingUnavailableError, UsageError
from churn.settings import ParamsError


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (RegistryStateError("alias @x missing"), 3),
        (TrackingUnavailableError("server down"), 4),
        (UsageError("bad flag"), 2),
        (ParamsError("params.yaml: seed bad"), 2),
    ],
)
def test_typed_errors_map_to_exit_codes(
    exc: Exception, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    def body() -> int:
        raise exc

    assert cli.run("prog", body) == code
    err = capsys.readouterr().err
    assert err.startswith("prog: error: ") and err.count("\n") == 1


def test_store_library_errors_are_exit_4_not_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.exceptions import MlflowException

    def body() -> int:
        raise MlflowException("database is locked\nlong detail")

    assert cli.run("prog", body) == 4
    assert capsys.readouterr().err == "prog: error: tracking store failed: database is locked\n"


def test_programming_errors_still_raise() -> None:
    def body() -> int:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        cli.run("prog", body)


def test_unreachable_server_message(capsys: pytest.CaptureFixture[str]) -> None:
    from churn.tracking import check_reachable
    from tests.conftest import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingUnavailableError) as exc:
        check_reachable(uri)
    assert str(exc.value).startswith(f"tracking server {uri} is unreachable (")
    assert str(exc.value).endswith("start it (make server) or fix MLFLOW_TRACKING_URI")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "model 'churn' is not in the registry at sqlite:////srv/private/mlflow.db: run it",
            "model 'churn' is not in the registry at sqlite:///…/mlflow.db: run it",
        ),
        (
            "[Errno 2] No such file or directory: '/tmp/churn-model-x/model/model.skops'",
            "[Errno 2] No such file or directory: '…/model.skops'",
        ),
        ("cannot open /var/lib/store/x.db now", "cannot open …/x.db now"),
        ("file:///srv/artifacts/1/model", "file:///…/model"),
        # Not local paths: kept as they are.
        ("http://127.0.0.1:5000/api/2.0/mlflow/registered-models/get", None),
        ("models:/churn/6 has no MLmodel file", None),
        ("sqlite:///mlflow.db", None),
    ],
)
def test_answers_show_no_local_directories(text: str, shown: str | None) -> None:
    from churn.tracking import hide_paths

    assert hide_paths(text) == (shown if shown is not None else text)


def test_a_refused_version_is_one_line_without_the_paths_of_its_copy() -> None:
    from churn.loading import UntrustedModelError, refusal

    missing = FileNotFoundError(2, "No such file or directory", "/tmp/churn-model-1/m/model.skops")
    assert str(refusal("churn", 4, missing, "use another version")) == (
        "could not load models:/churn/4: FileNotFoundError: [Errno 2] No such file or directory: "
        "'…/model.skops'; use another version"
    )
    untrusted = UntrustedModelError("models:/churn/4 has no MLmodel file: not a model")
    error = refusal("churn", 4, untrusted, "use another version")
    assert error.exit_code == 3
    assert str(error) == (
        "could not load models:/churn/4: models:/churn/4 has no MLmodel file: not a model; "
        "use another version"
    )
