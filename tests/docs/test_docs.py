"""The course runs: every runnable block of README.md and docs/day-*.md, in page order, in ONE
fresh copy of the repository (the days build on each other), each block a test named after its
page and line. What a command prints must be what the page shows (tests/docs/runner.py says
what may differ). To rewrite a page's outputs from a real run:
`python -m tests.docs.runner --update docs/day-04-registry.md`.

The blocks depend on the ones before them (Day 4 promotes what Day 3 trained): select a subset with
`-k` and the later blocks fail for want of the earlier ones; `-x` stops at the first broken page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, stamps
from tests.docs import runner

pytestmark = pytest.mark.e2e

BLOCKS = [block for page in runner.pages() for block in runner.parse(page)]


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Iterator[runner.Session]:
    """One copy for the whole course; its servers (Day 6's API) stop when the module ends."""
    # The course must never write into this checkout's registry, data or lock (the copy shares
    # its .venv, whose editable install points here). tests/conftest.py checks the same for the
    # whole run; checking here too names the course as the culprit.
    before = stamps()
    with runner.Session.fresh(tmp_path_factory.mktemp("docs")) as session:
        yield session
    assert stamps() == before, "files of the checkout itself changed while the course ran"


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_block(course: runner.Session, block: runner.Block) -> None:
    bad = [outcome for outcome in course.run(block) if not outcome.ok]
    assert not bad, "\n\n".join(outcome.report(block.page) for outcome in bad)


def test_the_course_has_runnable_blocks_on_every_day() -> None:
    days = sorted((ROOT / "docs").glob("day-*.md"))
    assert [p.name[:6] for p in days] == [f"day-{n:02d}" for n in range(1, 11)]
    for page in days:
        assert runner.parse(page), f"{page.name} has no runnable block"


def test_the_copy_uses_this_checkouts_venv(tmp_path: Path) -> None:
    clone = runner.prepare_copy(tmp_path / "churn-mlops")
    assert (clone / ".venv").resolve() == (ROOT / ".venv").resolve()
    synced = (ROOT / ".venv" / ".synced").stat().st_mtime
    assert (clone / "uv.lock").stat().st_mtime < synced  # so make does not run uv sync
    assert os.path.samefile(clone / ".venv" / "bin" / "python", ROOT / ".venv" / "bin" / "python")
