"""The benchmarks install nothing (issue 21): `make setup-bench` installs wrk; `make bench` and
`make bench-peers` only check for it and say in one line what to run. That no file of the
project, bench/ included, edits the import path is tests/unit/test_architecture.py's rule."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

BENCH_SOURCES = sorted(p for p in (ROOT / "bench").rglob("*.py") if ".venv" not in p.parts)


def test_bench_sources_install_nothing() -> None:
    assert len(BENCH_SOURCES) >= 8  # serve, score, floor, procs, peers/... (the glob found them)
    for path in BENCH_SOURCES:
        assert not re.search(r"[\"']apt-get[\"']", path.read_text()), path  # as a command's argv


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target", ["bench", "bench-peers"])
def test_bench_target_without_wrk_names_setup_bench(target: str) -> None:
    # -o: the dev install counts as done; a PATH without wrk (nor anything else).
    done = subprocess.run(
        [str(shutil.which("make")), "--no-print-directory", "-o", ".venv/.synced-dev", target],
        cwd=ROOT,
        env={"PATH": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert done.stderr.splitlines()[0] == (
        "bench: wrk is not installed: run `make setup-bench` first"
    )
    assert "bench.serve" not in done.stdout and "bench.peers" not in done.stdout
