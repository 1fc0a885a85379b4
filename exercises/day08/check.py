"""Day 8 checks: the learner's workflow file, read as YAML, and actionlint's verdict on it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from exercises.harness import Check, LearnerFileError, Report

FILE = "lint.yml"
_PINNED = re.compile(r"^actions/checkout@(v\d+(\.\d+)*|[0-9a-f]{40})$")


def _workflow(path: Path) -> dict[Any, Any]:
    if not path.is_file():
        raise LearnerFileError(f"{path} does not exist: restore it with `git checkout {path}`")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise LearnerFileError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict) or not data["jobs"]:
        raise LearnerFileError(f"{path} must be a workflow with at least one job under jobs:")
    return data


def _steps(data: dict[Any, Any]) -> list[dict[str, Any]]:
    return [s for job in data["jobs"].values() for s in (job or {}).get("steps") or []]


def run(path: Path, report: Report) -> None:
    data = _workflow(path)
    on = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` key as True
    triggers = on if isinstance(on, dict) else {t: None for t in ([on] if on else [])}
    steps = _steps(data)
    runs = [str(s.get("run", "")).strip() for s in steps]
    checks: list[tuple[str, Check]] = [
        ("triggers", lambda: _pull_request(triggers)),
        ("permissions", lambda: _permissions(data)),
        ("timeout", lambda: _timeout(data)),
        ("checkout", lambda: _checkout(steps)),
        ("make targets", lambda: _make_targets(runs)),
    ]
    for name, check in checks:
        report.run(name, check)
    if _actionlint():
        report.run("actionlint", lambda: _lint(path))


def _pull_request(triggers: dict[Any, Any]) -> str | None:
    if "pull_request" not in triggers:
        return f"the workflow must run on pull_request: it runs on {sorted(triggers)}"
    push = triggers.get("push") or {}
    if "main" not in (push.get("branches") or []):
        return "the workflow must also run on pushes to main (push: branches: [main])"
    return None


def _permissions(data: dict[Any, Any]) -> str | None:
    perms = data.get("permissions")
    if perms != {"contents": "read"}:
        return f"the workflow must set permissions: contents: read: found {perms!r}"
    return None


def _timeout(data: dict[Any, Any]) -> str | None:
    for name, job in data["jobs"].items():
        limit = (job or {}).get("timeout-minutes")
        if not isinstance(limit, int) or not 0 < limit <= 30:
            return f"job {name} must set timeout-minutes (1 to 30): found {limit!r}"
    return None


def _checkout(steps: list[dict[str, Any]]) -> str | None:
    uses = [str(s["uses"]) for s in steps if "uses" in s]
    if not any(_PINNED.match(u) for u in uses):
        found = uses or "no `uses:` step"
        return f"a step must use actions/checkout pinned to a sha or a version tag: {found}"
    return None


def _make_targets(runs: list[str]) -> str | None:
    want = ["make lint", "make test-unit"]
    got = [r for r in runs if r in want]
    if got != want:
        return f"the steps must run `make lint` then `make test-unit`: found {runs}"
    return None


def _actionlint() -> str | None:
    local = Path(sys.executable).parent / "actionlint"
    return str(local) if local.exists() else shutil.which("actionlint")


def _lint(path: Path) -> str | None:
    exe = _actionlint()
    assert exe is not None
    out = subprocess.run(
        [exe, "-color=false", "-shellcheck=", "-pyflakes=", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        first = (out.stdout or out.stderr).strip().splitlines()[0]
        return f"actionlint: {first}"
    return None
