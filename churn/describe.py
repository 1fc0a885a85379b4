"""What the MLflow UI says about our runs, the registered model `churn` and its versions.

MLflow names an unnamed run `enchanting-rook-11` and leaves descriptions empty, so a person
opening the UI cannot tell a run or a version apart from the next one. The texts here are built
from what the runs already record (params, tags, the dataset input), so they never disagree
with them:

- run names: `train logistic_regression data=3f2a91c seed=42`, `evaluate v4 vs v3`;
- the registered model's description: what it predicts and what moves each alias;
- each version's description: what it was trained on, then one line per alias move that
  touched it (appended, so the training part and earlier moves are kept).

The ledger (`churn history`) stays the record of decisions; these lines are its summary where
people look first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from churn import schema
from churn.errors import first_line
from churn.settings import CHALLENGER, CHAMPION, MODEL_NAME, PREV_CHAMPION

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from churn.gate import GateDecision
    from churn.registry import Registration, RollbackResult

log = logging.getLogger(__name__)

# The DVC md5 shortened as git shortens commits: enough to tell snapshots apart in a list.
SHORT = 7
# The heading under which alias moves are appended to a version's description.
MOVES_HEADING = "**Alias moves**"
# Moves kept in a description: MLflow stores at most 5,000 characters and a promotion's line
# takes ~250. Older ones are in the ledger.
MAX_MOVES = 10

MODEL_DESCRIPTION = f"""\
Predicts the probability that a customer churns (label `{schema.LABEL_COLUMN}`), from the \
features of `churn/schema.py`: `predict` returns one probability per row.

Where the aliases come from:
- **@{CHALLENGER}**: the newest trained version, set by `train.py` (`churn train`, the DVC \
`train` stage).
- **@{CHAMPION}**: the version the service serves. `promote.py` moves it to @{CHALLENGER} only \
when the challenger beats it by the gate of `params.yaml` (both re-scored on one holdout, the \
paired bootstrap interval above 0); `register.py --alias {CHAMPION}` sets it without the gate.
- **@{PREV_CHAMPION}**: the champion the last move replaced; `rollback.py` swaps it with \
@{CHAMPION}.

Each version's description says what it was trained on and which moves touched it; every \
decision is recorded in the experiment `churn-ledger` (`churn history`). A model named \
`{MODEL_NAME}.lock` that appears for a few seconds is the registry lock of a move in progress, \
not a model."""


def training_run_name(model_type: str, data_md5: str, seed: int) -> str:
    """`train logistic_regression data=3f2a91c seed=42`: what the run is, in the runs list."""
    return f"train {model_type} data={data_md5[:SHORT]} seed={seed}"


def training_run_note(model_type: str, training_data: str, data_md5: str, rows: int) -> str:
    """The run's description in the UI (MLflow's `mlflow.note.content` tag)."""
    return f"{model_type} trained on {training_data}: {rows:,} rows, DVC md5 `{data_md5}`."


def evaluation_run_name(challenger: int, champion: int) -> str:
    return f"evaluate v{challenger} vs v{champion}"


def lock_description(who: str, stale_after_s: float) -> str:
    """The registry lock is a registered model (see churn.registry): say so on its page."""
    return (
        f"Not a model: the registry lock of '{MODEL_NAME}', held by {who}. While it exists, "
        f"other changes to the aliases of '{MODEL_NAME}' (promote.py, rollback.py, register.py "
        "--alias) refuse with exit 3; it is deleted when the change ends (seconds). Delete it by "
        "hand only if that process is gone; a run finding it older than "
        f"{stale_after_s:.0f} s takes it over."
    )


# ---------------------------------------------------------------------------------------------
# Versions: what they were trained on.


def _rows(run: Run) -> int | None:
    """Rows of the run's training dataset, from the profile MLflow computed when it was logged."""
    for item in run.inputs.dataset_inputs if run.inputs else []:
        contexts = {t.value for t in item.tags if t.key == "mlflow.data.context"}
        if "training" in contexts and item.dataset.profile:
            rows = json.loads(item.dataset.profile).get("num_rows")
            return int(rows) if rows is not None else None
    return None


def _code(tags: Mapping[str, str]) -> str:
    commit = tags.get("mlflow.source.git.commit")
    if commit is None:
        return "code: not in a git checkout (no commit recorded)"
    dirty = " with uncommitted changes" if tags.get("git_dirty") == "true" else ""
    return f"code: git commit `{commit[:12]}`{dirty}"


def version_description(run: Run) -> str:
    """The training part of a version's description, from its source run alone."""
    tags, params = run.data.tags, run.data.params
    rows = _rows(run)
    data = tags.get("training_data", "data not recorded")
    if rows is not None:
        data += f", {rows:,} rows"
    if "data_md5" in tags:
        data += f", DVC md5 `{tags['data_md5']}`"
    split = params.get("split.test_size")
    if split is not None:
        data += f"; {float(split):.0%} held out (seed {params.get('seed', '?')})"
    model_type = params.get("model.type", "model")
    hyper = [
        f"`{k}={v}`" for k, v in sorted(params.items()) if k.startswith(f"model.{model_type}.")
    ]
    if "threshold" in params:
        hyper.append(f"`threshold={params['threshold']}`")
    held_out = "  ".join(f"{k}={v:.4f}" for k, v in sorted(run.data.metrics.items()))
    name = run.info.run_name or run.info.run_id
    return "\n".join(
        [
            # Plain text first: the versions table of the UI shows this line unrendered.
            f"{model_type} trained by run {run.info.run_id} ({name}).",
            "",
            f"- data: {data}",
            f"- {_code(tags)}",
            f"- params: {', '.join(hyper) or 'none logged'}",
            f"- held-out metrics: {held_out or 'none logged'}",
        ]
    )


def describe_version(client: MlflowClient, version: int, run_id: str) -> None:
    """Describe the registered model (when its text changed) and `version` (training part;
    any moves already appended are kept)."""
    model = client.get_registered_model(MODEL_NAME)
    if (model.description or "") != MODEL_DESCRIPTION:
        client.update_registered_model(MODEL_NAME, description=MODEL_DESCRIPTION)
    current = client.get_model_version(MODEL_NAME, str(version)).description or ""
    _, sep, moves = current.partition(MOVES_HEADING)
    text = version_description(client.get_run(run_id))
    text = f"{text}\n\n{sep}{moves}".rstrip()
    client.update_model_version(MODEL_NAME, str(version), description=text)


# ---------------------------------------------------------------------------------------------
# Versions: what moved them. Appended; a failure to describe never fails the move itself.


def append_move(client: MlflowClient, version: int, line: str) -> None:
    """Append `line` (time-stamped) under MOVES_HEADING of `version`'s description."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        current = client.get_model_version(MODEL_NAME, str(version)).description or ""
        client.update_model_version(
            MODEL_NAME, str(version), description=with_move(current, f"{when}: {line}")
        )
    except Exception as exc:  # the move is done and in the ledger; the text is a convenience
        log.warning("could not describe the move on v%d (%s): %s", version, first_line(exc), line)


def with_move(description: str, line: str) -> str:
    """`description` with `line` appended to its moves (the oldest dropped past MAX_MOVES)."""
    head, _, moves = description.partition(MOVES_HEADING)
    lines = [x for x in moves.strip().splitlines() if x.startswith("- ")] + [f"- {line}"]
    dropped = len(lines) > MAX_MOVES
    lines = lines[-MAX_MOVES:]
    if dropped:
        lines[0] = "- (earlier moves: churn history)"
    return "\n".join([head.rstrip(), "", MOVES_HEADING, *lines]).lstrip()


def _score(d: GateDecision, score: float) -> str:
    return f"{d.metric}={score:.4f}"


def note_promotion(client: MlflowClient, d: GateDecision, promoted: bool) -> None:
    """promote.py's decision, on the versions it concerns (after its evaluation run is tagged)."""
    from churn.gate import format_paired, format_refusal

    chal, champ = d.challenger, d.champion
    if champ is None:
        if promoted:
            append_move(
                client, chal.version, f"@{CHAMPION} by promote.py (cold start, no champion)"
            )
        return
    evidence = f" ({_score(d, champ.score)} vs {_score(d, chal.score)}"
    if d.paired is not None:
        evidence += f"; {format_paired(d)}"
    tags = client.get_model_version(MODEL_NAME, str(chal.version)).tags or {}
    if promoted and "evaluation_run" in tags:
        evidence += f"; evaluation run `{tags['evaluation_run']}`"
    evidence += ")"
    if not promoted:
        refusal = format_refusal(d)
        append_move(client, chal.version, f"promote.py kept v{champ.version}{evidence}: {refusal}")
        return
    append_move(client, chal.version, f"@{CHAMPION} by promote.py over v{champ.version}{evidence}")
    append_move(
        client, champ.version, f"@{PREV_CHAMPION}: replaced as @{CHAMPION} by v{chal.version}"
    )


def note_rollback(client: MlflowClient, r: RollbackResult) -> None:
    if r.dry_run:
        return
    append_move(
        client, r.prev_before, f"@{CHAMPION} again by rollback.py (v{r.champion_before} demoted)"
    )
    append_move(
        client,
        r.champion_before,
        f"@{PREV_CHAMPION} by rollback.py, tagged rolled_back (v{r.prev_before} restored)",
    )


def note_registration(client: MlflowClient, reg: Registration, reason: str | None) -> None:
    """register.py --alias: only @champion is a move people need explained (forced: no gate
    ran; `reason` is the one --reason gave)."""
    if reg.alias != CHAMPION:
        return
    over = f" over v{reg.prev_champion}" if reg.prev_champion is not None else ""
    why = f" ({reason})" if reason else ""
    append_move(client, reg.version, f"@{CHAMPION} by register.py{over}, without the gate{why}")
    if reg.prev_champion is not None:
        append_move(
            client,
            reg.prev_champion,
            f"@{PREV_CHAMPION}: replaced as @{CHAMPION} by v{reg.version} (register.py)",
        )
