"""dvc.lock must describe the committed code and params, or a fresh clone's `make pipeline`
rewrites it (and the commit no longer pins how the champion was built)."""

from __future__ import annotations

import pytest
import yaml

from churn.provenance import file_md5
from tests.conftest import ROOT

LOCK = yaml.safe_load((ROOT / "dvc.lock").read_text())
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_lock_has_every_stage_of_dvc_yaml() -> None:
    assert set(LOCK["stages"]) == set(STAGES)


@pytest.mark.parametrize(
    "stage_dep",
    [
        (stage, dep["path"], dep["md5"])
        for stage, body in LOCK["stages"].items()
        for dep in body.get("deps", [])
        if (ROOT / dep["path"]).suffix == ".py"
    ],
    ids=lambda v: f"{v[0]}:{v[1]}",
)
def test_code_dependencies_match_the_lock(stage_dep: tuple[str, str, str]) -> None:
    stage, path, md5 = stage_dep
    assert file_md5(ROOT / path) == md5, (
        f"dvc.lock is stale for {path} ({stage} stage): run `make pipeline` and commit dvc.lock"
    )


def test_params_match_the_lock() -> None:
    for stage, body in LOCK["stages"].items():
        for key, value in body.get("params", {}).get("params.yaml", {}).items():
            assert PARAMS[key] == value, (
                f"dvc.lock is stale for params.yaml:{key} ({stage} stage): "
                "run `make pipeline` and commit dvc.lock"
            )
