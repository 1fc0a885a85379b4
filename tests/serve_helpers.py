"""Shared helpers for the serve tests: a fake registry for unit tests, and process/HTTP helpers
for the tests that run the real service."""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serve.holder import LoadedModel
from serve.model_source import NoModelError, Target
from tests.conftest import ROOT


class FakePredictor:
    """P(churn) = tenure / 100 + offset: easy to predict in a test, checks the input frame."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.frames: list[pd.DataFrame] = []

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        self.frames.append(data)
        return np.clip(data["tenure"].to_numpy(dtype=np.float64) / 100 + self.offset, 0.0, 1.0)


@dataclass
class FakeRegistry:
    """What the registry holds, editable by a test: alias -> version, and loadable versions."""

    alias: str = "champion"
    aliases: dict[str, int] = field(default_factory=dict)
    predictors: dict[int, FakePredictor] = field(default_factory=dict)
    broken: set[int] = field(default_factory=set)
    unreachable: bool = False
    threshold: float = 0.5
    loads: list[int] = field(default_factory=list)

    def add(self, version: int, offset: float = 0.0, champion: bool = False) -> None:
        self.predictors[version] = FakePredictor(offset)
        if champion:
            self.aliases[self.alias] = version

    def resolve(self) -> Target:
        if self.unreachable:
            raise ConnectionError("tracking server unreachable")
        if self.alias not in self.aliases:
            raise NoModelError(
                f"no version of model 'churn' has alias @{self.alias} at sqlite:///fake.db: "
                "run the pipeline (make pipeline) to train and promote one"
            )
        return Target(self.aliases[self.alias], dict(self.aliases))

    def load(self, version: int) -> LoadedModel:
        self.loads.append(version)
        if version in self.broken:
            raise OSError(f"No such file or directory: '/artifacts/{version}/model.skops'")
        return LoadedModel(
            name="churn",
            version=version,
            run_id=f"run{version}",
            predictor=self.predictors[version],
            threshold=self.threshold,
            data_md5=f"md5-{version}",
            training_data="customers.parquet (generator)",
            metrics={"auc": round(0.8 + version / 100, 4)},
            loaded_at=datetime(2026, 7, 1, tzinfo=UTC),
            source=f"models:/churn/{version}",
        )


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# ---------------------------------------------------------------------------------------------
# The real service, started the way `make serve` starts it.


def serve_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The uvicorn command line `make serve` runs (read from `make -n`, so they cannot drift)."""
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", "serve", f"HOST={host}", f"PORT={port}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [line for line in out.splitlines() if "/bin/uvicorn" in line]
    assert len(lines) == 1, out
    argv = shlex.split(lines[0])
    argv[0] = str(ROOT / argv[0]) if not Path(argv[0]).is_absolute() else argv[0]
    return argv


@dataclass
class LoadResult:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    # (version the response reports, first probability), in completion order
    scored: list[tuple[int, float]] = field(default_factory=list)


def load_loop(
    url: str, body: dict[str, Any], stop: threading.Event, result: LoadResult, deadline_s: float
) -> None:
    """POST `body` to `url` back to back until `stop` is set or `deadline_s` passes."""
    import httpx

    end = time.monotonic() + deadline_s
    with httpx.Client(timeout=10.0) as client:
        while not stop.is_set() and time.monotonic() < end:
            try:
                resp = client.post(url, json=body)
            except httpx.HTTPError as exc:
                result.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if resp.status_code != 200:
                result.failures.append(f"{resp.status_code}: {resp.text[:200]}")
                continue
            result.ok += 1
            answer = resp.json()
            result.scored.append(
                (int(answer["model"]["version"]), answer["predictions"][0]["churn_probability"])
            )
