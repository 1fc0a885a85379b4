"""Day 5 checks: the learner's lint() on small Dockerfiles and on the project's own."""

from __future__ import annotations

from pathlib import Path

from exercises.harness import Report, function, load

FILE = "dockerlint.py"
ROOT = Path(__file__).resolve().parent.parent.parent

GOOD = """\
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS builder
RUN pip install uv
FROM python:3.11-slim@sha256:0123456789abcdef AS runtime
COPY --from=builder /app /app
ENV PORT=8000
USER 10001:10001
"""

# Each case: a Dockerfile, and the words (line number and name) its one finding must contain.
BAD = {
    "rule 1, FROM without a tag": ("FROM python\nUSER 1000\n", ["line 1", "python"]),
    "rule 1, FROM :latest": (
        "FROM python:3.11 AS base\nFROM nginx:latest\nUSER app\n",
        ["line 2", "nginx:latest"],
    ),
    "rule 2, no USER": ("FROM python:3.11\nRUN echo hi\n", ["root"]),
    "rule 2, USER root last": ("FROM python:3.11\nUSER 10001\nRUN x\nUSER root\n", ["root"]),
    "rule 3, a secret in ENV": (
        "FROM python:3.11\nENV PORT=8000\nenv AWS_SECRET_KEY=abc123\nUSER 1000\n",
        ["line 3", "AWS_SECRET_KEY"],
    ),
}


def run(path: Path, report: Report) -> None:
    lint = function(load(path), "lint")

    def clean() -> str | None:
        found = lint(GOOD)
        if found != []:
            return f"lint must find nothing in a clean Dockerfile: found {found!r}"
        return None

    def project() -> str | None:
        found = lint((ROOT / "Dockerfile").read_text())
        if found != []:
            return f"lint must find nothing in the project's Dockerfile: found {found!r}"
        return None

    def finds(text: str, words: list[str]) -> str | None:
        found = lint(text)
        if not isinstance(found, list) or len(found) != 1:
            return f"lint must return exactly one finding for {text!r}: returned {found!r}"
        if not all(w in found[0] for w in words):
            return f"the finding for {text!r} must name {' and '.join(words)}: said {found[0]!r}"
        return None

    report.run("a clean Dockerfile", clean)
    report.run("the project's Dockerfile", project)
    for name, (text, words) in BAD.items():
        report.run(name, lambda t=text, w=words: finds(t, w))  # type: ignore[misc]
