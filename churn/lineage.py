"""Lineage: alias -> version -> run -> params/metrics -> git commit -> data bytes.

The answer to "what exactly is serving, and how do I rebuild it?" at 3 a.m.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from churn import settings
from churn.errors import RegistryStateError
from churn.registry_reads import aliases

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class Lineage:
    alias: str
    version: int
    run_id: str
    params: dict[str, str]
    metrics: dict[str, float]
    commit: str | None
    dirty: str | None
    data_md5: str | None
    training_data: str | None
    local_md5: str | None  # md5 of the data file in this checkout, None if it is missing
    other_aliases: tuple[str, ...]

    @property
    def data_matches(self) -> bool | None:
        if self.data_md5 is None or self.local_md5 is None:
            return None
        return self.data_md5 == self.local_md5


def lineage(
    client: MlflowClient, alias: str = settings.CHAMPION, data_file: Path = settings.DATA_FILE
) -> Lineage:
    from churn.provenance import file_md5

    by_alias = aliases(client)
    if alias not in by_alias:
        raise RegistryStateError(
            f"alias @{alias} not set on '{settings.MODEL_NAME}': "
            f"set aliases are {', '.join('@' + a for a in sorted(by_alias)) or 'none'}"
        )
    version = by_alias[alias]
    mv = client.get_model_version(settings.MODEL_NAME, str(version))
    run_id = str(mv.run_id)
    run = client.get_run(run_id)
    tags = run.data.tags
    return Lineage(
        alias=alias,
        version=version,
        run_id=run_id,
        params=dict(sorted(run.data.params.items())),
        metrics=dict(sorted(run.data.metrics.items())),
        commit=tags.get("mlflow.source.git.commit"),
        dirty=tags.get("git_dirty"),
        data_md5=tags.get("data_md5"),
        training_data=tags.get("training_data"),
        local_md5=file_md5(data_file) if data_file.exists() else None,
        other_aliases=tuple(sorted(a for a, v in by_alias.items() if v == version and a != alias)),
    )


def format_lineage(li: Lineage, data_file: str = "data/customers.parquet") -> list[str]:
    also = f"  (also @{', @'.join(li.other_aliases)})" if li.other_aliases else ""
    commit = li.commit or "unknown (trained outside a git checkout)"
    if li.commit and li.dirty == "true":
        commit += "  (tree was dirty: uncommitted changes are not in this commit)"
    if li.data_matches is None:
        local = "no local copy" if li.local_md5 is None else "no data_md5 recorded"
    elif li.data_matches:
        local = f"{data_file} matches"
    else:
        local = f"{data_file} differs (local md5 {li.local_md5})"
    lines = [
        f"alias          : @{li.alias}{also}",
        f"version        : {settings.MODEL_NAME} v{li.version}",
        f"run            : {li.run_id}",
        "params         : " + ", ".join(f"{k}={v}" for k, v in li.params.items()),
        "metrics        : " + ", ".join(f"{k}={v:.4f}" for k, v in li.metrics.items()),
        f"git commit     : {commit}",
        f"data_md5       : {li.data_md5 or 'not recorded'}  ({local})",
        f"training data  : {li.training_data or 'not recorded'}",
    ]
    if li.commit:
        short = li.commit[:12]
        lines += [
            f"reproduce      : git checkout {short} && dvc checkout {data_file} && python train.py",
            "                 (no cached data? `dvc pull` fetches it from the remote, "
            "or `dvc repro prepare` regenerates it)",
        ]
    return lines
