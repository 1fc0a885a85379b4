"""The course runner's own logic: how pages are parsed and how outputs are compared."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs import runner
from tests.docs.runner import matches


def page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "day-99-test.md"
    path.write_text(text)
    return path


def test_parse_commands_continuations_heredocs_and_outputs(tmp_path: Path) -> None:
    path = page(
        tmp_path,
        "intro\n\n<!-- run -->\n```console\n"
        "$ echo one \\\n    two\none two\n"
        "$ sh <<'EOF'\n$ echo in-heredoc\nEOF\nprinted\n"
        "$ true\n```\n\n```console\n$ not run\n```\n",
    )
    (block,) = runner.parse(path)
    assert block.line == 4 and block.id == "day-99-test.md:4" and not block.background
    assert [c.text for c in block.commands] == [
        "echo one \\\n    two",
        "sh <<'EOF'\n$ echo in-heredoc\nEOF",
        "true",
    ]
    assert [c.expected for c in block.commands] == [["one two"], ["printed"], []]
    assert [c.line for c in block.commands] == [5, 8, 12]
    assert [b.marked for b in runner.console_blocks(path)] == [True, False]


def test_options_and_markers(tmp_path: Path) -> None:
    path = page(
        tmp_path,
        "<!-- run: background ready=http://127.0.0.1:8000/ready timeout=60 -->\n"
        "```console\n$ make serve\n...\n```\n<!-- not run: needs docker -->\n```console\n$ x\n```\n"
        "````markdown\n<!-- run -->\n```console\n$ an example, not run\n```\n````\n",
    )
    (block,) = runner.parse(path)
    assert block.background and block.options["ready"] == "http://127.0.0.1:8000/ready"
    assert block.options["timeout"] == "60"
    assert all(b.marked for b in runner.console_blocks(path))


@pytest.mark.parametrize(
    "text",
    [
        "<!-- run -->\n```bash\n$ ls\n```\n",  # only console blocks run
        "<!-- run -->\n```console\nno command\n```\n",
        "<!-- run: background -->\n```console\n$ a\n$ b\n```\n",
        "<!-- run -->\n```console\n$ cat <<'EOF'\nnever closed\n```\n",
    ],
)
def test_malformed_blocks_are_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError):
        runner.parse(page(tmp_path, text))


def test_exact_lines_must_match() -> None:
    assert matches(["PROMOTED: @champion -> v2"], ["PROMOTED: @champion -> v2"])
    assert not matches(["PROMOTED: @champion -> v2"], ["PROMOTED: @champion -> v3"])
    assert not matches(["auc=0.8561"], ["auc=0.8560"])
    assert not matches(["a", "b"], ["a"])
    assert not matches(["a"], ["a", "b"])
    assert matches(["a  ", "", ""], ["", "a"])  # trailing spaces and blank edges only


def test_ellipsis_stands_for_any_lines() -> None:
    assert matches(["first", "...", "last"], ["first", "last"])
    assert matches(["first", "...", "last"], ["first", "x", "y", "last"])
    assert matches(["...", "last"], ["x", "last"])
    assert not matches(["first", "...", "last"], ["first", "x", "not last"])


def test_ids_may_differ_but_consistently() -> None:
    run_a, run_b = "7dd91f89416142f6980eeb300384b8dd", "50f60caf68a946a39e75978f74383301"
    page_lines = [f"run_id: {run_a}", f"lineage run {run_a}"]
    assert matches(page_lines, [f"run_id: {run_b}", f"lineage run {run_b}"])
    assert not matches(page_lines, [f"run_id: {run_b}", f"lineage run {run_a}"])
    # two ids on the page must stay two ids
    assert not matches([f"{run_a} {run_b}"], [f"{run_a} {run_a}"])
    # a 12-digit short id stands for a 12-digit id only
    assert matches(["run 7dd91f894161)"], ["run 50f60caf68a9)"])
    assert not matches(["run 7dd91f894161)"], [f"run {run_b})"])


def test_times_durations_pids_ports_progress_and_tmp_paths_may_differ() -> None:
    assert matches(
        ["2026-11-23 13:12:27.866  rollback", "9 passed in 0.09s", "ready in 10 s"],
        ["2027-01-02 01:02:03.004  rollback", "9 passed in 12.50s", "ready in 3 s"],
    )
    assert matches(
        ['"loaded_at": "2026-11-23T13:13:12.329970+00:00"'],
        ['"loaded_at": "2026-12-01T01:00:00+00:00"'],
    )
    assert matches(
        ["INFO:     Started server process [4242]"], ["INFO:     Started server process [7]"]
    )
    assert matches(
        ["100%|██████████| 29/29 [00:00<00:00, 6890.32it/s]"],
        ["100%|██████████| 30/30 [00:01<00:00, 21.10it/s]"],
    )
    assert matches(["wrote /tmp/abc/x.json"], ["wrote /tmp/pytest-of-you/7/x.json"])
    assert matches(
        ["make: *** [Makefile:98: promote-ci] Error 2"],
        ["make: *** [Makefile:104: promote-ci] Error 2"],
    )
    assert not matches(
        ["make: *** [Makefile:98: promote-ci] Error 2"],
        ["make: *** [Makefile:98: promote-ci] Error 1"],
    )
    assert not matches(["9 passed in 0.09s"], ["8 passed in 0.09s"])


def test_a_terminal_keeps_the_last_state_of_a_progress_bar() -> None:
    raw = "start\n\rbar 10%\rbar 100%\nend\n"
    assert runner._terminal(raw).split("\n") == ["start", "bar 100%", "end", ""]


def test_the_session_shows_its_own_path_and_ports_as_a_learners(tmp_path: Path) -> None:
    session = runner.Session(tmp_path / "churn-mlops", tmp_path, ports={8000: 41234, 5000: 41235})
    assert session.to_session("curl -s 127.0.0.1:8000/ready localhost:5000") == (
        "curl -s 127.0.0.1:41234/ready localhost:41235"
    )
    out = f"{tmp_path}/churn-mlops/mlflow.db on http://127.0.0.1:41234 --port 41234; 41234 rows"
    assert session.to_page(out) == [
        "/home/you/churn-mlops/mlflow.db on http://127.0.0.1:8000 --port 8000; 41234 rows"
    ]
    env = session.env
    assert env["PORT"] == "41234" and env["MLFLOW_PORT"] == "41235" and env["USER"] == "you"
    assert env["PATH"].startswith(f"{tmp_path}/churn-mlops/.venv/bin")
    # no tracking URI of ours, nothing of GitHub's; MLFLOW_PORT is make's variable (make server)
    assert {k for k in env if k.startswith(("MLFLOW_", "GITHUB_"))} == {"MLFLOW_PORT"}


def test_update_rewrites_only_the_outputs_that_differ(tmp_path: Path) -> None:
    path = page(
        tmp_path,
        "<!-- run -->\n```console\n$ echo a\nold\n$ echo b\nb\n$ false; echo x\nkept\n```\ntail\n",
    )
    (block,) = runner.parse(path)
    a, b, failed = block.commands
    outcomes = [
        runner.Outcome(a, ["new", "lines"], 0, ok=False),
        runner.Outcome(b, ["b"], 0, ok=True),
        runner.Outcome(failed, ["x"], 1, ok=False),  # a failing command is never written in
    ]
    assert runner.rewrite(path, outcomes) == 1
    assert path.read_text() == (
        "<!-- run -->\n```console\n$ echo a\nnew\nlines\n"
        "$ echo b\nb\n$ false; echo x\nkept\n```\ntail\n"
    )


def test_recapture_gives_matching_outputs_this_run_s_ids_and_keeps_their_layout(
    tmp_path: Path,
) -> None:
    old_run, new_run = "3f2a9c1d7e4b", "0123456789ab"
    path = page(
        tmp_path,
        "<!-- run -->\n```console\n$ status\n"
        f"champion: churn v1 (run {old_run}) at 2026-11-01 10:00\n...\ndone\n```\n",
    )
    (block,) = runner.parse(path)
    (status,) = block.commands
    printed = [f"champion: churn v1 (run {new_run}) at 2026-12-03 18:00", "a", "b", "done"]
    outcomes = [runner.Outcome(status, printed, 0, ok=True)]
    assert runner.rewrite(path, outcomes) == 0  # a plain --update leaves matching outputs
    assert runner.rewrite(path, outcomes, ids=True) == 1
    assert path.read_text() == (  # the id is this run's; the time and the `...` stay as shown
        "<!-- run -->\n```console\n$ status\n"
        f"champion: churn v1 (run {new_run}) at 2026-11-01 10:00\n...\ndone\n```\n"
    )
    ((again,),) = [b.commands for b in runner.parse(path)]
    assert runner.rewrite(path, [runner.Outcome(again, printed, 0, ok=True)], ids=True) == 0


def test_a_process_id_in_json_may_differ() -> None:
    assert runner.matches(['  "pid": 8120,'], ['  "pid": 31,'])  # /model's worker pid
    assert not runner.matches(['  "version": 2,'], ['  "version": 3,'])
