"""The pages themselves, without running them: every link and image resolves, every console block
says whether it runs, every day has a checked exercise, the pictures match what they draw, and the
example requests are the API's documented ones. Fast: no clone, no server."""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.docs import runner

DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
DAYS = sorted(DOCS.glob("day-*.md"))
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _outside_fences(text: str) -> str:
    """The page without its fenced code (a link in a code sample is not a link)."""
    return re.sub(r"^(`{3,})[^\n]*\n.*?^\1\s*$", "", text, flags=re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", _outside_fences(page.read_text()), re.M)
    return {slug(h) for h in headings}


def links(page: Path) -> list[str]:
    return _LINK.findall(_outside_fences(page.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_relative_link_and_image_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{_name(page)}: " + "; ".join(broken)


def test_slugs_follow_github() -> None:
    assert slug("Exit codes") == "exit-codes"
    assert (
        slug("A real tracking server, S3 and PostgreSQL")
        == "a-real-tracking-server-s3-and-postgresql"
    )
    assert slug("Team scale: PostgreSQL and S3") == "team-scale-postgresql-and-s3"
    assert slug("Day 4 — The model registry") == "day-4--the-model-registry"


def test_every_image_a_page_shows_exists_and_every_image_is_shown() -> None:
    shown = {
        (page.parent / target).resolve()
        for page in PAGES
        for target in links(page)
        if target.startswith(("images/", "docs/images/"))
    }
    assert shown, "the course shows no image"
    missing = [str(p) for p in shown if not p.is_file() or p.stat().st_size == 0]
    assert not missing
    on_disk = {p.resolve() for p in (DOCS / "images").iterdir()}
    assert on_disk == shown, "images nobody shows, or shown but not rendered"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_console_block_says_whether_it_runs(page: Path) -> None:
    unmarked = [b.line for b in runner.console_blocks(page) if not b.marked]
    assert not unmarked, (
        f"{_name(page)}: console blocks at lines {unmarked} need <!-- run --> "
        "or <!-- not run: why -->"
    )


@pytest.mark.parametrize("page", DAYS, ids=_name)
def test_every_day_has_goal_why_and_a_checked_exercise(page: Path) -> None:
    text = page.read_text()
    assert "**Goal.**" in text
    assert "## Why it is built this way" in text
    exercise = text[text.index("## Exercise") :]
    solution = exercise[exercise.index("<details>") : exercise.index("</details>")]
    assert "<!-- run" in solution, "the exercise's solution must be a runnable block"
    assert any(b.page == page for b in runner.parse(page))


def test_the_index_and_the_readme_list_every_day_and_scaling_out() -> None:
    index, readme = (DOCS / "README.md").read_text(), (ROOT / "README.md").read_text()
    for page in DAYS:
        assert f"]({page.name})" in index
        assert f"](docs/{page.name})" in readme
    assert "](scaling-out.md)" in index and "](docs/scaling-out.md)" in readme


def test_the_pipeline_diagram_draws_what_dvc_dag_says() -> None:
    dot = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "dvc"), "dag", "--dot"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    from docs.images import dag_edges

    nodes, edges = dag_edges(dot)
    assert nodes, dot
    svg = ET.parse(DOCS / "images" / "pipeline.svg").getroot()
    drawn_stages = {e.get("data-stage") for e in svg.iter() if e.get("data-stage")}
    drawn_edges = {e.get("data-edge") for e in svg.iter() if e.get("data-edge")}
    assert drawn_stages == set(nodes), "re-render: make docs-images"
    assert drawn_edges == {f"{a}->{b}" for a, b in edges}, "re-render: make docs-images"
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    text = ET.tostring(svg, encoding="unicode")
    for name, stage in stages.items():
        assert stage["cmd"] in text, f"the diagram shows another command for {name}"


def test_the_alias_flow_is_a_promotion_and_two_rollbacks() -> None:
    svg = ET.parse(DOCS / "images" / "alias-flow.svg").getroot()
    steps: dict[int, dict[str, str]] = {}
    for e in svg.iter():
        if e.get("data-alias"):
            steps.setdefault(int(e.get("data-step", "-1")), {})[e.get("data-alias", "")] = e.get(
                "data-version", ""
            )
    before, promoted, rolled_back, again = (steps[i] for i in range(4))
    assert before["challenger"] != before["champion"]
    assert promoted == {"champion": before["challenger"], "prev-champion": before["champion"]}
    assert rolled_back == {"champion": before["champion"], "prev-champion": before["challenger"]}
    assert again == promoted


def test_the_example_request_is_the_apis_documented_one() -> None:
    from serve.api_models import EXAMPLE_REQUEST

    assert json.loads((DOCS / "examples" / "two-customers.json").read_text()) == EXAMPLE_REQUEST
    invalid = json.loads((DOCS / "examples" / "invalid.json").read_text())
    good, bad = EXAMPLE_REQUEST["instances"][1], invalid["instances"][1]
    assert invalid["instances"][0] == EXAMPLE_REQUEST["instances"][0]
    assert {k for k in bad if bad.get(k) != good.get(k)} == {
        "tenure", "Contract", "MonthlyCharges", "region",
    }  # fmt: skip
    # The 422 example also sends an int for a float column, which the API accepts (Day 6).
    assert isinstance(bad["MonthlyCharges"], int) and isinstance(good["MonthlyCharges"], float)


def test_make_docs_images_runs_this_module() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("\ndocs-images:") + 1 :].splitlines()[1]
    assert recipe.strip() == "@$(PY) -m docs.images"
    assert (DOCS / "images.py").is_file()


# How the pages' captured outputs name a version and its run (status lines, register.py, /ready
# and /model, lineage): version -> the run id shown, compared on its first 12 digits.
_VERSION_RUN = [
    re.compile(r"churn v(\d+) \([^)]*?\brun ([0-9a-f]{12})"),
    re.compile(r"registered churn v(\d+), source run ([0-9a-f]{32})"),
    re.compile(r'"version":\s*(\d+),\s*"run_id":\s*"([0-9a-f]{32})"'),
    re.compile(r"version +: churn v(\d+)\nrun +: ([0-9a-f]{32})"),
]


def version_runs(pages: list[Path]) -> dict[int, dict[str, list[str]]]:
    """Every version a runnable block's output shows with a run id: version -> run -> where."""
    seen: dict[int, dict[str, list[str]]] = {}
    for page in pages:
        for block in runner.parse(page):
            for command in block.commands:
                text = "\n".join(command.expected)
                for pattern in _VERSION_RUN:
                    for version, run in pattern.findall(text):
                        where = f"{page.name}:{command.line}"
                        seen.setdefault(int(version), {}).setdefault(run[:12], []).append(where)
    return seen


def test_a_version_has_one_run_id_on_every_page() -> None:
    """The pages are captured from one continuous run of the course (`python -m tests.docs.runner
    --update --recapture`), so a version shows the same run on every page: the lineage the course
    teaches, unbroken on the page."""
    seen = version_runs(runner.pages())
    assert seen, "no page shows a version with its run: the patterns above went stale"
    split = {v: runs for v, runs in sorted(seen.items()) if len(runs) > 1}
    assert not split, "versions shown with more than one run id: " + "; ".join(
        f"v{v}: " + ", ".join(f"{run} at {' '.join(where)}" for run, where in runs.items())
        for v, runs in split.items()
    )


def test_the_one_run_id_check_can_fail(tmp_path: Path) -> None:
    pages = []
    for n, run in enumerate(("3f2a9c1d7e4b", "0123456789ab")):
        page = tmp_path / f"day-0{n}.md"
        status = f"champion: churn v2 (auc=0.8, run {run})"
        page.write_text(f"<!-- run -->\n```console\n$ churn status\n{status}\n```\n")
        pages.append(page)
    assert set(version_runs(pages)[2]) == {"3f2a9c1d7e4b", "0123456789ab"}
