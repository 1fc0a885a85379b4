"""The exercises (exercises/, `make check DAY=N`): for every day the checks pass on the reference
solution and fail on the untouched skeleton, naming a specific problem; a learner's half-right
answer gets the one line that says what is still wrong. Real data, real SQLite MLflow stores."""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path

import pytest

from exercises import check
from exercises.harness import LearnerFileError, Report, load
from tests.conftest import ROOT

# One line each untouched skeleton must print (the learner's first hint of what to do).
SKELETON = {
    1: "  - clean data: not written yet (the skeleton still raises NotImplementedError)",
    2: "  - rule 1, sizes and coverage: not written yet (the skeleton still raises "
    "NotImplementedError)",
    3: "  - log a run: not written yet (the skeleton still raises NotImplementedError)",
    4: "  - swap @champion: not written yet (the skeleton still raises NotImplementedError)",
    5: "  - rule 1, FROM without a tag: not written yet (the skeleton still raises "
    "NotImplementedError)",
    6: "  - Customer must refuse an unknown Contract 'Weekly': it accepted it",
    7: "  - no test catches the planted bug: epsilon ignored",
    8: "  - the workflow must run on pull_request: it runs on ['push']",
    9: "  - identical samples: not written yet (the skeleton still raises NotImplementedError)",
    10: "  - rule 1, no champion: not written yet (the skeleton still raises NotImplementedError)",
}


@pytest.mark.parametrize("day", check.DAYS)
def test_the_reference_solution_passes(day: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert check.main([str(day), "--solution"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"Day {day}: all "), out
    assert out[0].endswith(" checks pass")


@pytest.mark.parametrize("day", check.DAYS)
def test_the_skeleton_fails_naming_what_is_missing(
    day: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check.main([str(day)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert SKELETON[day] in out
    assert out[-1].startswith(f"Day {day}: ") and out[-1].endswith(" checks fail"), out


def _variant(tmp_path: Path, day: int, old: str, new: str) -> Path:
    """The reference solution with one mistake a learner makes."""
    source = check.learner_file(day, solution=True)
    text = source.read_text()
    assert old in text
    path = tmp_path / source.name
    path.write_text(text.replace(old, new))
    return path


def _report(day: int, path: Path) -> Report:
    report = Report(day)
    importlib.import_module(f"exercises.day{day:02d}.check").run(path, report)
    return report


def test_a_rollback_that_forgets_the_tag_is_told_exactly_that(tmp_path: Path) -> None:
    path = _variant(
        tmp_path,
        4,
        '    client.set_model_version_tag(name, str(champion), "rolled_back", "true")\n',
        "",
    )
    report = _report(4, path)
    assert report.problems == ["rollback must tag the demoted v2 rolled_back=true: found None"]
    assert report.lines()[-1] == "Day 4: 1 of 6 checks fail"


def test_a_rollback_that_writes_before_reading_both_aliases_is_caught(tmp_path: Path) -> None:
    # Moving @champion before reading @prev-champion: on a model without @prev-champion the
    # registry is changed before the error.
    path = _variant(
        tmp_path,
        4,
        "    champion = _version(client, name, CHAMPION)\n"
        "    previous = _version(client, name, PREV_CHAMPION)\n",
        "    champion = _version(client, name, CHAMPION)\n"
        "    client.set_registered_model_alias(name, PREV_CHAMPION, str(champion))\n"
        "    previous = _version(client, name, PREV_CHAMPION)\n",
    )
    problems = _report(4, path).problems
    assert problems[0] == "rollback must move @champion back to v1: found v2, expected v1"
    assert problems[-1] == (
        "with no @prev-champion rollback must raise LookupError: it returned normally"
    )


def test_a_psi_with_other_bins_is_told_the_expected_number(tmp_path: Path) -> None:
    path = _variant(tmp_path, 9, 'side="right")', 'side="left")')
    problems = _report(9, path).problems
    assert problems and all(p.startswith("PSI of MonthlyCharges, 2026-07 vs ") for p in problems)
    assert ", expected 0." in problems[0]


def test_a_seed_that_is_ignored_is_caught(tmp_path: Path) -> None:
    path = _variant(tmp_path, 2, "random_state=seed", "random_state=0")
    assert _report(2, path).problems == [
        "seeds 7 and 42 gave the same test rows: the seed must drive the shuffle"
    ]


def test_a_file_that_does_not_import_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "rollback.py"
    bad.write_text("def rollback(:\n")
    with pytest.raises(LearnerFileError, match=r"rollback.py does not import: SyntaxError"):
        load(bad)
    with pytest.raises(LearnerFileError, match=r"does not exist: restore it with `git checkout"):
        load(tmp_path / "missing.py")


@pytest.mark.parametrize("day", ["0", "11", "four", ""])
def test_a_bad_day_is_a_usage_error(day: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert check.main([day]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"check: DAY must be a number from 1 to 10, got {day!r}: e.g. make check DAY=4\n"
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_check_passes_day_and_solution_through() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "check", "DAY=7", "SOLUTION=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "Day 7: all 5 checks pass\n"), done.stderr
