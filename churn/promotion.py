"""Promotion as a library call: gate @challenger against @champion, move the aliases, tag the
versions, log the evaluation and write the record, and return all of it as one `Promotion`.

promote.py prints a Promotion (`report`); deploy/ci.py's decide and promote steps write CI's
step outputs and job summary from one. Nothing reads another command's printed lines.

The honest gate re-scores both versions on one holdout: by default the rows train.py held out
of the data the challenger was trained on, which neither model trained on (`Holdout`). The rule
itself is churn.gate, the alias moves churn.registry.promote (under churn.registry_lock).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from churn import gate, registry, settings, tracking
from churn.errors import GATE_REFUSED, OK, RegistryStateError
from churn.settings import CHALLENGER, CHAMPION

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from churn.evaluate import Evaluation
    from churn.moves import Move

# Promotion.outcome
PROMOTED, WOULD_PROMOTE, KEPT, NOTHING = "promoted", "would-promote", "kept", "nothing"
# Options.evidence: both versions re-scored on one holdout, or the live outcomes of the customers
# each one served (the latest `churn live-eval` of exactly this champion and challenger).
HOLDOUT, LIVE = "holdout", "live"
EVIDENCE = (HOLDOUT, LIVE)

Note = Callable[[str], None]


@dataclass(frozen=True)
class Holdout:
    """Where the gate's holdout comes from (promote.py's --data, --holdout, --reevaluate)."""

    data_path: Path = settings.DATA_FILE  # the challenger's training data: its held-out split
    holdout_path: Path | None = None  # a file to score both on instead
    # True: no fair holdout is an error (HoldoutUnavailable, exit 3), not a fall-back to the
    # logged metrics (promote.py --reevaluate or --holdout).
    required: bool = False
    resamples: int | None = None  # bootstrap resamples (None: params.yaml)


@dataclass(frozen=True)
class Options:
    metric: str
    epsilon: float
    dry_run: bool = False  # decide and report; move no alias
    # None: re-evaluate when the challenger's data is here; False: gate on the logged metrics.
    reevaluate: bool | None = None
    holdout: Holdout = field(default_factory=Holdout)
    # Put a refusal on the record (ledger, evaluation run, version note). A promotion always is.
    record: bool = True
    evidence: str = HOLDOUT  # EVIDENCE


@dataclass(frozen=True)
class Promotion:
    """What a promotion decided and did. `decision` None: no @challenger, nothing to decide."""

    decision: gate.GateDecision | None
    promoted: bool
    dry_run: bool
    evaluation: Evaluation | None = None  # the holdout re-evaluation the gate used, if any
    # The evidence's run: in churn-evaluations (holdout, once on the record) or churn-live-eval.
    evaluation_run: str | None = None
    ledger_run: str | None = None  # the decision's record (churn.ledger)
    move: Move | None = None  # the alias moves and version tags written (None: none)
    notes: tuple[str, ...] = ()

    @property
    def outcome(self) -> str:
        d = self.decision
        if d is None:
            return NOTHING
        if not d.promote:
            return KEPT
        return PROMOTED if self.promoted else WOULD_PROMOTE

    @property
    def champion(self) -> int | None:
        d = self.decision
        return d.champion.version if d is not None and d.champion is not None else None

    @property
    def challenger(self) -> int | None:
        return self.decision.challenger.version if self.decision is not None else None

    @property
    def alias_moves(self) -> list[tuple[str, int | None, int | None]]:
        """(alias, version before, version after) for each alias written, in write order."""
        if self.move is None:
            return []
        return [(alias, self.move.before.get(alias), to) for alias, to in self.move.steps]

    @property
    def exit_code(self) -> int:
        """promote.py's: 0 promoted, would promote or nothing to do; 1 the gate refused."""
        return GATE_REFUSED if self.outcome == KEPT else OK


def run(
    client: MlflowClient,
    uri: str,
    params: settings.Params,
    options: Options,
    note: Note = lambda _msg: None,
    verify: Callable[[int], None] | None = None,
) -> Promotion:
    """Gate, move and record as `options` say. `verify` checks that a challenger the
    re-evaluation did not load loads (churn.registry.loads). Raises as churn.registry.promote."""
    done: list[Evaluation] = []
    notes: list[str] = []

    def keep_note(msg: str) -> None:
        notes.append(msg)
        note(msg)

    live: list[str] = []  # the live evaluation run the gate used
    with tempfile.TemporaryDirectory(prefix="churn-holdout-") as work:
        if options.evidence == LIVE:
            again = live_reevaluator(client, options.metric, live, keep_note, verify)
        else:
            again = honest_reevaluator(client, Path(work), options.metric, params, done,
                                       keep_note, options.holdout)  # fmt: skip
        with tracking.store_errors(uri):
            result = registry.promote(
                client,
                options.metric,
                options.epsilon,
                dry_run=options.dry_run,
                reevaluate=None if options.reevaluate is False else again,
                verify=verify,
                uri=uri,
            )
        ev = done[0] if done else None
        d = result.decision
        promotion = Promotion(
            d, result.promoted, result.dry_run, ev, live[0] if live else None, result.ledger_run,
            result.move, tuple(notes),
        )  # fmt: skip
        if d is None or not (result.promoted or (options.record and not d.promote)):
            return promotion
        with tracking.store_errors(uri):
            return _on_the_record(client, uri, promotion)


def decide(
    client: MlflowClient,
    uri: str,
    params: settings.Params,
    epsilon: float | None = None,
    record: bool = True,
    note: Note = lambda _msg: None,
) -> Promotion:
    """The gate as promote.py would apply it now (params.yaml's metric; `epsilon` overrides
    gate.epsilon), moving no alias; with `record` a refusal is on the record."""
    eps = params.gate.epsilon if epsilon is None else epsilon
    return run(client, uri, params, Options(params.gate.metric, eps, True, record=record), note)


def _on_the_record(client: MlflowClient, uri: str, p: Promotion) -> Promotion:
    """The evaluation run and the decision's record: a promotion's record was written with the
    move (churn.registry) and gains the evidence here; a refusal's is written here."""
    from churn import describe, evaluate, ledger

    d, ev = p.decision, p.evaluation
    assert d is not None
    eval_run = p.evaluation_run  # live evidence: its churn-live-eval run
    if ev is not None:
        eval_run = evaluate.log_evaluation(client, uri, ev, d, p.promoted)
    md5 = ev.holdout.md5 if ev is not None else None
    ledger_run = p.ledger_run
    if p.promoted:
        evidence = {"validated_on_md5": md5, "evaluation_run": eval_run}
        for key, value in evidence.items():
            if value is not None:
                client.set_model_version_tag(
                    settings.MODEL_NAME, str(d.challenger.version), key, value
                )
        if ledger_run is not None:
            ledger.annotate(client, ledger_run, holdout_md5=md5, evaluation_run_id=eval_run)
    else:
        kept = ledger.record_kept(client, uri, d, holdout_md5=md5, evaluation_run_id=eval_run)
        ledger_run = kept.run_id
    describe.note_promotion(client, d, p.promoted)
    return replace(p, evaluation_run=eval_run, ledger_run=ledger_run)


def honest_reevaluator(
    client: MlflowClient,
    work_dir: Path,
    metric: str,
    params: settings.Params,
    done: list[Evaluation],
    note: Note,
    source: Holdout,
) -> gate.Reevaluator:
    """The honest gate's scores: both versions scored on one holdout (the challenger's held-out
    rows, or `source.holdout_path`); when there is no fair one, gate on the logged metrics
    (saying why through `note`) unless it is required. Each evaluation is appended to `done`."""
    from churn import evaluate

    def reevaluate(
        champ: int, chal: int
    ) -> tuple[gate.Candidate, gate.Candidate, gate.PairedDiff] | None:
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
            client, champ, chal, holdout, metric, params.threshold,
            source.resamples or params.gate.bootstrap_resamples, params.seed,
        )  # fmt: skip
        done.append(ev)
        return ev.champion, ev.challenger, ev.paired

    return reevaluate


def live_reevaluator(
    client: MlflowClient,
    metric: str,
    used: list[str],
    note: Note,
    verify: Callable[[int], None] | None,
) -> gate.Reevaluator:
    """The gate's scores from live outcomes: the latest `churn live-eval` run that compared
    exactly this champion and challenger with enough outcomes (churn.live_eval.latest_evidence),
    on the gate metric; without one, RegistryStateError (exit 3) saying what to run. Its run id
    is appended to `used`. Nothing is loaded to score, so `verify` checks the challenger loads."""
    from churn.live_eval import latest_evidence

    def from_live(champ: int, chal: int) -> tuple[gate.Candidate, gate.Candidate, gate.PairedDiff]:
        evidence = latest_evidence(client, champ, chal)
        todo = "run churn live-eval --since ... --until ... once the outcomes are in"
        if evidence is None:
            raise RegistryStateError(
                f"no live evaluation of v{chal} against v{champ} with enough outcomes: {todo}"
            )
        if evidence.metric != metric:
            raise RegistryStateError(
                f"the live evaluation of v{chal} against v{champ} (run {evidence.run_id}) "
                f"compared {evidence.metric}, the gate {metric}: {todo} with gate.metric {metric}"
            )
        note(
            f"live evidence: run {evidence.run_id} ({evidence.outcomes:,} outcomes, "
            f"{evidence.since}..{evidence.until})"
        )
        if verify is not None:
            verify(chal)
        used.append(evidence.run_id)
        return evidence.scores(champ, chal)

    return from_live


# ---------------------------------------------------------------------------------------------
# How a Promotion reads (promote.py prints these; deploy/ci.py puts them in the job summary).


def verdict(p: Promotion) -> str:
    """One line: what happened (or would), e.g. `PROMOTED: @champion -> v4`."""
    d = p.decision
    if d is None:
        return f"no @{CHALLENGER} alias set: nothing to promote"
    if not d.promote:
        return gate.format_refusal(d)
    cold = " (cold start)" if d.champion is None else ""
    head = "DRY RUN: would move" if p.outcome == WOULD_PROMOTE else "PROMOTED:"
    return f"{head} @{CHAMPION} -> v{d.challenger.version}{cold}"


def report(p: Promotion) -> list[str]:
    """promote.py's output: both versions' scores, the paired interval, the verdict."""
    d = p.decision
    if d is None:
        return [verdict(p)]
    lines = gate.format_decision_header(d)
    if d.paired is not None:
        lines.append(gate.format_paired(d))
    return [*lines, verdict(p)]


def score_table(d: gate.GateDecision) -> str:
    """Both versions and their gate metric as a Markdown table."""
    rows = ["| alias | version | metric |", "|---|---|---|"]
    for role, candidate in ((CHAMPION, d.champion), (CHALLENGER, d.challenger)):
        if candidate is None:
            rows.append(f"| @{role} | none (cold start) | - |")
        else:
            rows.append(f"| @{role} | v{candidate.version} | {d.metric}={candidate.score:.4f} |")
    return "\n".join(rows)
