"""Day 6 checks: good and bad request bodies through the learner's Customer model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from exercises.harness import LearnerFileError, Report, load

FILE = "request.py"
GOOD: dict[str, Any] = {
    "tenure": 12,
    "MonthlyCharges": 70.35,
    "Contract": "One year",
    "TotalCharges": 844.2,
}

# Each case: what changes in GOOD, the field the error must name, and why it is wrong.
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"tenure": -1}, "tenure", "a negative tenure"),
    ({"tenure": 73}, "tenure", "a tenure over 72"),
    ({"MonthlyCharges": 0}, "MonthlyCharges", "MonthlyCharges 0"),
    ({"Contract": "Weekly"}, "Contract", "an unknown Contract 'Weekly'"),
    ({"TotalCharges": -5.0}, "TotalCharges", "a negative TotalCharges"),
    ({"tenur": 3}, "tenur", "an unknown field 'tenur'"),
]


def run(path: Path, report: Report) -> None:
    model = getattr(load(path), "Customer", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise LearnerFileError(f"{path} must define class Customer(BaseModel)")

    def accepts(body: dict[str, Any], what: str) -> str | None:
        try:
            model.model_validate(body)
        except ValidationError as exc:
            return f"Customer must accept {what}: refused it ({_fields(exc)})"
        return None

    def refuses(body: dict[str, Any], field: str, what: str) -> str | None:
        try:
            model.model_validate(body)
        except ValidationError as exc:
            if field not in _fields(exc):
                return f"{what} must be refused naming {field}: the error named {_fields(exc)}"
            return None
        return f"Customer must refuse {what}: it accepted it"

    report.run("a good body", lambda: accepts(GOOD, "a good body"))
    without = {k: v for k, v in GOOD.items() if k != "TotalCharges"}
    report.run("TotalCharges left out", lambda: accepts(without, "a body without TotalCharges"))
    missing = {k: v for k, v in GOOD.items() if k != "Contract"}
    report.run("Contract missing", lambda: refuses(missing, "Contract", "a body without Contract"))
    for change, field, what in BAD:
        report.run(what, lambda c=change, f=field, w=what: refuses({**GOOD, **c}, f, w))  # type: ignore[misc]


def _fields(exc: ValidationError) -> str:
    return ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()) or "no field"
