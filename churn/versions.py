"""Every version of model `churn` with its aliases and evidence: `python -m churn versions`.

The registry's own listing shows versions; this adds what a person deciding about one needs on
the same line: the gate metric its run logged, the data it was trained on (the run's
`data_md5`), and what the project did to it, read from the tags the registry operations write
(`promoted_over`, `validated_by`, `rolled_back`, `retired`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from churn import settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Version tags that mark what happened to a version (written by churn.registry and `retire`).
PROMOTED_OVER = "promoted_over"
VALIDATED_BY = "validated_by"
ROLLED_BACK = "rolled_back"
RETIRED = "retired"
_ALIAS_ORDER = {alias: n for n, alias in enumerate(settings.ALIASES)}


@dataclass(frozen=True)
class VersionRow:
    version: int
    aliases: list[str]
    metric: str
    score: float | None  # the gate metric as the version's run logged it
    data_md5: str | None
    created: str  # ISO 8601, UTC
    run_id: str
    promoted_over: str | None
    validated_by: str | None
    rolled_back: bool
    retired: str | None

    @property
    def marks(self) -> list[str]:
        out: list[str] = []
        if self.promoted_over is not None:
            cold = self.promoted_over.startswith("cold-start")
            rest = self.promoted_over.removeprefix("cold-start")
            out.append(f"promoted at cold start{rest}" if cold else f"promoted over {rest}")
        if self.rolled_back:
            out.append("rolled back")
        if self.retired is not None:
            out.append(
                "retired" + (f": {self.retired}" if self.retired not in ("", "true") else "")
            )
        return out

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "marks": self.marks}


def versions(client: MlflowClient, metric: str) -> list[VersionRow]:
    """Every version of `churn`, newest first. RegistryStateError if there is no such model."""
    from churn.registry import aliases

    by_version: dict[int, list[str]] = {}
    for alias, version in aliases(client).items():
        by_version.setdefault(version, []).append(alias)
    found = client.search_model_versions(f"name = '{settings.MODEL_NAME}'")
    rows = [_row(client, mv, metric, by_version.get(int(mv.version), [])) for mv in found]
    return sorted(rows, key=lambda r: r.version, reverse=True)


def _row(client: MlflowClient, mv: Any, metric: str, names: list[str]) -> VersionRow:
    from mlflow.exceptions import MlflowException

    tags = dict(mv.tags or {})
    score, run_md5 = None, None
    try:
        run = client.get_run(str(mv.run_id))
        score = run.data.metrics.get(metric)
        run_md5 = run.data.tags.get("data_md5")
    except MlflowException as exc:  # a deleted run: the version is still listed
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    created = datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, UTC)
    return VersionRow(
        version=int(mv.version),
        aliases=sorted(names, key=lambda a: (_ALIAS_ORDER.get(a, len(_ALIAS_ORDER)), a)),
        metric=metric,
        score=score,
        data_md5=run_md5 or tags.get("data_md5"),
        created=created.isoformat(timespec="seconds"),
        run_id=str(mv.run_id),
        promoted_over=tags.get(PROMOTED_OVER),
        validated_by=tags.get(VALIDATED_BY),
        rolled_back=tags.get(ROLLED_BACK) == "true",
        retired=tags.get(RETIRED),
    )


def format_table(rows: list[VersionRow], metric: str) -> list[str]:
    """One line per version, under a header; the md5 shortened to 12 characters (--json has
    it whole)."""
    header = (
        f"{'version':<7}  {'aliases':<30}  {metric:>8}  {'data md5':<12}  "
        f"{'created (UTC)':<19}  marks"
    )
    lines = [header]
    for r in rows:
        names = " ".join(f"@{a}" for a in r.aliases) or "-"
        score = f"{r.score:.4f}" if r.score is not None else "-"
        when = datetime.fromisoformat(r.created).strftime("%Y-%m-%d %H:%M:%S")
        md5 = (r.data_md5 or "-")[:12]
        line = f"{'v' + str(r.version):<7}  {names:<30}  {score:>8}  {md5:<12}  {when:<19}  " + (
            ", ".join(r.marks) or "-"
        )
        lines.append(line.rstrip())
    return lines
