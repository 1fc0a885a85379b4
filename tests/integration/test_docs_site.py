"""The course as a website: `mkdocs build --strict` (make docs-build), then two pages in headless
Chromium served by a local http.server: title, navigation and an image that loaded."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

MKDOCS = ROOT / ".venv" / "bin" / "mkdocs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [str(MKDOCS), "build", "--strict", "-d", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_strict_build_has_every_day_the_readme_and_scaling_out(site: Path) -> None:
    for n, page in enumerate(sorted((ROOT / "docs").glob("day-*.md")), 1):
        assert (site / page.stem / "index.html").is_file(), n
    assert (site / "scaling-out" / "index.html").is_file()
    assert (site / "repo" / "index.html").is_file()  # README.md
    assert (site / "search" / "search_index.json").is_file()
    # A link outside docs/ points into the site, not at a file that is not there.
    day6 = (site / "day-06-serving" / "index.html").read_text()
    assert 'href="../repo/serve/' in day6


def test_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(ROOT / "serve", copy / "serve", ignore=shutil.ignore_patterns("*.py*"))
    shutil.copytree(ROOT / "data", copy / "data", ignore=shutil.ignore_patterns("*.parquet"))
    page = copy / "docs" / "day-01-problem-and-data.md"
    page.write_text(page.read_text() + "\n![gone](images/no-such-image.png)\n")
    proc = subprocess.run(
        [str(MKDOCS), "build", "--strict", "-d", str(tmp_path / "out")],
        cwd=copy, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "no-such-image.png" in proc.stderr


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A page of the test's own, same origin: it opens the course page in a frame and writes what
    # rendered (title, navigation links, images whose bytes arrived and decoded) into its DOM.
    (site / "probe.html").write_text(PROBE)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


PROBE = """<!doctype html><body><pre id="out">pending</pre>
<iframe id="f" width="1200" height="900"></iframe><script>
const f = document.getElementById("f");
f.onload = () => setTimeout(() => {
  const d = f.contentDocument;
  const loaded = [...d.images].filter(i => i.complete && i.naturalWidth > 0).map(i => i.src);
  document.getElementById("out").textContent = [
    "title=" + d.title,
    "nav=" + d.querySelectorAll("nav.md-nav--primary a.md-nav__link").length,
    "loaded=" + loaded.join(" "),
  ].join("\\n");
}, 500);
f.src = location.search.slice(1);
</script></body>"""


def _dom(url: str, profile: Path) -> str:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing: make system-deps installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    # The image's naturalWidth is 0 unless its bytes arrived and decoded: written into the title
    # after load, so --dump-dom shows it.
    proc = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
            "--run-all-compositor-stages-before-draw", "--dump-dom", url,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize(
    ("page", "title", "image"),
    [
        ("day-02-reproducible-training/", "Reproducible training", "images/pipeline.svg"),
        ("day-03-experiment-tracking/", "Experiment tracking", "images/mlflow-runs.png"),
    ],
)
def test_two_pages_render_in_chromium(
    served: str, tmp_path: Path, page: str, title: str, image: str
) -> None:
    dom = _dom(f"{served}/probe.html?{page}", tmp_path / "profile")
    found = dict(
        line.split("=", 1)
        for line in dom.split('<pre id="out">', 1)[1].split("</pre>")[0].split("\n")
        if "=" in line
    )
    assert title in found["title"], found
    assert int(found["nav"]) >= 12, found  # the navigation: ten days, the course, scaling out
    assert image in found["loaded"], f"{image} did not load: {found}"
