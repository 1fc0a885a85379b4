"""`make docs-images`: the course's pictures, re-rendered from a real run of the course.

    python -m docs.images                     # all of them (screenshots need Debian's chromium)
    python -m docs.images --skip-screenshots  # the diagrams and plots only

It runs README.md and Days 1-4 in a fresh copy of the repository (tests/docs/runner.py, every
block checked as `make docs-test` checks it: a page that no longer matches stops it), then writes
docs/images/:

  pipeline.svg               the DVC pipeline: `dvc dag --dot`, with dvc.yaml's deps and outs
  roc.png, confusion.png     the champion run's own plots, as training logged them to MLflow
  alias-flow.svg             the aliases before and after each move Day 4 made (from the ledger)
  mlflow-runs.png            the MLflow UI (`make server` on the copy's store) comparing the runs
  mlflow-run.png             the best training run's page: its name, description, dataset digest
  mlflow-model.png           the MLflow UI's page of the registered model, @champion on its version
  mlflow-version.png         the champion version's page: what it was trained on, what moved it
  mlflow-evaluation.png      the gate's evaluation run: the holdout as its evaluation input

tests/docs/test_pages.py checks that pipeline.svg still matches `dvc dag --dot`. Run it as a
module from the repository's root (as `make docs-images` does): that is what puts the root, and so
`tests.docs.runner`, on the import path.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import yaml

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
LAST_PAGE = "day-04-registry.md"  # the course's state the pictures show

# ---------------------------------------------------------------------------------------------
# Pipeline diagram (SVG, drawn from dvc.yaml and `dvc dag --dot`)


def dag_edges(dot: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Stages and edges of `dvc dag --dot` output."""
    edges = re.findall(r'^"([^"]+)"\s*->\s*"([^"]+)";', dot, re.M)
    nodes = re.findall(r'^"([^"]+)";', dot, re.M)
    return nodes, edges


def _chain(nodes: list[str], edges: list[tuple[str, str]]) -> list[str]:
    nxt = dict(edges)
    starts = [n for n in nodes if n not in {b for _, b in edges}]
    if len(starts) != 1 or len(nxt) != len(edges) or len(edges) != len(nodes) - 1:
        raise SystemExit("docs.images: the DVC pipeline is no longer a chain; teach pipeline_svg")
    order = [starts[0]]
    while order[-1] in nxt:
        order.append(nxt[order[-1]])
    return order


def _box(x: float, y: float, w: float, h: float, lines: list[str], kind: str, **attrs: str) -> str:
    fill, stroke = {
        "stage": ("#dbeafe", "#1d4ed8"),
        "file": ("#f3f4f6", "#4b5563"),
        "input": ("#fef9c3", "#a16207"),
        "mlflow": ("#ede9fe", "#6d28d9"),
    }[kind]
    dash = ' stroke-dasharray="6 4"' if kind == "mlflow" else ""
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    out = [f"<g{extra}>"]
    out.append(
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="1.5"{dash}/>'
    )
    ty = y + h / 2 - (len(lines) - 1) * 8 + 5
    for i, line in enumerate(lines):
        bold = i == 0 and kind in ("stage", "mlflow")
        weight = ' font-weight="bold"' if bold else ""
        family = "monospace" if (i > 0 and kind == "stage") or kind == "file" else "sans-serif"
        out.append(
            f'<text x="{x + w / 2}" y="{ty + 16 * i}" text-anchor="middle" font-size="13" '
            f'font-family="{family}"{weight}>{escape(line)}</text>'
        )
    out.append("</g>")
    return "\n".join(out)


def _arrow(x1: float, y1: float, x2: float, y2: float, dashed: bool = False, **attrs: str) -> str:
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    return (
        f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#374151" stroke-width="1.5" '
        f'marker-end="url(#arrow)"{dash}{extra}/>'
    )


def pipeline_svg(dvc_yaml: dict[str, Any], dot: str) -> str:
    nodes, edges = dag_edges(dot)
    order = _chain(nodes, edges)
    stages = dvc_yaml["stages"]
    produced = {out: name for name, st in stages.items() for out in _outs(st)}
    w, h, gap, y = 240, 64, 50, 170
    parts: list[str] = []
    x = 30.0
    for i, name in enumerate(order):
        st = stages[name]
        code = [d for d in st.get("deps", []) if d not in produced]
        params = ", ".join(str(p) for p in st.get("params", []))
        inputs = [*_wrap(f"params.yaml: {params}", 36), *_wrap(", ".join(code), 36)]
        ih = 22 + 16 * len(inputs)
        parts.append(_box(x - 10, 20, w + 20, ih, inputs, "input"))
        parts.append(_arrow(x + w / 2, 20 + ih, x + w / 2, y))
        parts.append(_box(x, y, w, h, [name, st["cmd"]], "stage", data_stage=name))
        if "train.py" in st["cmd"]:
            lines = [
                "MLflow (not a DVC output)",
                "a run: params, metrics, plots, model",
                "a new version of churn -> @challenger",
            ]
            parts.append(_arrow(x + w / 2, y + h, x + w / 2, y + h + 56, dashed=True))
            parts.append(_box(x - 20, y + h + 56, w + 40, 70, lines, "mlflow"))
        outs = _outs(st)
        ow = 24 + 7.9 * max(len(o) for o in outs)
        oh = 22 + 16 * len(outs)
        ox = x + w + gap
        parts.append(_box(ox, y + h / 2 - oh / 2, ow, oh, outs, "file"))
        parts.append(_arrow(x + w, y + h / 2, ox, y + h / 2))
        x = ox + ow + gap
        if i + 1 < len(order):
            parts.append(
                _arrow(ox + ow, y + h / 2, x, y + h / 2, data_edge=f"{name}->{order[i + 1]}")
            )
    defs = (
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#374151"/></marker></defs>'
    )
    return _svg(round(x - gap + 30), 400, [defs, *parts], "The DVC pipeline of churn-mlops")


def _outs(stage: dict[str, Any]) -> list[str]:
    found = []
    for key in ("outs", "metrics", "plots"):
        for item in stage.get(key, []):
            found.append(next(iter(item)) if isinstance(item, dict) else str(item))
    return found


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def _svg(width: float, height: float, parts: list[str], title: str) -> str:
    body = "\n".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">\n<title>{escape(title)}</title>\n'
        f'<rect width="100%" height="100%" fill="white"/>\n{body}\n</svg>\n'
    )


# ---------------------------------------------------------------------------------------------
# Alias flow (SVG, from the ledger's records of the promotion and the two rollbacks)

ALIAS_COLOURS = {"champion": "#b45309", "challenger": "#0f766e", "prev-champion": "#6b7280"}


def alias_states(records: list[Any]) -> list[tuple[str, dict[str, int]]]:
    """(command, aliases after it) from the first promotion over a champion onwards."""
    moves = [r for r in reversed(records) if r.decision in ("promoted", "rolled-back")]
    moves = [r for r in moves if r.from_version is not None]
    if not moves or moves[0].action != "promote":
        raise SystemExit("docs.images: the ledger has no promotion over a champion to draw")
    first = moves[0]
    state = {"champion": first.from_version, "challenger": first.to_version}
    states = [("before", dict(state))]
    for r in moves:
        if r.action == "promote":
            state = {"champion": r.to_version, "prev-champion": r.from_version}
            states.append(("python promote.py", dict(state)))
        else:
            state = {"champion": state["prev-champion"], "prev-champion": state["champion"]}
            states.append(("python rollback.py", dict(state)))
    return states


def alias_flow_svg(states: list[tuple[str, dict[str, int]]]) -> str:
    versions = sorted({v for _, aliases in states for v in aliases.values()})
    col, top = 250, 70
    parts = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#374151"/></marker></defs>'
    ]
    captions = ["before", *("after" for _ in states[1:])]
    for i, (command, aliases) in enumerate(states):
        x = 20 + i * col
        parts.append(
            f'<text x="{x + 92}" y="{top + len(versions) * 70 + 14}" text-anchor="middle" '
            f'font-size="12" font-family="sans-serif" fill="#4b5563">{captions[i]}</text>'
        )
        if i:
            parts.append(_arrow(x - 60, top + 50, x - 12, top + 50))
            parts.append(
                f'<text x="{x - 36}" y="{top - 20}" text-anchor="middle" font-size="12" '
                f'font-family="monospace">{escape(command)}</text>'
            )
        for j, v in enumerate(versions):
            y = top + j * 70
            parts.append(
                f'<rect x="{x}" y="{y}" width="70" height="44" rx="6" fill="#f3f4f6" '
                f'stroke="#4b5563" stroke-width="1.5"/>'
                f'<text x="{x + 35}" y="{y + 27}" text-anchor="middle" font-size="14" '
                f'font-family="sans-serif" font-weight="bold">v{v}</text>'
            )
            names = [a for a, ver in aliases.items() if ver == v]
            for k, alias in enumerate(names):
                ay = y + 4 + k * 20
                parts.append(
                    f'<g data-alias="{alias}" data-version="{v}" data-step="{i}">'
                    f'<rect x="{x + 80}" y="{ay}" width="104" height="18" rx="9" '
                    f'fill="{ALIAS_COLOURS[alias]}"/><text x="{x + 132}" y="{ay + 13}" '
                    f'text-anchor="middle" font-size="11" font-family="sans-serif" '
                    f'fill="white">@{escape(alias)}</text></g>'
                )
    height = top + len(versions) * 70 + 30
    width = 20 + len(states) * col - 40
    return _svg(width, height, parts, "churn's aliases through a promotion and two rollbacks")


# ---------------------------------------------------------------------------------------------
# Screenshots: headless Chromium driven over the DevTools protocol (Debian's `chromium`)


class Chromium:
    """One headless Chromium page. The MLflow UI is a JS app: wait for text, not for time."""

    FLAGS = (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
    )  # fmt: skip

    def __init__(self, work: Path, width: int, height: int) -> None:
        from tests.docs.runner import free_port

        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            raise SystemExit("docs.images: no chromium (apt-get install -y chromium)")
        port = free_port()
        profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=work))
        self.proc = subprocess.Popen(
            [binary, *self.FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        target = self._page_target(port)
        from websockets.sync.client import connect

        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(target, max_size=None))
        self.next_id = 0
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip

    @staticmethod
    def _page_target(port: int) -> str:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("docs.images: chromium's DevTools endpoint did not answer")
            time.sleep(0.2)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, text: str, timeout: float = 60) -> None:
        """Navigate and wait until the page shows `text`; then close MLflow's assistant panel."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not self.js(f"document.body && document.body.innerText.includes({text!r})"):
            if time.monotonic() > deadline:
                raise SystemExit(f"docs.images: {url} never showed {text!r}")
            time.sleep(0.5)
        time.sleep(1.5)  # the last requests (aliases, tags) render a moment later
        self.js("document.querySelector('button[aria-label=Close]')?.click()")
        time.sleep(0.5)

    def top_of(self, text: str, prefix: bool = False) -> float:
        """The top of the first element whose own text is `text` (or starts with it)."""
        test = (
            f"starts-with(normalize-space(text()), '{text}')"
            if prefix
            else (f"normalize-space(text())='{text}'")
        )
        found = self.js(
            f'document.evaluate("//*[{test}]", document, null, 9, '
            "null).singleNodeValue?.getBoundingClientRect().top"
        )
        if found is None:
            raise SystemExit(f"docs.images: no {text!r} on the page")
        return float(found)

    def screenshot(self, path: Path, clip: tuple[float, float, float, float] | None = None) -> None:
        params: dict[str, Any] = {"format": "png"}
        if clip is not None:
            x, y, w, h = clip
            params["clip"] = {"x": x, "y": y, "width": w, "height": h, "scale": 1}
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stack.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=20)


@contextlib.contextmanager
def mlflow_ui(session: Any) -> Iterator[str]:
    """`make server` on the copy's store (the course's own command), until the block exits."""
    port = session.ports[5000]
    env = {**session.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        ["make", "server"], cwd=session.root, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        # Minutes, not seconds: on a loaded machine its four workers take long to start.
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("docs.images: make server did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a server still starting ignores SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def screenshots(session: Any, client: Any, work: Path) -> None:
    runs = client.search_runs(
        [client.get_experiment_by_name("churn").experiment_id], order_by=["metrics.auc DESC"]
    )
    ids = json.dumps([r.info.run_id for r in runs])
    experiment = json.dumps([runs[0].info.experiment_id])
    with mlflow_ui(session) as url:
        browser = Chromium(work, 1500, 2600)
        try:
            browser.open(f"{url}/#/compare-runs?runs={ids}&experiments={experiment}", "Metrics")
            browser.js(
                "[...document.querySelectorAll('button')].filter(b => (b.getAttribute("
                "'aria-label') || '').endsWith('Show diff only')).forEach(b => b.click())"
            )
            time.sleep(1)
            top, bottom = browser.top_of("Run details"), browser.top_of("Artifacts")
            browser.screenshot(IMAGES / "mlflow-runs.png", (170, top - 20, 980, bottom - top))
        finally:
            browser.close()
        browser = Chromium(work, 1500, 1000)
        try:
            _pages(browser, url, client, runs[0])
        finally:
            browser.close()


def _pages(browser: Chromium, url: str, client: Any, best: Any) -> None:
    """The pages that explain themselves: a training run (its name, description and dataset
    digest), the model (its description, the aliases), the champion's version (what it was
    trained on, what moved it) and the gate's evaluation run (the holdout as its input)."""
    run_page = f"{url}/#/experiments/{best.info.experiment_id}/runs/{best.info.run_id}"
    browser.open(run_page, best.info.run_name)
    browser.screenshot(
        IMAGES / "mlflow-run.png", (195, 0, 1290, browser.top_of("Parameters (", prefix=True))
    )
    browser.open(f"{url}/#/models/churn", "champion")
    browser.screenshot(IMAGES / "mlflow-model.png")
    champion = client.get_model_version_by_alias("churn", "champion")
    browser.open(f"{url}/#/models/churn/versions/{champion.version}", "Alias moves")
    browser.screenshot(IMAGES / "mlflow-version.png", (195, 0, 1290, browser.top_of("Tags")))
    evaluation = client.get_run(champion.tags["evaluation_run"])
    page = f"{url}/#/experiments/{evaluation.info.experiment_id}/runs/{evaluation.info.run_id}"
    browser.open(page, evaluation.info.run_name)
    browser.screenshot(
        IMAGES / "mlflow-evaluation.png",
        (195, 0, 1290, browser.top_of("Parameters (", prefix=True)),
    )


# ---------------------------------------------------------------------------------------------


def run_course(session: Any, last: str) -> None:
    from tests.docs import runner

    for page in runner.pages():
        for block in runner.parse(page):
            bad = [o for o in session.run(block) if not o.ok]
            if bad:
                for o in bad:
                    print(o.report(page), file=sys.stderr)
                raise SystemExit(
                    f"docs.images: {block.id} no longer matches its page; fix the page first "
                    "(python -m tests.docs.runner --update ...)"
                )
        print(f"docs.images: ran {page.name}", file=sys.stderr)
        if page.name == last:
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m docs.images", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--skip-screenshots", action="store_true", help="no chromium, no MLflow UI")
    args = p.parse_args(argv)
    from mlflow import MlflowClient

    from churn import ledger
    from tests.docs.runner import Session

    IMAGES.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="churn-docs-images-"))
    try:
        with Session.fresh(work) as session:
            run_course(session, LAST_PAGE)
            copy = session.root
            dot = subprocess.run(
                [str(copy / ".venv" / "bin" / "dvc"), "dag", "--dot"],
                cwd=copy, env=session.env, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            dvc_yaml = yaml.safe_load((copy / "dvc.yaml").read_text())
            (IMAGES / "pipeline.svg").write_text(pipeline_svg(dvc_yaml, dot))

            uri = f"sqlite:///{copy / 'mlflow.db'}"
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            champion = client.get_model_version_by_alias("churn", "champion")
            for name in ("roc.png", "confusion.png"):
                got = client.download_artifacts(str(champion.run_id), f"plots/{name}", str(work))
                shutil.copy(got, IMAGES / name)
            states = alias_states(ledger.history(client, None))
            (IMAGES / "alias-flow.svg").write_text(alias_flow_svg(states))
            if not args.skip_screenshots:
                screenshots(session, client, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for path in sorted(IMAGES.iterdir()):
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
