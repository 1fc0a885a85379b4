"""The fuzz test's own judge of "a request the document refuses" (tests/reliability/fuzz_checks.py)
must refuse what the OpenAPI document refuses and accept what it accepts: a judge that cannot
fail would let the fuzz test pass on a service that takes anything."""

from __future__ import annotations

import json
from typing import Any

import pytest

from serve.api_models import EXAMPLE_ROWS
from tests.reliability.fuzz_checks import violation
from tests.unit.test_openapi_document import SNAPSHOT

DOCUMENT: dict[str, Any] = json.loads(SNAPSHOT.read_text())["default"]


def judge(body: Any, content_type: str = "application/json") -> str | None:
    return violation(DOCUMENT, "/predict", "POST", content_type, json.dumps(body).encode())


def row(**changes: Any) -> dict[str, Any]:
    return {**EXAMPLE_ROWS[0], **changes}


@pytest.mark.parametrize(
    "body",
    [
        {"instances": EXAMPLE_ROWS},
        EXAMPLE_ROWS[0],  # one customer, unwrapped
        {"instances": [row(TotalCharges="\r\r \t \t\t\n ")]},  # blank, as in the raw file
        {"instances": [row(TotalCharges=None, customerID=None)]},
        {"instances": [row(MonthlyCharges=5.99e307, tenure=72.0)]},  # 72.0 is an integer
        {"instances": [row(MonthlyCharges=-0.0)]},
    ],
)
def test_what_the_document_accepts_is_not_a_violation(body: Any) -> None:
    assert judge(body) is None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"instances": [row(tenure=73)]}, "instances/0/tenure"),
        ({"instances": [row(), row(gender="Other")]}, "instances/1/gender"),
        ({"instances": [row(TotalCharges=" x ")]}, "instances/0/TotalCharges"),
        ({"instances": [row(customerID="x" * 65)]}, "instances/0/customerID"),
        ({"instances": [row(SeniorCitizen=True)]}, "instances/0/SeniorCitizen"),
        ({"instances": []}, "instances"),
        ({"instances": [row(extra=1)]}, "instances/0"),
    ],
)
def test_what_the_document_refuses_is_named(body: Any, named: str) -> None:
    problem = judge(body)
    assert problem is not None and problem.startswith(named), problem


def test_a_body_that_is_not_json_or_not_json_typed_is_a_violation() -> None:
    assert "not JSON" in str(violation(DOCUMENT, "/predict", "POST", "application/json", b"{x"))
    assert "content type" in str(judge({"instances": EXAMPLE_ROWS}, "text/plain"))
