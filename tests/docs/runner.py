"""Run the course: the runnable console blocks of README.md and docs/day-*.md, in one fresh copy
of the repository, in page order, comparing what each command prints with what the page shows.

A block is runnable when the line right above its fence is a `run` marker:

    <!-- run -->
    ```console
    $ python -m churn status
    champion: churn v1 (auc=0.8521, run 3f2a9c1d7e4b)
    ```

`$ ` starts a command; a line ending in `\\` continues it, and so do the lines of a heredoc
(`<<'EOF'` ... `EOF`). The lines after a command, up to the next `$ `, are what it prints
(stdout and stderr together, as a terminal shows them). A line `...` stands for any number of
lines. Every command must exit 0: a page shows a failing exit code with `; echo "exit $?"`.

Options, after `run:`:
  background            start the (single) command and leave it running until the session ends
                        (a server); its output so far is compared once it is ready
  ready=URL             background: wait (bounded) until URL answers 200
  timeout=S             seconds allowed (default 300 per command; 120 for `ready`)

A console block that is not run says why: `<!-- not run: the reason -->` on the line above.

What may differ between the page and a run (everything else must match exactly):
  * the copy's own path prints as /home/you/churn-mlops; the user as `you`;
  * hexadecimal ids of 12, 32 or 40 digits (run ids, git commits, md5s that legitimately vary),
    consistently: one id on the page stands for one id in the output, within a block;
  * timestamps, durations (`0.09s`, `12 s`), progress bars' rates, process ids, client ports,
    /tmp paths, the Makefile line in make's error lines;
  * ports: the session runs the API and the MLflow UI on free ports (make's PORT and
    MLFLOW_PORT), and 127.0.0.1:8000 / :5000 on the page stand for them.

Commands run as in a shell where `source .venv/bin/activate` was done (Day 1 says so), with the
repository's .venv symlinked into the copy (nothing is installed), as user `you` with a git
identity, and with no GITHUB_* variables (a learner's laptop, even when CI runs the course).

    python -m tests.docs.runner                              # run the course, report mismatches
    python -m tests.docs.runner --update docs/day-04-registry.md   # rewrite that page's outputs
    python -m tests.docs.runner --update --recapture   # every page's outputs and ids, one run
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churn.procs import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
SHOWN_ROOT = "/home/you/churn-mlops"
# A second API (Day 10's live A/B) runs beside the first: `PORT=8001 make serve`.
PAGE_PORTS = {"api": 8000, "ui": 5000, "second-api": 8001}
ELLIPSIS = "..."

_MARK = re.compile(r"^<!--\s*run(?::\s*(?P<opts>.*?))?\s*-->\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not run:\s*\S.*-->\s*$")
_FENCE = re.compile(r"^(?P<fence>`{3,})(?P<info>[\w-]*)\s*$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(?P<word>[A-Za-z_]+)\1")


def pages(root: Path = ROOT) -> list[Path]:
    """The course in order: the README first (a fresh clone), then the days."""
    return [root / "README.md", *sorted((root / "docs").glob("day-*.md"))]


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass
class Command:
    line: int  # 1-based line of the `$ ` in the page
    text: str  # what bash runs
    expected: list[str]
    out_start: int  # 0-based [out_start, out_end) lines of the page holding `expected`
    out_end: int


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the fence
    options: dict[str, str]
    commands: list[Command]

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"

    @property
    def background(self) -> bool:
        return "background" in self.options


@dataclass
class ConsoleBlock:
    """Any ```console block: runnable, or marked as not run (checked by the tests)."""

    page: Path
    line: int
    marked: bool


def _options(text: str | None) -> dict[str, str]:
    opts: dict[str, str] = {}
    for word in (text or "").replace(",", " ").split():
        key, _, value = word.partition("=")
        opts[key] = value
    return opts


def _fenced(lines: list[str], start: int) -> tuple[str, int, int] | None:
    """(info, first body line, closing fence line) of a fence opening at `start`."""
    m = _FENCE.match(lines[start].strip())
    if not m:
        return None
    fence = m["fence"]
    for end in range(start + 1, len(lines)):
        if lines[end].strip() == fence:
            return m["info"], start + 1, end
    raise ValueError(f"unclosed fence at line {start + 1}")


def console_blocks(path: Path) -> list[ConsoleBlock]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fenced = _fenced(lines, i) if lines[i].lstrip().startswith("```") else None
        if fenced is None:
            i += 1
            continue
        info, _, end = fenced
        if info == "console":
            above = lines[i - 1].strip() if i > 0 else ""
            marked = bool(_MARK.match(above) or _NOT_RUN.match(above))
            found.append(ConsoleBlock(path, i + 1, marked))
        i = end + 1
    return found


def parse(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _MARK.match(lines[i].strip())
        if m:
            fenced = _fenced(lines, i + 1) if i + 1 < len(lines) else None
            if fenced is None or fenced[0] != "console":
                raise ValueError(f"{path.name}:{i + 1}: a run marker must sit above ```console")
            _, body, end = fenced
            block = Block(path, i + 2, _options(m["opts"]), _commands(path, lines, body, end))
            if block.background and len(block.commands) != 1:
                raise ValueError(f"{block.id}: a background block runs exactly one command")
            blocks.append(block)
            i = end + 1
        elif lines[i].lstrip().startswith("```"):
            fenced = _fenced(lines, i)
            i = fenced[2] + 1 if fenced else i + 1  # a marker inside a fence is an example
        else:
            i += 1
    return blocks


def _commands(path: Path, lines: list[str], body: int, end: int) -> list[Command]:
    commands: list[Command] = []
    i = body
    if i >= end or not lines[i].startswith("$ "):
        raise ValueError(f"{path.name}:{i + 1}: a runnable block starts with a `$ ` command")
    while i < end:
        first = i
        text = [lines[i][2:]]
        heredoc = _HEREDOC.search(text[0])
        while text[-1].endswith("\\") and i + 1 < end:
            i += 1
            text.append(lines[i])
        if heredoc:
            while i + 1 < end and lines[i].strip() != heredoc["word"]:
                i += 1
                text.append(lines[i])
            if lines[i].strip() != heredoc["word"]:
                raise ValueError(f"{path.name}:{first + 1}: heredoc {heredoc['word']} not closed")
        i += 1
        out_start = i
        while i < end and not lines[i].startswith("$ "):
            i += 1
        expected = lines[out_start:i]
        commands.append(Command(first + 1, "\n".join(text), expected, out_start, i))
    return commands


# ---------------------------------------------------------------------------------------------
# Comparing


_TIME = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?:[+-]\d\d:?\d\d|Z| UTC| GMT)?"
    r"|\d{4}/\d\d/\d\d \d\d:\d\d:\d\d"
    r"|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT"
)
_DURATION = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?: ?(?:ms|s|seconds?)\b|s(?=[\s),]|$))")
_PID = re.compile(r"(?<=process \[)\d+(?=\])|(?<=\"pid\": )\d+")
_CLIENT = re.compile(r"(?<=127\.0\.0\.1:)\d+(?= - \")")
_TMP = re.compile(r"/tmp/[\w.+-]+(?:/[\w.+-]+)*")
# tqdm's progress bars (MLflow's artifact downloads): elapsed, remaining and rate vary.
# (how many files a model download has also varies: MLflow adds its own metadata file sometimes)
_PROGRESS = re.compile(r"\d+/\d+ \[\d\d:\d\d<(?:\d\d:\d\d|\?), *(?:[\d.]+|\?)(?:it/s|s/it)\]")
# make's "*** [Makefile:98: promote-ci] Error 2": the line moves whenever the Makefile grows.
_MAKEFILE_LINE = re.compile(r"(?<=\[Makefile:)\d+(?=: )")
_HEX = re.compile(r"(?<![0-9A-Za-z])(?:[0-9a-f]{40}|[0-9a-f]{32}|[0-9a-f]{12})(?![0-9A-Za-z])")


def template(line: str) -> tuple[str, tuple[str, ...]]:
    """The line with what may vary replaced by placeholders, and its hex ids in order."""
    line = line.rstrip()
    line = _PROGRESS.sub("<progress>", line)
    line = _TIME.sub("<time>", line)
    line = _TMP.sub("<tmp>", line)
    line = _PID.sub("<pid>", line)
    line = _CLIENT.sub("<port>", line)
    line = _MAKEFILE_LINE.sub("<line>", line)
    ids = tuple(_HEX.findall(line))
    line = _HEX.sub(lambda m: f"<hex{len(m[0])}>", line)
    line = _DURATION.sub("<duration>", line)
    return line, ids


def _trim(lines: list[str]) -> list[str]:
    lines = [ln.rstrip() for ln in lines]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def matches(expected: list[str], actual: list[str]) -> bool:
    """`actual` as `expected` shows it: `...` lines match any lines, placeholders any value of
    their kind, and each hex id on the page stands for one id in the output (and vice versa)."""
    pairs = _paired_ids(expected, actual)
    if pairs is None:
        return False
    forward: dict[str, str] = {}
    backward: dict[str, str] = {}
    for e, a in pairs:
        if forward.setdefault(e, a) != a or backward.setdefault(a, e) != e:
            return False
    return True


def _paired_ids(expected: list[str], actual: list[str]) -> list[tuple[str, str]] | None:
    """The page's hex ids paired with the output's, line by line; None when the lines differ."""
    exp = [None if ln.strip() == ELLIPSIS else template(ln) for ln in _trim(expected)]
    return _align(exp, [template(ln) for ln in _trim(actual)])


def _align(
    exp: list[tuple[str, tuple[str, ...]] | None], act: list[tuple[str, tuple[str, ...]]]
) -> list[tuple[str, str]] | None:
    """A line-by-line alignment (`None` = ellipsis), returning the hex ids paired up."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * (len(exp) + len(act)) + 100))
    failed: set[tuple[int, int]] = set()

    def go(i: int, j: int) -> list[tuple[str, str]] | None:
        if (i, j) in failed:
            return None
        if i == len(exp):
            result: list[tuple[str, str]] | None = [] if j == len(act) else None
        elif exp[i] is None:
            result = go(i + 1, j)
            if result is None and j < len(act):
                result = go(i, j + 1)
        elif j < len(act) and exp[i][0] == act[j][0]:  # type: ignore[index]
            rest = go(i + 1, j + 1)
            result = None if rest is None else [*zip(exp[i][1], act[j][1], strict=True), *rest]  # type: ignore[index]
        else:
            result = None
        if result is None:
            failed.add((i, j))
        return result

    return go(0, 0)


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class Outcome:
    command: Command
    actual: list[str]
    returncode: int
    ok: bool
    background: bool = False

    def report(self, page: Path) -> str:
        diff = difflib.unified_diff(
            _trim(self.command.expected), _trim(self.actual), "page", "run", lineterm="", n=2
        )
        status = "" if self.returncode == 0 else f" (exit {self.returncode}: must be 0)"
        return (
            f"{page.name}:{self.command.line}: $ {self.command.text.splitlines()[0]}{status}\n"
            + "\n".join(diff)
        )


def prepare_copy(dest: Path) -> Path:
    """A fresh clone (with the working tree's changes) that uses this checkout's .venv."""
    from tests.e2e.conftest import fresh_clone

    synced = ROOT / ".venv" / ".synced"
    if not synced.exists():
        raise RuntimeError(f"{synced} is missing: run `make setup` first")
    clone = fresh_clone(dest)
    (clone / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    # Older than .venv/.synced: make's `setup` prerequisite is satisfied, so no target of the
    # course re-runs `uv sync` (which would re-point the shared venv's editable install).
    for name in ("pyproject.toml", "uv.lock"):
        os.utime(clone / name, (0, 0))
    return clone


def _terminal(output: str) -> str:
    """What a terminal leaves on screen: a carriage return rewrites its line (progress bars)."""
    lines = []
    for line in output.split("\n"):
        parts = [part for part in line.split("\r") if part.strip()]
        lines.append(parts[-1] if parts else "")
    return "\n".join(lines)


@dataclass
class Session:
    """One copy of the repository, the course run in it block by block."""

    root: Path
    work: Path
    ports: dict[int, int] = field(default_factory=dict)
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def fresh(cls, work: Path) -> Iterator[Session]:
        session = cls(prepare_copy(work / "churn-mlops"), work)
        session.ports = {page: free_port() for page in PAGE_PORTS.values()}
        try:
            yield session
        finally:
            session.close()

    @property
    def env(self) -> dict[str, str]:
        from tests.e2e.conftest import clean_env

        env = {k: v for k, v in clean_env().items() if not k.startswith(("GITHUB_", "RUNNER_"))}
        # A learner's shell is no CI: with CI set, pytest (Day 7) prints its summary untruncated.
        env.pop("CI", None)
        if env.pop("PYTHONDONTWRITEBYTECODE", None):
            # No bytecode may be written into the shared venv; without any, every command
            # compiles MLflow again (4 s each). Keep this session's bytecode beside the copy.
            env["PYTHONPYCACHEPREFIX"] = str(self.work / "pycache")
        venv = self.root / ".venv"
        env.update(
            PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            VIRTUAL_ENV=str(venv),
            PYTHONUNBUFFERED="1",  # stdout and stderr interleave as in a terminal
            PORT=str(self.ports[PAGE_PORTS["api"]]),
            MLFLOW_PORT=str(self.ports[PAGE_PORTS["ui"]]),
            USER="you",
            LOGNAME="you",
            # The course commits; a learner's git knows who they are.
            GIT_AUTHOR_NAME="you",
            GIT_AUTHOR_EMAIL="you@example.com",
            GIT_COMMITTER_NAME="you",
            GIT_COMMITTER_EMAIL="you@example.com",
        )
        return env

    def to_session(self, text: str) -> str:
        for page, real in self.ports.items():
            text = re.sub(
                rf"(?<=127\.0\.0\.1:){page}\b|(?<=localhost:){page}\b|(?<=\bPORT=){page}\b",
                str(real),
                text,
            )
        return text

    def to_page(self, output: str) -> list[str]:
        output = _terminal(output).replace(str(self.root), SHOWN_ROOT)
        for page, real in self.ports.items():
            output = re.sub(
                rf"(?<=127\.0\.0\.1:){real}\b|(?<=localhost:){real}\b|(?<=--port ){real}\b",
                str(page),
                output,
            )
        return output.split("\n")

    def run(self, block: Block) -> list[Outcome]:
        if block.background:
            return [self._start(block)]
        outcomes = []
        for command in block.commands:
            timeout = float(block.options.get("timeout") or 300)
            proc = subprocess.run(**self._shell(command.text), timeout=timeout)
            # Bytes, not text mode: universal newlines would turn a progress bar's \r into lines.
            actual = self.to_page(proc.stdout.decode("utf-8", "replace"))
            ok = proc.returncode == 0 and matches(command.expected, actual)
            outcomes.append(Outcome(command, actual, proc.returncode, ok))
        return outcomes

    def _shell(self, text: str) -> dict[str, Any]:
        """How a page's command runs: bash in the copy, the learner's environment, no stdin,
        stdout and stderr together as a terminal shows them."""
        return {
            "args": ["bash", "-c", self.to_session(text)],
            "cwd": self.root,
            "env": self.env,
            "stdin": subprocess.DEVNULL,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.STDOUT,
        }

    def _start(self, block: Block) -> Outcome:
        (command,) = block.commands
        # start_new_session: its process group (make, uvicorn) is stopped as one
        proc = subprocess.Popen(**self._shell(command.text), start_new_session=True)
        self.background.append(proc)
        printed: list[bytes] = []
        threading.Thread(target=lambda: printed.extend(proc.stdout or ()), daemon=True).start()
        timeout = float(block.options.get("timeout") or 120)
        ready = block.options.get("ready")
        deadline = time.monotonic() + timeout
        if ready:
            url = self.to_session(ready)
            while not _answers(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        # Log lines may trail readiness by a moment: compare until they match, a few seconds.
        settle = time.monotonic() + 5
        while True:
            actual = self.to_page(b"".join(printed).decode("utf-8", "replace"))
            ok = proc.poll() is None and matches(command.expected, actual)
            if ok or time.monotonic() > settle:
                code = 0 if proc.poll() is None else proc.returncode
                return Outcome(command, actual, code, ok, background=True)
            time.sleep(0.25)

    def close(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
        self.background.clear()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Rewriting a page from a run (for maintainers)


def rewrite(page: Path, outcomes: list[Outcome], ids: bool = False) -> int:
    """Replace the shown output of each failed foreground command with what it printed; with
    `ids`, also give every matching output the ids this run printed (`recaptured`), so that the
    pages show one run's ids: a version has one run id on every page."""
    lines = page.read_text(encoding="utf-8").splitlines()
    changed = 0
    for o in sorted(outcomes, key=lambda o: o.command.out_start, reverse=True):
        if o.returncode != 0 or o.background:  # a server's log is edited by hand
            continue
        if o.ok and not ids:
            continue
        new = recaptured(o.command.expected, o.actual) if o.ok else _trim(o.actual)
        if new is None or new == _trim(o.command.expected):
            continue
        lines[o.command.out_start : o.command.out_end] = new
        changed += 1
    if changed:
        page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return changed


def recaptured(expected: list[str], actual: list[str]) -> list[str] | None:
    """The page's lines with each hex id replaced by the one the run printed in its place
    (its `...` lines, timestamps and layout kept); None when they do not match."""
    pairs = _paired_ids(expected, actual)
    if pairs is None:
        return None
    ids = dict(pairs)
    return [_HEX.sub(lambda m: ids.get(m[0], m[0]), ln) for ln in _trim(expected)]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.docs.runner", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("pages", nargs="*", type=Path, help="pages to check/rewrite (default: all)")
    p.add_argument("--update", action="store_true", help="rewrite mismatching outputs")
    p.add_argument(
        "--recapture",
        action="store_true",
        help="with --update: also rewrite the ids of matching outputs (all pages from one run)",
    )
    p.add_argument("--keep", action="store_true", help="keep the copy (its path is printed)")
    args = p.parse_args(argv)
    course = pages()
    named = [path.resolve() for path in args.pages] or course
    unknown = [path for path in named if path not in course]
    if unknown:
        p.error(f"not a course page: {', '.join(map(str, unknown))}")
    last = max(course.index(path) for path in named)
    work = Path(tempfile.mkdtemp(prefix="churn-docs-"))
    failures = 0
    start = time.monotonic()
    try:
        with Session.fresh(work) as session:
            print(f"copy: {session.root}", file=sys.stderr)
            for page in course[: last + 1]:
                outcomes: list[Outcome] = []
                for block in parse(page):
                    t0, cpu0 = time.monotonic(), _children_cpu()
                    done = session.run(block)
                    outcomes += done
                    bad = [o for o in done if not o.ok]
                    state = "ok" if not bad else "MISMATCH"
                    wall, cpu = time.monotonic() - t0, _children_cpu() - cpu0
                    print(f"{block.id:<40} {state:<8} {wall:6.1f} s  (cpu {cpu:5.1f} s)")
                    if page in named:
                        failures += len(bad)
                        for o in bad:
                            print(o.report(page) + "\n", file=sys.stderr)
                if args.update and page in named:
                    n = rewrite(page, outcomes, ids=args.recapture)
                    if n:
                        print(f"{page.relative_to(ROOT)}: rewrote {n} output(s)")
    finally:
        if args.keep:
            print(f"kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    cpu = _children_cpu()
    print(f"{time.monotonic() - start:.0f} s (cpu {cpu:.0f} s); {failures} mismatch(es)")
    return 1 if failures and not args.update else 0


if __name__ == "__main__":
    raise SystemExit(main())
