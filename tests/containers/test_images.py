"""The images, built for real: what each carries, who runs it, and what a code change rebuilds."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from deploy import containers
from deploy.containers import Engine
from tests.conftest import ROOT
from tests.containers.conftest import PREFIX, Built

# The first test of a session also builds every image (cold: ~10 min on a loaded 2-core machine).
pytestmark = [pytest.mark.containers, pytest.mark.timeout(2400)]

# Tools a serving image has no use for: test runners, linters, compilers.
NOT_IN_RUNTIME = ("pytest", "ruff", "mypy", "hypothesis", "schemathesis", "pyspark", "mkdocs")


def in_image(engine: Engine, image: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return engine.run("run", "--rm", "--network", "none", image, *argv, timeout=180)


def test_runtime_image_runs_as_non_root_and_carries_no_dev_tools(
    engine: Engine, built: Built
) -> None:
    api = built.tags["runtime"]
    uid = in_image(engine, api, "id", "-u")
    assert uid.returncode == 0 and uid.stdout.strip() == "10001", uid.stderr
    print(f"\nruntime user: uid {uid.stdout.strip()} (non-root)")
    probe = (
        "import importlib.util as u, shutil, sys; "
        f"found = [m for m in {NOT_IN_RUNTIME!r} if u.find_spec(m)]; "
        "found += [c for c in ('gcc', 'cc', 'g++', 'make') if shutil.which(c)]; "
        "print(','.join(found)); sys.exit(1 if found else 0)"
    )
    carried = in_image(engine, api, "python", "-c", probe)
    assert carried.returncode == 0, f"the runtime image carries {carried.stdout.strip()}"
    # What the service imports, imports: the app factory builds without a registry.
    factory = in_image(engine, api, "python", "-c", "import serve.app, uvicorn, uvloop, httptools")
    assert factory.returncode == 0, factory.stderr[-2000:]


def test_every_image_runs_as_non_root(engine: Engine, built: Built) -> None:
    for target, tag in built.tags.items():
        uid = in_image(engine, tag, "id", "-u")
        assert uid.returncode == 0 and uid.stdout.strip() == "10001", (target, uid.stderr)


def test_the_runtime_cmd_is_make_serves_command_line(engine: Engine, built: Built) -> None:
    inspected = engine.run(
        "image", "inspect", "--format", "{{json .Config.Cmd}}", built.tags["runtime"], check=True
    )
    cmd = json.loads(inspected.stdout)
    # What `make serve` runs, as make itself expands it (-n: print, do not run).
    shown = subprocess.run(
        ["make", "--no-print-directory", "-n", "serve", "HOST=0.0.0.0", "PORT=8000"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    make_argv = shlex.split(shown)
    assert Path(make_argv[0]).name == cmd[0] == "uvicorn"
    assert make_argv[1:] == cmd[1:]


def test_the_pipeline_image_holds_no_store_data_git_or_tests(engine: Engine, built: Built) -> None:
    """`COPY . .` sends what .dockerignore lets in: never the store, data, .git or tests."""
    banned = (".git", "tests", "mlflow.db", "mlartifacts", "data/customers.parquet", "reports",
              "deploy/team.env", ".dvc/cache")  # fmt: skip
    probe = f"import os; print([p for p in {banned!r} if os.path.exists('/app/' + p)])"
    found = in_image(engine, built.tags["pipeline"], "python", "-c", probe)
    assert found.returncode == 0 and found.stdout.strip() == "[]", found.stdout + found.stderr


def _layers(engine: Engine, image: str) -> list[str]:
    proc = engine.run("image", "inspect", "--format", "{{json .RootFS.Layers}}", image, check=True)
    return list(json.loads(proc.stdout))


def _context_copy(dest: Path) -> Path:
    """The build context (the files git knows, .dockerignore applies at build) in `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    for rel in listed:
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


def test_a_code_change_rebuilds_only_the_last_layers(
    engine: Engine, built: Built, tmp_path: Path
) -> None:
    before, after = f"{PREFIX}-builder:before", f"{PREFIX}-builder:after"
    try:
        containers.build(engine, "builder", before, built.bases)
        context = _context_copy(tmp_path / "context")
        app = context / "serve" / "app.py"
        app.write_text(app.read_text() + f"\n# a code-only change, {time.time()}\n")
        seconds = containers.build(engine, "builder", after, built.bases, context=context)
        print(f"\nwarm rebuild after a code-only change (builder): {seconds:.0f} s")
        old, new = _layers(engine, before), _layers(engine, after)
        # builder: ... | deps (uv sync --no-install-project) | COPY churn/ | COPY serve/ | uv sync
        assert len(old) == len(new)
        assert old[:-2] == new[:-2], "the dependency layer was rebuilt for a code-only change"
        assert old[-2] != new[-2] and old[-1] != new[-1]
    finally:
        # Untag only: `before` is the cached builder stage itself, which later builds reuse.
        untag = ["untag"] if engine.name == "podman" else ["rmi", "--no-prune"]
        engine.run(*untag, before, timeout=120)
        engine.run(*untag, after, timeout=120)
