"""The promotion gate: pure rules, no registry (tests/unit/test_gate.py, branch by branch).

A challenger is promoted when it beats the champion by at least epsilon on the gate metric and,
when both were scored on one holdout, the paired bootstrap interval of the difference lies on
the better side of 0. `churn.registry.promote` applies it; `churn.promotion` records and reports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from churn.settings import LOWER_IS_BETTER


@dataclass(frozen=True)
class Candidate:
    version: int
    score: float


@dataclass(frozen=True)
class PairedDiff:
    """challenger - champion with a bootstrap confidence interval: on one holdout, paired
    (`live` False), or on the live outcomes of the customers each version served (unpaired,
    churn.live_eval; `live` True)."""

    diff: float
    low: float
    high: float
    resamples: int
    rows: int  # holdout rows, or live outcomes of both groups
    confidence: float = 0.95
    live: bool = False

    @property
    def evidence(self) -> str:
        """The ledger's `gate` field: how the scores were obtained."""
        return "live" if self.live else "holdout"


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    metric: str
    epsilon: float
    champion: Candidate | None
    challenger: Candidate
    # The score the challenger had to reach (None on cold start).
    required: float | None
    # Set when both were re-evaluated on one holdout: the interval must exclude 0 too.
    paired: PairedDiff | None = None

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    @property
    def margin_met(self) -> bool:
        if self.required is None:
            return True
        return _meets(self.challenger.score, self.required, self.lower_is_better)


def _meets(score: float, required: float, lower_is_better: bool) -> bool:
    ok = score <= required if lower_is_better else score >= required
    # Round-off in `champion + epsilon` must not flip a tie the printed numbers show as passing.
    return ok or math.isclose(score, required, rel_tol=0.0, abs_tol=1e-12)


def gate(
    champion: Candidate | None,
    challenger: Candidate,
    metric: str,
    epsilon: float,
    paired: PairedDiff | None = None,
) -> GateDecision:
    """Promote iff the challenger beats the champion by at least `epsilon` on `metric`.

    For metrics where lower is better (log_loss) the challenger must be at most champion - epsilon.
    With `paired` (both scored on one holdout) the bootstrap interval of the difference must also
    lie on the better side of 0 (`interval_passes`). With no champion (cold start) the
    challenger is promoted.

    A tie (both score the holdout identically: difference 0, interval [0, 0]) is refused with
    epsilon > 0 (it is not better by epsilon) and promoted with epsilon 0 ("at least as good"),
    so an identical retrain can take over when a team asks for that.
    """
    if champion is None:
        return GateDecision(True, metric, epsilon, None, challenger, None, paired)
    lower = metric in LOWER_IS_BETTER
    required = champion.score - epsilon if lower else champion.score + epsilon
    ok = _meets(challenger.score, required, lower)
    if paired is not None:
        ok = ok and interval_passes(paired, epsilon, lower)
    return GateDecision(ok, metric, epsilon, champion, challenger, required, paired)


def interval_passes(paired: PairedDiff, epsilon: float, lower_is_better: bool) -> bool:
    """The interval rule. epsilon > 0 ("better by epsilon"): the interval must exclude 0,
    lower bound > 0 (upper bound < 0 when lower is better). epsilon 0 ("at least as good"):
    it may touch 0, lower bound >= 0 (upper bound <= 0): no resample found the challenger
    worse, so a tie, [0, 0], passes and a difference that may be negative still does not."""
    bound = -paired.high if lower_is_better else paired.low
    return bound >= 0.0 if epsilon == 0 else bound > 0.0


def format_decision_header(d: GateDecision) -> list[str]:
    m = d.metric
    champ = (
        f"champion   : v{d.champion.version}  {m}={d.champion.score:.4f}"
        if d.champion
        else "champion   : none (cold start)"
    )
    return [champ, f"challenger : v{d.challenger.version}  {m}={d.challenger.score:.4f}"]


def _signed(x: float) -> str:
    """`+0.0123`; a difference that rounds to zero is `+0.0000`, never `-0.0000`."""
    return f"{round(x, 4) + 0.0:+.4f}"


def format_paired(d: GateDecision) -> str:
    """`paired diff auc=+0.0123  95% CI [+0.0071, +0.0176] (1000 bootstrap resamples, ...)`;
    `live diff ... live outcomes)` for live evidence."""
    p = d.paired
    if p is None:
        raise ValueError("no paired evaluation in this decision")
    interval = f"{p.confidence:.0%} CI [{_signed(p.low)}, {_signed(p.high)}]"
    kind, rows = ("live", "live outcomes") if p.live else ("paired", "holdout rows")
    return (
        f"{kind} diff {d.metric}={_signed(p.diff)}  {interval} "
        f"({p.resamples} bootstrap resamples, {p.rows:,} {rows})"
    )


def format_refusal(d: GateDecision) -> str:
    op = "<=" if d.lower_is_better else ">="
    if d.margin_met and d.paired is not None:
        strict = d.epsilon != 0
        bound = "upper" if d.lower_is_better else "lower"
        side = ("<" if d.lower_is_better else ">") + ("" if strict else "=") + " 0"
        value = d.paired.high if d.lower_is_better else d.paired.low
        return (
            f"GATE FAILED: {d.paired.confidence:.0%} CI {bound} bound {_signed(value)} is not "
            f"{side} (the difference may be noise). No change."
        )
    return f"GATE FAILED: needs {op} {d.required:.4f}. No change."


# (champion version, challenger version) -> both scored on one holdout with the paired interval,
# or None to gate on the logged metrics instead.
Reevaluator = Callable[[int, int], tuple[Candidate, Candidate, PairedDiff] | None]
