"""The arrows of docs/architecture.md, checked on every import statement of the project (ast).

    churn      the library and the `churn` command: nothing of the project but itself
    serve      the API: churn
    deploy     CI and deployment glue: churn, serve (k8s_lint checks the manifests against serve)
    bench      the benchmarks: churn, serve
    exercises  the course's exercises: churn
    train.py register.py promote.py rollback.py: churn
    tests, docs: anything (they check or show the rest)

Inside a package: churn's library never imports its command layer (churn/__main__.py,
churn/commands/); in serve/ only app.py includes the routers, and nothing imports app.py.
Also: no two modules of churn/, serve/ and deploy/ share a file name (issue 21: a name says what a
module does), no .py file of the project edits `sys.path`, and docs/architecture.md names only
paths that exist and the arrows written here.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

ANYTHING = frozenset({"churn", "serve", "deploy", "bench", "exercises", "tests", "docs",
                      "train", "register", "promote", "rollback"})  # fmt: skip
# What each part of the project may import of the project (itself included).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "churn": frozenset({"churn"}),
    "serve": frozenset({"churn", "serve"}),
    "deploy": frozenset({"churn", "serve", "deploy"}),
    "bench": frozenset({"churn", "serve", "bench"}),
    "exercises": frozenset({"churn", "exercises"}),
    "train": frozenset({"churn"}),
    "register": frozenset({"churn"}),
    "promote": frozenset({"churn"}),
    "rollback": frozenset({"churn"}),
    "tests": ANYTHING,
    "docs": ANYTHING,
}
# Inside a package: module prefix -> the files that may import it.
INNER: dict[str, tuple[str, ...]] = {
    "churn.commands": ("churn/__main__.py", "churn/commands/"),
    "churn.__main__": (),
    "serve.routes": ("serve/app.py", "serve/routes/"),
    "serve.app": (),
}
# Packages whose modules must not share a file name, and the names they share today, each with
# the reason it is not renamed yet. A stale entry fails too (remove it when the rename lands).
UNIQUE_NAMES = ("churn", "serve", "deploy")
SHARED_NAMES: dict[str, str] = {}
DOC = ROOT / "docs" / "architecture.md"
_SPAN = re.compile(r"`([^`\s]+)`")
_PATH = re.compile(r"\.?[\w*-]+(\.[\w*-]+)*(/[\w.*-]+)*/?")
_SUFFIXES = (".py", ".md", ".yml", ".yaml", ".json", ".toml", ".lock", ".env", ".sh")
MUTATORS = {"insert", "append", "extend", "remove", "pop", "clear", "reverse", "sort"}
NOT_PROJECT = {"site", "__pycache__", "node_modules", "mlartifacts", "mlruns"}


def project_sources(root: Path = ROOT) -> Iterator[Path]:
    """Every .py file of the project: no virtualenv, cache, build output or hidden directory."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in NOT_PROJECT)
        yield from (Path(folder) / f for f in sorted(files) if f.endswith(".py"))


def _part(rel: str) -> str:
    first = rel.split("/", 1)[0]
    return first.removesuffix(".py")


def _package(rel: str) -> list[str]:
    """The package a file's relative imports start from (`from . import x`)."""
    return rel.split("/")[:-1]


def imports(rel: str, source: str) -> Iterator[tuple[int, str]]:
    """(line, module) for each module a file imports; `from a import b` yields a and a.b (b may
    be a module), relative imports resolved, `importlib.import_module("x")` included."""
    for node in ast.walk(ast.parse(source, rel)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package(rel)
                up = package[: len(package) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            yield node.lineno, base
            names = (a.name for a in node.names if a.name != "*")
            yield from ((node.lineno, f"{base}.{name}" if base else name) for name in names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def arrow_violations(rel: str, source: str) -> list[str]:
    """Each import of `rel` that breaks an arrow, as `path:line imports X (why)`."""
    part = _part(rel)
    allowed = MAY_IMPORT.get(part, frozenset())
    found: dict[tuple[int, str], str] = {}  # one message per statement and rule
    for line, module in imports(rel, source):
        top = module.split(".", 1)[0]
        if top in ANYTHING and top not in allowed:
            why = f"{part} may import {sorted(allowed)}"
            found.setdefault((line, top), f"{rel}:{line} imports {module} ({why})")
        for prefix, importers in INNER.items():
            inside = module == prefix or module.startswith(prefix + ".")
            if inside and part == top and not rel.startswith(importers):
                who = f"only {', '.join(importers)} may" if importers else f"no {top}/ module may"
                found.setdefault((line, prefix), f"{rel}:{line} imports {module} ({who})")
    return [found[key] for key in sorted(found)]


def sys_path_edits(rel: str, source: str) -> list[str]:
    """Each place `rel` changes the import path: sys.path mutated, assigned, or imported bare."""
    tree = ast.parse(source, rel)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "sys"
            and "path" in [a.name for a in node.names]
        ):
            found.append(f"{rel}:{node.lineno} imports sys.path")
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "site.addsitedir":
            found.append(f"{rel}:{node.lineno} calls site.addsitedir")
        if not (isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.path"):
            continue
        up = parents.get(node)
        if (
            not isinstance(node.ctx, ast.Load)  # sys.path = ..., sys.path += ..., del sys.path
            or (isinstance(up, ast.Attribute) and up.attr in MUTATORS)  # sys.path.insert(...)
            or (isinstance(up, ast.Subscript) and not isinstance(up.ctx, ast.Load))  # [:0] = ...
        ):
            found.append(f"{rel}:{node.lineno} edits sys.path")
    return found


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


SOURCES = {_relative(p): p.read_text(encoding="utf-8") for p in project_sources()}


def test_every_part_of_the_project_declares_its_arrows() -> None:
    parts = {_part(rel) for rel in SOURCES}
    assert parts <= set(MAY_IMPORT), f"add to MAY_IMPORT: {sorted(parts - set(MAY_IMPORT))}"
    assert {"churn", "serve", "deploy", "bench", "tests"} <= parts  # the walk found the project
    assert not any("/.venv/" in f"/{rel}" for rel in SOURCES)


def test_the_arrows_point_one_way() -> None:
    broken = [v for rel, source in SOURCES.items() for v in arrow_violations(rel, source)]
    assert not broken, "imports against docs/architecture.md's arrows:\n" + "\n".join(broken)


def test_no_file_edits_sys_path() -> None:
    """Run a tool as a module from the root (`python -m docs.images`) instead."""
    edits = [e for rel, source in SOURCES.items() for e in sys_path_edits(rel, source)]
    assert not edits, "\n".join(edits)


def test_no_two_modules_share_a_name_across_packages() -> None:
    homes: dict[str, set[str]] = {}
    for rel in SOURCES:
        name = rel.rsplit("/", 1)[-1]
        if _part(rel) in UNIQUE_NAMES and name not in ("__init__.py", "__main__.py"):
            homes.setdefault(name, set()).add(_part(rel))
    shared = {name for name, parts in homes.items() if len(parts) > 1}
    new = sorted(f"{n}: in {', '.join(sorted(homes[n]))}" for n in shared - set(SHARED_NAMES))
    assert not new, "modules sharing a name across packages (name each for its job):\n" + "\n".join(
        new
    )
    stale = sorted(set(SHARED_NAMES) - shared)
    assert not stale, f"no longer shared, remove from SHARED_NAMES: {stale}"


@pytest.mark.parametrize(
    ("rel", "source", "expected"),
    [
        ("churn/x.py", "import serve.app", "churn/x.py:1 imports serve.app (churn may import"),
        ("churn/x.py", "from tests import conftest", "churn/x.py:1 imports tests "),
        ("serve/x.py", "from deploy import ci", "serve/x.py:1 imports deploy "),
        ("serve/x.py", "import bench.serve", "serve/x.py:1 imports bench.serve "),
        ("bench/x.py", "from deploy.ci import main", "bench/x.py:1 imports deploy.ci "),
        ("churn/a.py", "from .commands import live", "churn/a.py:1 imports churn.commands "),
        (
            "churn/x.py",
            "import importlib\nimportlib.import_module('serve.app')",
            ":2 imports serve",
        ),
        ("churn/x.py", "if TYPE_CHECKING:\n    from serve import holder", ":2 imports serve "),
        ("churn/score.py", "from churn import commands", "imports churn.commands (only churn/"),
        (
            "churn/x.py",
            "from churn.__main__ import main",
            "imports churn.__main__ (no churn/ module may)",
        ),
        ("serve/holder.py", "from serve.routes import scoring", "(only serve/app.py, serve/"),
        ("serve/routes/a.py", "from serve import app", "imports serve.app (no serve/ module may)"),
    ],
)
def test_a_broken_arrow_is_named(rel: str, source: str, expected: str) -> None:
    found = arrow_violations(rel, source)
    assert any(expected in v for v in found), found


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("serve/x.py", "from churn import schema\nimport fastapi"),
        ("deploy/x.py", "from serve.config import ServeSettings"),
        ("churn/__main__.py", "from churn import commands"),
        ("churn/commands/live.py", "from churn.commands import train"),
        ("serve/app.py", "from serve.routes import admin"),
        ("tests/unit/x.py", "import deploy.ci, bench.serve, serve.app"),
        ("churn/a/b.py", "from . import c\nfrom .. import settings"),
    ],
)
def test_an_arrow_kept_is_not_reported(rel: str, source: str) -> None:
    assert arrow_violations(rel, source) == []


@pytest.mark.parametrize(
    "source",
    [
        "import sys\nsys.path.insert(0, 'x')",
        "import sys\nsys.path.append('x')",
        "import sys\nsys.path = ['x']",
        "import sys\nsys.path[:0] = ['x']",
        "import sys\nsys.path += ['x']",
        "import sys\ndel sys.path[0]",
        "from sys import path",
        "import site\nsite.addsitedir('x')",
    ],
)
def test_a_sys_path_edit_is_found(source: str) -> None:
    assert sys_path_edits("tools/x.py", source), source


def test_reading_sys_path_is_not_an_edit() -> None:
    assert sys_path_edits("x.py", "import sys\nprint(sys.path[0], sys.path.index('x'))\n") == []


def named_paths(markdown: str) -> set[str]:
    """The repository paths a page names in code spans outside fenced blocks (`../x`: outside
    the repository, not checked)."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    return {
        span
        for span in _SPAN.findall(prose)
        if _PATH.fullmatch(span)
        and ("/" in span or span.endswith(_SUFFIXES))
        and not span.startswith("../")
    }


def test_every_path_the_architecture_page_names_exists() -> None:
    named = named_paths(DOC.read_text())
    assert len(named) > 40, named  # the page names the modules it describes
    missing = sorted(p for p in named if not any(ROOT.glob(p.rstrip("/"))))
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_the_architecture_page_names_every_module_of_churn() -> None:
    """serve/'s modules are listed in serve/README.md's Layout, which the page links to."""
    named = named_paths(DOC.read_text())
    modules = {rel for rel in SOURCES if re.fullmatch(r"churn/\w+\.py", rel)} - {
        "churn/__init__.py"
    }
    assert not modules - named, f"add to docs/architecture.md: {sorted(modules - named)}"


def test_the_architecture_page_shows_these_arrows() -> None:
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `(\w+)/` \| (.*) \|$", DOC.read_text(), re.M)}
    for part in ("churn", "serve", "deploy", "bench", "exercises"):
        shown = {s for s in _SPAN.findall(rows.get(part, "")) if s in ANYTHING} | {part}
        assert shown == MAY_IMPORT[part], f"docs/architecture.md's table, row {part}/: {shown}"


def test_named_paths_are_code_spans_outside_fences() -> None:
    page = "`churn/x.py` `params.yaml` `make test` `serve.app` `../shared/A.md`\n```\n`y/z`\n```\n"
    assert named_paths(page) == {"churn/x.py", "params.yaml"}
