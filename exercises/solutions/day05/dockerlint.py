"""Day 5 reference solution: three team rules over a Dockerfile's lines."""

from __future__ import annotations

import re

_SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.I)
_ROOT = {"root", "0", "0:0", "root:root"}


def _from_finding(n: int, args: str, stages: set[str]) -> str | None:
    words = args.split()
    image = next((w for w in words if not w.startswith("--")), "")
    if len(words) >= 3 and words[-2].lower() == "as":
        stages.add(words[-1].lower())
    if image.lower() in stages or image.startswith("$"):
        return None
    name = image.rsplit("/", 1)[-1]
    if "@sha256:" in image or (":" in name and not name.endswith(":latest")):
        return None
    return f"line {n}: FROM {image} is not pinned"


def _secret_finding(n: int, op: str, args: str) -> str | None:
    name = re.split(r"[=\s]", args.strip(), maxsplit=1)[0]
    sets_value = "=" in args or len(args.split()) > 1
    if _SECRET.search(name) and sets_value:
        return f"line {n}: {op} sets {name}"
    return None


def lint(text: str) -> list[str]:
    """Findings of the three rules in a Dockerfile's text; [] when clean."""
    findings: list[str] = []
    stages: set[str] = set()
    last_user: str | None = None
    for n, line in enumerate(text.splitlines(), start=1):
        op, _, args = line.strip().partition(" ")
        op = op.upper()
        finding = None
        if op == "FROM":
            finding = _from_finding(n, args, stages)
        elif op in ("ENV", "ARG"):
            finding = _secret_finding(n, op, args)
        elif op == "USER":
            last_user = args.strip()
        if finding:
            findings.append(finding)
    if last_user is None or last_user.lower() in _ROOT:
        findings.append("the image runs as root: end with USER 10001:10001")
    return findings
