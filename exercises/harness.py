"""What every day's checks share: load the learner's file, run named checks, report in plain words.

A check is a function that returns None when right, or one sentence saying what is wrong. A check
that raises is reported as failing with the exception's first line, so an unfinished skeleton
(`raise NotImplementedError`) reads "not written yet" instead of a traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mlflow takes seconds to import: only the days with a store pay for it
    from mlflow import MlflowClient

Check = Callable[[], str | None]


class LearnerFileError(Exception):
    """The learner's file is missing or does not import: no check can run."""


class NotReached(Exception):
    """A check that needs an earlier step's result, when that step failed."""


@dataclass
class Report:
    day: int
    problems: list[str] = field(default_factory=list)
    passed: int = 0

    @property
    def total(self) -> int:
        return self.passed + len(self.problems)

    def run(self, name: str, check: Check) -> None:
        try:
            problem = check()
        except NotReached:
            problem = f"{name}: not checked, an earlier step failed (see above)"
        except NotImplementedError:
            problem = f"{name}: not written yet (the skeleton still raises NotImplementedError)"
        except Exception as exc:  # the learner's code may raise anything: report it, go on
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            problem = f"{name}: raised {type(exc).__name__}" + (f": {first}" if first else "")
        if problem is None:
            self.passed += 1
        else:
            self.problems.append(problem)

    def lines(self) -> list[str]:
        if not self.problems:
            return [f"Day {self.day}: all {self.total} checks pass"]
        failing = len(self.problems)
        return [
            *(f"  - {p}" for p in self.problems),
            f"Day {self.day}: {failing} of {self.total} checks fail",
        ]


def load(path: Path) -> ModuleType:
    """Import the learner's file under a private name, fresh each time (they edit and re-run)."""
    if not path.is_file():
        raise LearnerFileError(f"{path} does not exist: restore it with `git checkout {path}`")
    name = f"_exercise_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs: pydantic and dataclasses resolve annotations through sys.modules.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise LearnerFileError(
            f"{path} does not import: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc
    finally:
        sys.modules.pop(name, None)
    return module


def function(module: ModuleType, name: str) -> Callable[..., object]:
    fn = getattr(module, name, None)
    if not callable(fn):
        raise LearnerFileError(f"{module.__file__} has no function {name}(): keep its signature")
    return fn


_TEMPLATE: list[Path] = []  # an empty, migrated store, made once per process


def _template() -> Path:
    """A new SQLite store runs MLflow's ~50 schema migrations: seconds each time on a busy
    machine. Run them once, then every store is a copy of that empty database."""
    from mlflow import MlflowClient

    if not _TEMPLATE:
        home = Path(tempfile.mkdtemp(prefix="churn-exercise-template-"))
        atexit.register(shutil.rmtree, home, ignore_errors=True)
        quiet = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic")]
        levels = [log.level for log in quiet]
        # The migrations log a dozen INFO lines: noise between the learner's results.
        for log in quiet:
            log.setLevel(logging.WARNING)
        try:
            uri = f"sqlite:///{home / 'mlflow.db'}"
            MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()
        finally:
            for log, level in zip(quiet, levels, strict=True):
                log.setLevel(level)
        _TEMPLATE.append(home / "mlflow.db")
    return _TEMPLATE[0]


@contextlib.contextmanager
def sqlite_store() -> Iterator[tuple[str, MlflowClient]]:
    """A real MLflow store (SQLite) in a temporary directory, removed after."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="churn-exercise-") as tmp:
        db = Path(tmp) / "mlflow.db"
        shutil.copyfile(_template(), db)
        uri = f"sqlite:///{db}"
        yield uri, MlflowClient(tracking_uri=uri, registry_uri=uri)
