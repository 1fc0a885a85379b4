"""One rule for secrets in text that leaves the process: HTTP bodies, log lines, script output.

A tracking URI may carry a password (`http://user:secret@host`), a signed artifact URL a token
(`?X-Amz-Signature=...`, `?sig=...`), an error an `Authorization:` header. Library code quotes
URIs and exception messages freely; rather than trusting every message to have been built with
care, `redact` is applied where text crosses the process boundary:

- scripts: `churn.cli.run` writes their stdout and stderr through `redacted_streams`;
- logging: `install` makes every log record (any logger, any handler, created before or after,
  e.g. MLflow's own handler, made when mlflow is first imported) carry redacted text;
- warnings and uncaught tracebacks: also through `install`;
- the service's answers: what it reports of a failure is built by `serve.reloader` from
  `churn.tracking.shown`, which applies this rule and hides local paths.

The rule masks: the password in a URL's userinfo (the whole userinfo when it has no `:`, as
`https://TOKEN@host` is a token); values of `...password=`, `...token=`, `...secret=`,
`...signature=`, `sig=`, `...key=` style pairs (query strings, DSNs); `Authorization: Basic/Bearer`
values; AWS access key ids; and any value of a known secret variable (`SECRET_VARIABLES`, and the
passwords `remember`ed from tracking URIs), wherever it appears.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from types import TracebackType
from typing import Any, TextIO
from urllib.parse import quote, unquote

MASK = "***"

# Environment variables whose values are secrets wherever they show up: MLflow's, the cloud
# storage SDKs' (artifact stores) and the service's own.
SECRET_VARIABLES = (
    "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCESS_KEY", "AZURE_CLIENT_SECRET", "DATABRICKS_TOKEN",
    "CHURN_ADMIN_TOKEN", "CHURN_WEBHOOK_SECRET",
)  # fmt: skip
# A shorter value would mask ordinary words in every line; such a password is still masked
# where it matters most, inside a URL.
MIN_KNOWN_SECRET = 6

# scheme://userinfo@ : the netloc ends at / ? # or a blank; the last @ in it ends the userinfo.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s'\"<>]*)@")
# key=value (query strings, DSNs, env dumps); which keys name a secret is `_SECRET_KEYS`.
_PAIR = re.compile(r"(?<![\w-])(?P<key>[\w-]+)=(?P<value>[^\s&;,'\"<>]+)")
_SECRET_KEYS = (
    "password", "passwd", "pwd", "secret", "token", "signature", "sig", "credential",
    "apikey", "api_key", "api-key", "access_key", "accesskey", "account_key", "private_key",
)  # fmt: skip
# An Authorization header's credentials, however quoted.
_AUTHORIZATION = re.compile(
    r"(?P<head>authorization[\"']?\s*[:=]\s*[\"']?(?:basic|bearer|token)\s+)[^\s'\",;]+",
    re.IGNORECASE,
)
# AWS access key ids: not secret alone, but never useful in a message either.
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")

# Values known to be secret (`remember`): masked wherever they appear, not only in URLs.
_KNOWN: set[str] = set()


def _userinfo(match: re.Match[str]) -> str:
    user, colon, _password = match["userinfo"].partition(":")
    return f"{match['scheme']}{user}:{MASK}@" if colon else f"{match['scheme']}{MASK}@"


def _pair(match: re.Match[str]) -> str:
    key = match["key"]
    return f"{key}={MASK}" if key.lower().endswith(_SECRET_KEYS) else match[0]


def redact(text: str) -> str:
    """`text` with every secret the rule knows replaced by `***` (see the module docstring).

    Each pattern runs only when the character it needs is in `text`: this runs on every log
    record, uvicorn's access lines included."""
    for secret in _KNOWN:
        if secret in text:
            text = text.replace(secret, MASK)
    if "@" in text:
        text = _USERINFO.sub(_userinfo, text)
    if "=" in text:
        text = _PAIR.sub(_pair, text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTHORIZATION.sub(rf"\g<head>{MASK}", text)
    if "AKIA" in text or "ASIA" in text:
        text = _AWS_KEY_ID.sub(MASK, text)
    return text


def remember(secret: str | None) -> None:
    """From now on mask `secret` (and its URL-quoted form) wherever it appears."""
    if secret is None:
        return
    for form in {secret, quote(secret, safe=""), unquote(secret)}:
        if len(form) >= MIN_KNOWN_SECRET:
            _KNOWN.add(form)


def remember_environment() -> None:
    for name in SECRET_VARIABLES:
        remember(os.environ.get(name))


# --- logging, warnings, uncaught exceptions ---------------------------------------------------


def _redact_arg(arg: Any) -> Any:
    if isinstance(arg, str):
        return redact(arg)
    if arg is None or isinstance(arg, int | float):
        return arg
    try:
        text = str(arg)
    except Exception:  # a broken __str__ is logging's to report, not ours
        return arg
    shown = redact(text)
    # Only an argument that carried a secret becomes text: `%d` and `%r` of the rest unchanged.
    return arg if shown == text else shown


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """`record` with its message, arguments, traceback and stack redacted, in place.

    The arguments are redacted one by one, not merged into the message, because formatters
    such as uvicorn's access log read `record.args` themselves."""
    record.msg = _redact_arg(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_redact_arg(a) for a in record.args)
    elif isinstance(record.args, dict):
        record.args = {k: _redact_arg(v) for k, v in record.args.items()}
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        # Formatters use a record's exc_text when it is set: the traceback's last line is the
        # exception's message, i.e. where a URI with its password usually is.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class _RecordFactory:
    """Wraps the process's log record factory: every record is born redacted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(self.inner(*args, **kwargs))


def _formatwarning(inner: Any) -> Any:
    def formatwarning(*args: Any, **kwargs: Any) -> str:
        return redact(str(inner(*args, **kwargs)))

    formatwarning.redacting = True  # type: ignore[attr-defined]
    return formatwarning


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    lines = traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
    name = args.thread.name if args.thread is not None else "unknown"
    sys.stderr.write(redact(f"Exception in thread {name}:\n{''.join(lines)}"))


def install() -> None:
    """Redact every log record, warning and uncaught traceback of this process from now on.

    Idempotent. A record factory rather than a handler filter: handlers made later (MLflow
    adds its own, with propagation off, when it is first imported) are covered too."""
    remember_environment()
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RecordFactory):
        logging.setLogRecordFactory(_RecordFactory(factory))
    if not getattr(warnings.formatwarning, "redacting", False):
        warnings.formatwarning = _formatwarning(warnings.formatwarning)
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook


class RedactingStream:
    """A text stream that redacts what is written to it (one `write` at a time: `print` writes
    each argument whole, so a URL is never split across two writes)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, encoding, fileno...: the stream's
        return getattr(self.stream, name)


@contextlib.contextmanager
def redacted_streams() -> Iterator[None]:
    """sys.stdout and sys.stderr redacted while the block runs (a script's whole output)."""
    saved = sys.stdout, sys.stderr
    sys.stdout = RedactingStream(saved[0])
    sys.stderr = RedactingStream(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
