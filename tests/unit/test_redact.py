"""The one redaction rule (churn/redact.py), the one place credentials leave a tracking URI
(churn/settings.py `use_credentials`), and the boundaries that apply them: a script's output
(churn/cli.py), log records, the service's status text. The real thing, a secret-bearing URI
against a server that checks it, is tests/reliability/test_secrets.py."""

from __future__ import annotations

import base64
import io
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from churn import redact as redaction
from churn.redact import redact

SECRET = "Zq7-s3cret-4Kp"


@pytest.fixture(autouse=True)
def _process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`install` and `use_credentials` change process-wide state: each test gets it back."""
    monkeypatch.setattr(redaction, "_KNOWN", set())
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.setenv(name, "unset")  # recorded, so the deletion below is undone too
        monkeypatch.delenv(name)
    saved = (
        logging.getLogRecordFactory(),
        sys.excepthook,
        threading.excepthook,
        warnings.formatwarning,
    )
    yield
    logging.setLogRecordFactory(saved[0])
    sys.excepthook, threading.excepthook, warnings.formatwarning = saved[1:]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            f"API request to http://churn:{SECRET}@127.0.0.1:5000/api/2.0/mlflow/x failed",
            "API request to http://churn:***@127.0.0.1:5000/api/2.0/mlflow/x failed",
        ),
        # the last @ of the netloc ends the userinfo; the password may hold @ and :
        ("https://u:p@ss:w@host:1/p", "https://u:***@host:1/p"),
        ("'postgresql://mlflow:pw%40x@db:5432/mlflow'", "'postgresql://mlflow:***@db:5432/mlflow'"),
        # no ':' in the userinfo: it is often a token
        ("https://ghp_abcdef0123@github.com/o/r.git", "https://***@github.com/o/r.git"),
        (
            "GET /a?x=1&token=abc&X-Amz-Signature=dead&X-Amz-Credential=AK%2F1&sig=zz HTTP/1.1",
            "GET /a?x=1&token=***&X-Amz-Signature=***&X-Amz-Credential=***&sig=*** HTTP/1.1",
        ),
        ("DRIVER=x;UID=sa;PWD=hunter2;", "DRIVER=x;UID=sa;PWD=***;"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUt", "AWS_SECRET_ACCESS_KEY=***"),
        ("Authorization: Basic Y2h1cm46c2VjcmV0", "Authorization: Basic ***"),
        ("{'authorization': 'Bearer abc.def'}", "{'authorization': 'Bearer ***'}"),
        ("key id AKIAIOSFODNN7EXAMPLE here", "key id *** here"),
        # nothing secret: unchanged
        ("models:/churn@champion", None),
        ("http://127.0.0.1:5000/#/models/churn@champion", None),
        ("sqlite:////srv/x/mlflow.db", None),
        ("write to ops@example.com", None),
        ("max_batch_size=1000 threshold=0.5", None),
        ('127.0.0.1:5 - "POST /predict HTTP/1.1" 200', None),
    ],
)
def test_redact_masks_passwords_tokens_and_signatures_and_nothing_else(
    text: str, shown: str | None
) -> None:
    assert redact(text) == (shown if shown is not None else text)
    assert redact(redact(text)) == redact(text)  # applied twice on its way out: harmless


def test_a_remembered_secret_is_masked_wherever_it_appears() -> None:
    redaction.remember("p@ss word!")
    redaction.remember("short")  # would mask ordinary words: only masked inside URLs
    assert redact("login failed for p@ss word! (p%40ss%20word%21)") == "login failed for *** (***)"
    assert redact("a short line") == "a short line"


def test_the_secret_variables_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-0123456789")
    monkeypatch.setenv("CHURN_ADMIN_TOKEN", "admin-0123456789")
    redaction.remember_environment()
    assert redact("sent tok-0123456789 and admin-0123456789") == "sent *** and ***"


# --- credentials out of the URI, into MLflow's variables ----------------------------------------


def test_use_credentials_moves_userinfo_to_mlflows_variables() -> None:
    from churn.settings import use_credentials

    uri = use_credentials("http://churn:p%40ss%3Aword@127.0.0.1:5000/prefix")
    assert uri == "http://127.0.0.1:5000/prefix"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "churn"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "p@ss:word"
    assert redact("echo p@ss:word") == "echo ***"


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:5000",
        "sqlite:////tmp/mlflow.db",
        # SQLAlchemy reads a database's credentials in its URI: they stay there
        "postgresql://mlflow:pw@db:5432/mlflow",
    ],
)
def test_use_credentials_leaves_other_uris_alone(uri: str) -> None:
    from churn.settings import use_credentials

    assert use_credentials(uri) == uri
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ


def test_the_uri_credentials_win_over_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from churn.settings import tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "old-password")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"https://bot:{SECRET}@mlflow.example/")
    assert tracking_uri() == "https://mlflow.example/"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == SECRET


def test_the_service_settings_take_credentials_the_same_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from serve.config import ServeSettings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://churn:{SECRET}@127.0.0.1:5000")
    assert ServeSettings().tracking_uri == "http://127.0.0.1:5000"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == SECRET


class _BasicAuthHealth(BaseHTTPRequestHandler):
    expected = "Basic " + base64.b64encode(f"churn:{SECRET}".encode()).decode()

    def do_GET(self) -> None:
        ok = self.headers.get("Authorization") == self.expected
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BasicAuthHealth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_health_check_sends_the_uris_credentials(health_server: int) -> None:
    """Before: urllib took `churn:secret@127.0.0.1` for a host name, and every script called a
    server it could use "unreachable", password included."""
    from churn.errors import TrackingUnavailableError
    from churn.settings import tracking_uri
    from churn.tracking import check_reachable

    check_reachable(tracking_uri(f"http://churn:{SECRET}@127.0.0.1:{health_server}"))
    with pytest.raises(TrackingUnavailableError) as refused:
        check_reachable(tracking_uri(f"http://churn:Wrong-{SECRET}@127.0.0.1:{health_server}"))
    assert str(refused.value) == (
        f"tracking server http://127.0.0.1:{health_server} refused the credentials (HTTP 401): "
        "fix the user:password in MLFLOW_TRACKING_URI (or MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD)"
    )


# --- the boundaries -----------------------------------------------------------------------------


def test_a_scripts_output_is_redacted_whatever_prints_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from churn import cli
    from churn.errors import TrackingUnavailableError

    url = f"http://churn:{SECRET}@127.0.0.1:5000"

    def body() -> int:
        print(f"result from {url}")
        print(f"a note about {url}", file=sys.stderr)
        raise TrackingUnavailableError(f"tracking store {url} failed")

    assert cli.run("x.py", body) == 4
    out, err = capsys.readouterr()
    assert out == "result from http://churn:***@127.0.0.1:5000\n"
    assert err == (
        "a note about http://churn:***@127.0.0.1:5000\n"
        "x.py: error: tracking store http://churn:***@127.0.0.1:5000 failed\n"
    )
    assert sys.stdout is not None and not isinstance(sys.stdout, redaction.RedactingStream)


def test_log_records_are_redacted_for_every_handler_even_ones_made_later() -> None:
    """As MLflow's: its logger gets its own handler, propagation off, when mlflow is imported
    (in the service: after start-up)."""
    redaction.install()
    stream = io.StringIO()
    logger = logging.getLogger("test_redact.late")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    url = f"http://churn:{SECRET}@h:1/api"
    try:
        logger.warning(f"plain {url}")
        logger.warning("args %s %r %d", url, ValueError(url), 7)
        try:
            raise RuntimeError(f"API request to {url} failed")
        except RuntimeError:
            logger.exception("with traceback")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET not in text
    assert "WARNING plain http://churn:***@h:1/api\n" in text
    assert "WARNING args http://churn:***@h:1/api 'http://churn:***@h:1/api' 7\n" in text
    assert "RuntimeError: API request to http://churn:***@h:1/api failed" in text


def test_uvicorns_access_log_keeps_working_and_is_redacted() -> None:
    """uvicorn's access formatter unpacks record.args itself: they must stay five values."""
    from uvicorn.logging import AccessFormatter

    redaction.install()
    stream = io.StringIO()
    logger = logging.getLogger("test_redact.access")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AccessFormatter('%(client_addr)s "%(request_line)s" %(status_code)s'))
    logger.addHandler(handler)
    try:
        logger.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/x?token=t0k3n&a=1", "1.1", 200
        )
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == '127.0.0.1:5 "GET /x?token=***&a=1 HTTP/1.1" 200 OK\n'


def test_warnings_and_uncaught_tracebacks_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    redaction.install()
    url = f"http://churn:{SECRET}@h:1"
    # What warnings.showwarning prints (pytest records warnings instead of printing them).
    shown = warnings.formatwarning(f"slow {url}", UserWarning, "lib.py", 3)
    assert shown == "lib.py:3: UserWarning: slow http://churn:***@h:1\n"
    try:
        raise ValueError(f"bad {url}")
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert SECRET not in err
    assert "ValueError: bad http://churn:***@h:1" in err


def test_the_services_failure_text_is_redacted_and_path_free() -> None:
    """What /model's last_error, /ready's detail and /admin/reload's body say of a failure."""
    from serve.reloader import _one_line

    exc = ConnectionError(
        f"API request to http://churn:{SECRET}@h:1/api failed; see /tmp/x/y/model.skops"
    )
    assert _one_line(exc) == (
        "ConnectionError: API request to http://churn:***@h:1/api failed; see …/model.skops"
    )
