"""The gate's decision without moving an alias: what CI's decide job reports and hands on.

A workflow that separates deciding from promoting (pipeline.yml: the `decide` job, then the
`promote` job behind the `production` environment's reviewers) needs the decision as data:
the outcome, the versions it saw, the paired interval. This is promote.py's gate run as a dry
run through the library (`registry.promote(dry_run=True)`), with the same honest
re-evaluation: both versions re-scored on the challenger's held-out rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from churn import registry, settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from churn.evaluate import Evaluation

PROMOTE, KEEP, NOTHING = "promote", "keep", "nothing"


@dataclass(frozen=True)
class Decision:
    decision: registry.GateDecision | None  # None: no @challenger, nothing to decide
    # The re-evaluation the gate used (None: it gated on logged metrics).
    evaluation: Evaluation | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.decision is None:
            return NOTHING
        return PROMOTE if self.decision.promote else KEEP

    @property
    def champion(self) -> int | None:
        d = self.decision
        return d.champion.version if d is not None and d.champion is not None else None

    @property
    def challenger(self) -> int | None:
        return self.decision.challenger.version if self.decision is not None else None


@dataclass(frozen=True)
class Holdout:
    """Where the gate's holdout comes from (promote.py's --data, --holdout, --reevaluate)."""

    data_path: Path = settings.DATA_FILE  # the challenger's training data: its held-out split
    holdout_path: Path | None = None  # a file to score both on instead
    # True: no fair holdout is an error (HoldoutUnavailable, exit 3), not a fall-back to the
    # logged metrics (promote.py --reevaluate or --holdout).
    required: bool = False
    resamples: int | None = None  # bootstrap resamples (None: params.yaml)


def honest_reevaluator(
    client: MlflowClient,
    work_dir: Path,
    metric: str,
    params: settings.Params,
    done: list[Evaluation],
    note: Callable[[str], None],
    source: Holdout | None = None,
) -> registry.Reevaluator:
    """The honest gate's scores, for promote.py and decide-ci alike: both versions scored on
    one holdout (the challenger's held-out rows, or `source.holdout_path`); when there is no
    fair one, gate on the logged metrics (saying why through `note`) unless it is required."""
    from churn import evaluate

    source = source or Holdout()

    def reevaluate(
        champ: int, chal: int
    ) -> tuple[registry.Candidate, registry.Candidate, registry.PairedDiff] | None:
        try:
            holdout = evaluate.build_holdout(
                client, champ, chal, work_dir, source.data_path, source.holdout_path
            )
        except evaluate.HoldoutUnavailable as exc:
            if source.required:
                raise
            if not exc.quiet:
                note(f"no fresh holdout ({exc}); gating on logged metrics")
            return None
        note(f"re-evaluating v{champ} and v{chal} on {len(holdout.frame):,} rows: {holdout.source}")
        ev = evaluate.reevaluate(
            client,
            champ,
            chal,
            holdout,
            metric,
            params.threshold,
            source.resamples or params.gate.bootstrap_resamples,
            params.seed,
        )
        done.append(ev)
        return ev.champion, ev.challenger, ev.paired

    return reevaluate


def decide(
    client: MlflowClient,
    params: settings.Params,
    work_dir: Path,
    epsilon: float | None = None,
    note: Callable[[str], None] = lambda _msg: None,
) -> Decision:
    """The gate as promote.py would apply it now (params.yaml's metric; `epsilon` overrides
    gate.epsilon), changing nothing. The holdout is written to `work_dir` (log it from there).
    Raises as registry.promote does."""
    metric = params.gate.metric
    eps = params.gate.epsilon if epsilon is None else epsilon
    done: list[Evaluation] = []
    notes: list[str] = []

    def keep_note(msg: str) -> None:
        notes.append(msg)
        note(msg)

    again = honest_reevaluator(client, work_dir, metric, params, done, keep_note)
    result = registry.promote(client, metric, eps, dry_run=True, reevaluate=again)
    return Decision(result.decision, done[0] if done else None, notes)
