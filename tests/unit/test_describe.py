"""The texts the MLflow UI shows (churn.describe): names, and moves appended to descriptions."""

from __future__ import annotations

from churn import describe


def test_run_names_say_what_the_run_is() -> None:
    md5 = "3f2a91c8d0b7e6f5a4b3c2d1e0f9a8b7"
    assert describe.training_run_name("logistic_regression", md5, 42) == (
        "train logistic_regression data=3f2a91c seed=42"
    )
    assert describe.evaluation_run_name(4, 3) == "evaluate v4 vs v3"


def test_a_move_is_appended_under_its_heading_and_the_training_part_is_kept() -> None:
    training = "logistic_regression trained by run abc (train ...).\n\n- data: x"
    once = describe.with_move(training, "t1: @champion by promote.py")
    assert once == f"{training}\n\n{describe.MOVES_HEADING}\n- t1: @champion by promote.py"
    twice = describe.with_move(once, "t2: @prev-champion")
    assert twice == f"{once}\n- t2: @prev-champion"
    # A version with no description yet (registered by hand): the moves alone.
    assert describe.with_move("", "t1: x") == f"{describe.MOVES_HEADING}\n- t1: x"


def test_past_the_limit_the_oldest_moves_give_way_to_a_pointer_to_the_ledger() -> None:
    text = "trained " + "t" * 1000
    for i in range(describe.MAX_MOVES + 5):
        text = describe.with_move(text, f"move {i} " + "x" * 300)
    lines = text.splitlines()
    moves = lines[lines.index(describe.MOVES_HEADING) + 1 :]
    assert lines[0].startswith("trained") and len(moves) == describe.MAX_MOVES
    assert moves[0] == "- (earlier moves: churn history)"
    assert moves[-1].startswith(f"- move {describe.MAX_MOVES + 4} ")
    assert len(text) < 5000  # what MLflow stores of a description
