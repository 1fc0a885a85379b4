"""Checks added to schemathesis' own (`SCHEMATHESIS_HOOKS=tests.reliability.fuzz_checks`).

Every response is tallied by status into $FUZZ_TALLY (JSON, written at exit), every rejection
must be JSON that names the problem and shows nothing internal, and a request the OpenAPI
document refuses must not be answered 2xx (`requests_the_document_refuses_are_refused`, which
replaces schemathesis' own negative_data_rejection: see there).
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
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

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


def violation(
    document: dict[str, Any], path: str, method: str, content_type: str, body: bytes
) -> str | None:
    """Why the OpenAPI `document` refuses this request body, or None when it accepts it.

    Judged with the jsonschema library (not the service's own models), on the bytes as sent."""
    operation = document["paths"][path][method.lower()]
    content = operation.get("requestBody", {}).get("content", {})
    media = content_type.split(";")[0].strip().lower()
    if media not in content:
        return f"content type {content_type!r} is not one the document lists ({sorted(content)})"
    try:
        instance = json.loads(body)
    except ValueError as exc:
        return f"the body is not JSON ({exc})"
    # The whole document is the root, so the body schema's "#/components/..." references resolve.
    errors = Draft202012Validator(document).descend(instance, content[media]["schema"])
    error = best_match(errors)  # for a oneOf, the branch's own error, not "valid under none"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "the body"
    return f"{where}: {error.message[:300]}"


@schemathesis.check
def requests_the_document_refuses_are_refused(
    ctx: Any, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """schemathesis' negative_data_rejection, judged on the request as sent.

    Its own check trusts the generator's label: a case generated as "invalid" that got a 2xx
    fails, even when the mutation left a valid body (its tracker lists several such false
    positives; CI met one on a 120-row body). Here a 2xx to such a case fails only when the
    document really refuses the body that was sent, and the failure says which field broke what.
    """
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return None
    if not 200 <= response.status_code < 300:
        return None
    request = response.request
    raw = request.body or b""
    body = raw.encode() if isinstance(raw, str) else raw
    if not isinstance(body, bytes) or not body:
        return None  # a body-less operation: nothing of ours for a generator to make invalid
    content_type = request.headers.get("content-type", "")
    problem = violation(
        case.operation.schema.raw_schema,
        case.operation.path,
        case.method,
        content_type.decode("latin-1") if isinstance(content_type, bytes) else content_type,
        body,
    )
    if problem is not None:
        raise AssertionError(
            f"{response.status_code} for a request the document refuses: {problem}"
        )
    return True


@atexit.register
def _write_tally() -> None:
    path = os.environ.get("FUZZ_TALLY")
    if path:
        with open(path, "w") as f:
            json.dump({str(k): v for k, v in sorted(_TALLY.items())}, f)
