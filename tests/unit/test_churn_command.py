"""`churn`, the console script (pyproject.toml [project.scripts]): --version, one --help with every
subcommand and the exit codes, and the registry scripts reachable as subcommands."""

from __future__ import annotations

import subprocess
from importlib.metadata import version

from tests.conftest import ROOT

CHURN = ROOT / ".venv" / "bin" / "churn"
SUBCOMMANDS = (
    "train", "register", "promote", "rollback", "prepare", "lineage", "status", "pipeline",
    "retrain", "drift", "score", "history", "versions", "retire",
)  # fmt: skip


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHURN), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_version_comes_from_the_package_metadata() -> None:
    proc = _run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"churn {version('churn-mlops')}"


def test_help_lists_every_subcommand_and_the_exit_codes() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    listed = proc.stdout.split("positional arguments:", 1)[1]
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in listed, name
    for code in range(5):
        assert f"\n  {code}  " in proc.stdout.split("exit codes:", 1)[1]


def test_the_scripts_are_subcommands_with_the_same_flags() -> None:
    for name in ("train", "register", "promote", "rollback"):
        as_script = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), f"{name}.py", "--help"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        as_churn = _run(name, "--help")
        assert as_churn.returncode == as_script.returncode == 0
        assert as_churn.stdout == as_script.stdout, name


def test_a_bad_flag_is_one_line_and_exit_2() -> None:
    proc = _run("promote", "--no-such-flag")
    assert proc.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in proc.stderr
    assert "Traceback" not in proc.stderr
