"""Checks added to schemathesis' own (`SCHEMATHESIS_HOOKS=tests.reliability.fuzz_checks`).

Every response is tallied by status into $FUZZ_TALLY (JSON, written at exit), and every
rejection must be JSON that names the problem and shows nothing internal.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import threading
from collections import Counter
from typing import Any

import schemathesis

_TALLY: Counter[int] = Counter()
_LOCK = threading.Lock()
# What must never reach a client: tracebacks, source files, our paths, exception reprs.
LEAKS = re.compile(r'Traceback|File "|/\S*\.py\b|/work/|/tmp/|site-packages|Error\(|Exception\(')


def leaks(text: str) -> str | None:
    found = LEAKS.search(text)
    return found.group(0) if found else None


@schemathesis.check
def rejections_are_json_naming_the_problem(
    ctx: Any, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    status = response.status_code
    with _LOCK:
        _TALLY[status] += 1
    if not 400 <= status < 600:
        return None
    text = response.content.decode("utf-8", "replace")
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("application/json"):
        raise AssertionError(f"{status} answered as {content_type!r}, not JSON: {text[:200]}")
    body = json.loads(text)
    # /invocations answers in MLflow's error shape ({"error_code", "message"}), every other route
    # in ours ({"detail", ...}): either way one string must name the problem.
    key = "message" if "error_code" in (body if isinstance(body, dict) else {}) else "detail"
    detail = body.get(key) if isinstance(body, dict) else None
    if not isinstance(detail, str) or not detail.strip():
        raise AssertionError(f"{status} without a '{key}' naming the problem: {text[:200]}")
    if (leak := leaks(text)) is not None:
        raise AssertionError(f"{status} body shows internals ({leak!r}): {text[:300]}")
    return True


@atexit.register
def _write_tally() -> None:
    path = os.environ.get("FUZZ_TALLY")
    if path:
        with open(path, "w") as f:
            json.dump({str(k): v for k, v in sorted(_TALLY.items())}, f)
