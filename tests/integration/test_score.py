"""`python -m churn score`: batch scoring on a real Spark (local[2]) with a real registry.

One Spark session serves the module (a JVM start costs seconds); the command reuses it
in-process. Once, the command runs as the user runs it, a subprocess with its own JVM: started
in the background before the in-process tests, so that the two JVMs share the two cores rather
than take turns, and checked by the last test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churn import data, schema, score
from churn.__main__ import main
from churn.settings import CHAMPION, MODEL_NAME
from tests.conftest import ROOT, Store, small_params, stop_process

pytestmark = pytest.mark.integration

SAMPLE = 500
TOLERANCE = 1e-9
# Speed only, for inputs of a few hundred rows (the end-to-end test passes them with --conf;
# `make bench-score` measures Spark's defaults): compiling whole-stage code for the wide
# validation query, and the JVM's optimising JIT compiler, cost more CPU than they save in a run
# this short, and a shuffle needs no more partitions than the two cores.
TEST_CONF = [
    ("spark.sql.codegen.wholeStage", "false"),
    ("spark.sql.shuffle.partitions", "2"),
    ("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"),
]


@dataclass(frozen=True)
class Champion:
    store: Store
    version: int
    run_id: str


@pytest.fixture(scope="module")
def champion(
    tmp_path_factory: pytest.TempPathFactory, template_db: Path, small_data: Path
) -> Champion:
    """A trained model promoted to @champion, in a store shared by this module's tests."""
    import mlflow

    from churn.training import train

    path = tmp_path_factory.mktemp("score-store") / "mlflow.db"
    shutil.copy(template_db, path)
    store = Store(path, f"sqlite:///{path}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.uri)
        try:
            result = train(
                small_params(), store.client, store.uri, data_path=small_data, reports_dir=None
            )
        finally:
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
            mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    store.client.set_registered_model_alias(MODEL_NAME, CHAMPION, str(result.version))
    return Champion(store, result.version, result.run_id)


@dataclass(frozen=True)
class Background:
    """`python -m churn score` running as a subprocess; `wait` gives (exit code, stdout, stderr)."""

    proc: subprocess.Popen  # type: ignore[type-arg]
    out: Path
    logs: Path

    def wait(self, timeout: float = 300) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=timeout)
        return code, (self.logs / "stdout").read_text(), (self.logs / "stderr").read_text()


@pytest.fixture(scope="module")
def cli_run(
    champion: Champion, small_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Background]:
    work = tmp_path_factory.mktemp("cli")
    # Its own interpreter and address settings, as a user's shell has (not the ones the
    # in-process session sets in this process).
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "SPARK_LOCAL_IP")}
    argv = [
        sys.executable, "-m", "churn", "score",
        "--input", str(small_data), "--output", str(work / "scores"), "--master", "local[2]",
        "--score-date", "2026-11-20", "--tracking-uri", champion.store.uri,
        "--progress-every", "0.1", "--partitions", "1",
        *[arg for key, value in TEST_CONF for arg in ("--conf", f"{key}={value}")],
    ]  # fmt: skip
    with (work / "stdout").open("w") as stdout, (work / "stderr").open("w") as stderr:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
    try:
        yield Background(proc, work / "scores", work)
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def spark(cli_run: Background) -> Iterator[object]:
    """The module's Spark session; `churn score` run in-process finds and reuses it. Started
    after the background run (which it does not use), so both are under way together."""
    # spark_session sets these for the JVM it starts; later modules get the environment back.
    saved = {key: os.environ.get(key) for key in ("PYSPARK_PYTHON", "SPARK_LOCAL_IP")}
    try:
        with score.spark_session("local[2]", TEST_CONF) as session:
            yield session
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def direct(champion: Champion) -> object:
    """The champion as `mlflow.pyfunc.load_model` gives it: the reference for Spark's numbers."""
    import mlflow.pyfunc

    # Both URIs: resolving models:/ builds a client whose tracking URI, left unset, is the
    # environment's or MLflow's default (./mlflow.db: the checkout, which the guard caught).
    mlflow.set_tracking_uri(champion.store.uri)
    mlflow.set_registry_uri(champion.store.uri)
    try:
        return mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{champion.version}")
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def churn_score(*args: str, champion: Champion) -> int:
    """The command in-process, on the module's session. One scoring task (as in `cli_run`):
    each Python worker imports MLflow and loads the model, seconds of CPU that a few hundred
    rows do not need twice; `test_scoring_is_spread_over_every_core` checks the default."""
    common = ["--tracking-uri", champion.store.uri, "--progress-every", "0", "--partitions", "1"]
    return main(["score", *common, *args])


def read_scores(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def assert_matches_pyfunc(
    scores: pd.DataFrame, features: pd.DataFrame, direct: object, ids: pd.Series
) -> None:
    """Spark's probabilities against a direct pyfunc predict of the same rows (by customerID)."""
    expected = pd.Series(direct.predict(features), index=ids.to_numpy())  # type: ignore[attr-defined]
    got = scores.set_index(schema.ID_COLUMN)[score.PROBABILITY]
    assert len(got) == len(expected)
    diff = np.abs(got.loc[expected.index].to_numpy() - expected.to_numpy())
    assert diff.max() <= TOLERANCE


# ---------------------------------------------------------------------------------------------
# --help


def test_help_lists_exit_codes_and_does_not_import_spark() -> None:
    probe = (
        "import sys\n"
        "from churn.__main__ import main\n"
        "try:\n"
        "    main(['score', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print('imported:', sorted(m for m in ('pyspark', 'mlflow') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "exit codes (score):" in out
    assert "  2  usage error: bad flag, no file matched --input" in out
    assert out.rstrip().endswith("imported: []")


# ---------------------------------------------------------------------------------------------
# In-process, on the module's session


def test_rescoring_a_night_from_raw_csv_replaces_that_night_only(
    spark: object,
    champion: Champion,
    direct: object,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A re-run of 2026-11-01 over a glob of CSV exports in the raw Telco layout (TotalCharges as
    text, blank for new customers; no Churn column): that night's partition is replaced by
    exactly the new rows, scored as pyfunc scores them after churn.data normalises them, and the
    next night's partition is left alone."""
    raw = data.generate(rows=400, seed=11).drop(columns=[schema.LABEL_COLUMN])
    assert (raw["TotalCharges"] == " ").any()
    exports = tmp_path / "exports"
    exports.mkdir()
    raw.iloc[:250].to_csv(exports / "part-1.csv", index=False)
    raw.iloc[250:].to_csv(exports / "part-2.csv", index=False)
    out = tmp_path / "scores"
    for night, version in (("2026-11-01", 90), ("2026-11-02", 91)):  # earlier runs' output
        earlier = pd.DataFrame(
            {schema.ID_COLUMN: ["0000-OLDER"] * 5, "model_version": np.int32(version)}
        )
        (out / f"score_date={night}").mkdir(parents=True)
        earlier.to_parquet(out / f"score_date={night}" / "part-00000.parquet", index=False)

    pattern = str(exports / "*.csv")
    args = ["--input", pattern, "--output", str(out), "--score-date", "2026-11-01"]
    assert churn_score(*args, champion=champion) == 0
    assert f"score: validating {pattern} (2 files) (csv) against the schema" in (
        capsys.readouterr().err.splitlines()
    )

    scores = read_scores(out)
    nights = scores.groupby(scores[score.PARTITION_COLUMN].astype(str))
    assert nights.size().to_dict() == {"2026-11-01": 400, "2026-11-02": 5}
    assert nights["model_version"].unique().map(list).to_dict() == {
        "2026-11-01": [champion.version],
        "2026-11-02": [91],
    }
    normalised = data.normalise(raw.assign(**{schema.LABEL_COLUMN: "No"}))
    assert_matches_pyfunc(
        scores[scores[score.PARTITION_COLUMN].astype(str) == "2026-11-01"],
        data.features(normalised),
        direct,
        normalised[schema.ID_COLUMN],
    )


def _bad(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


def _last_error(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_every_bad_column_is_named_and_nothing_is_written(
    spark: object,
    champion: Champion,
    small_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    frame = data.read_parquet(small_data).head(300).copy()
    frame.loc[5, "Contract"] = "Weekly"
    frame.loc[[7, 8], "tenure"] = 99
    frame.loc[9, schema.ID_COLUMN] = frame.loc[0, schema.ID_COLUMN]
    frame.loc[10, "MonthlyCharges"] = np.nan
    bad = _bad(frame, tmp_path / "bad.parquet")
    out = tmp_path / "scores"

    assert churn_score("--input", str(bad), "--output", str(out), champion=champion) == 2
    first_id = frame.loc[0, schema.ID_COLUMN]
    assert _last_error(capsys) == (
        f"churn score: error: --input {bad}: bad data in 4 columns: "
        f"customerID: duplicate values '{first_id}' (2 rows); "
        "tenure: out of range 0..72 99 (2 rows); "
        "Contract: unknown values 'Weekly' (1 row); "
        "MonthlyCharges: missing values in 1 row; "
        "nothing was written (the schema is churn/schema.py)"
    )
    assert not out.exists()


def test_missing_and_unexpected_columns_are_named(
    spark: object,
    champion: Champion,
    small_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    frame = data.read_parquet(small_data).head(50).rename(columns={"tenure": "Tenure"})
    bad = _bad(frame, tmp_path / "renamed.parquet")
    out = tmp_path / "scores"

    assert churn_score("--input", str(bad), "--output", str(out), champion=champion) == 2
    assert _last_error(capsys) == (
        f"churn score: error: --input {bad}: bad data in 2 columns: tenure: missing column; "
        "Tenure: unexpected column; nothing was written (the schema is churn/schema.py)"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--input", "{tmp}/nothing/*.parquet"],
            2,
            "--input {tmp}/nothing/*.parquet matched no files: check the path, and quote a glob "
            "so that the shell does not expand it",
        ),
        (["--input", "{tmp}/absent.csv"], 2, "--input {tmp}/absent.csv: no such file or directory"),
        (
            ["--input", "{data}", "--model-uri", "models:/churn@prev-champion"],
            3,
            "model 'churn' has no alias @prev-champion (aliases: @challenger, @champion): "
            "promote a version first (make pipeline), or pass --model-uri "
            "models:/<name>/<version>",
        ),
        (
            ["--input", "{data}", "--model-uri", "runs:/abc/model"],
            2,
            "--model-uri 'runs:/abc/model': give a registry URI, models:/<name>@<alias> or "
            "models:/<name>/<version> (the output records the version and its run)",
        ),
    ],
    ids=["glob-matches-nothing", "no-such-file", "alias-missing", "not-a-registry-uri"],
)
def test_refused_before_spark_starts(
    champion: Champion,
    small_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    code: int,
    message: str,
) -> None:
    def no_spark(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("Spark was started for a run that should have been refused")

    monkeypatch.setattr(score, "spark_session", no_spark)
    fill = {"tmp": tmp_path, "data": small_data}
    out = tmp_path / "scores"
    given = [a.format(**fill) for a in args]
    assert churn_score(*given, "--output", str(out), champion=champion) == code
    assert _last_error(capsys) == f"churn score: error: {message.format(**fill)}"
    assert not out.exists()


def test_input_spark_cannot_find_is_a_usage_error(
    spark: object, champion: Champion, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URI is left to Spark (an object store's glob is expanded there): its PATH_NOT_FOUND is
    exit 2 in one line, not a Py4J traceback."""
    missing = f"file://{tmp_path}/nothing/*.parquet"
    out = tmp_path / "scores"
    assert churn_score("--input", missing, "--output", str(out), champion=champion) == 2
    assert _last_error(capsys).startswith(
        f"churn score: error: reading --input {missing}: [PATH_NOT_FOUND] Path does not exist"
    )
    assert not out.exists()


def test_input_resolution(tmp_path: Path) -> None:
    from churn.errors import UsageError

    for name in ("part-0.parquet", "part-1.csv", "_SUCCESS", ".part-0.parquet.crc"):
        (tmp_path / name).touch()
    with pytest.raises(UsageError, match=r"matched both CSV and Parquet files"):
        score.resolve_input(str(tmp_path))
    (tmp_path / "part-1.csv").unlink()
    assert score.resolve_input(str(tmp_path)) == score.InputFiles(
        (f"file://{tmp_path}/part-0.parquet",), "parquet", f"{tmp_path} (1 file)"
    )
    (tmp_path / "notes.txt").touch()
    with pytest.raises(UsageError, match=r"notes.txt is neither .csv nor .parquet; add --format"):
        score.resolve_input(str(tmp_path / "*"))
    # URIs go to Spark as given; a directory of part files is Parquet unless --format says not.
    assert score.resolve_input("s3a://lake/scores/") == score.InputFiles(
        ("s3a://lake/scores/",), "parquet", "s3a://lake/scores/"
    )
    assert score.resolve_input("s3a://lake/in/*.csv").format == "csv"
    assert score.resolve_input("abfss://c@a.dfs.core.windows.net/in", "csv").format == "csv"


def test_a_failing_spark_job_is_exit_1_with_the_workers_error(spark: object) -> None:
    """What a task failure in the Python workers becomes: the worker's own error, in one line."""
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import pandas_udf

    from churn.cli import run

    @pandas_udf("double")  # type: ignore[call-overload]
    def broken(ids: pd.Series) -> pd.Series:
        raise ValueError(f"cannot score {len(ids)} rows")

    def body() -> int:
        with score.spark_errors("scoring"):
            session = SparkSession.getActiveSession()
            assert session is not None
            session.range(3).coalesce(1).select(broken("id")).collect()
        return 0

    with pytest.raises(score.ScoringError) as caught:
        body()
    assert str(caught.value) == "scoring failed: ValueError: cannot score 3 rows"
    assert run("churn score", body) == 1


def test_scoring_is_spread_over_every_core(spark: object) -> None:
    """One Parquet file is often one Spark split: by default the rows are spread over at least
    one task per core before the model runs, so that both cores score."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    assert session is not None
    one = session.range(100).coalesce(1)
    assert score.spread(session, one, None).rdd.getNumPartitions() == 2
    assert score.spread(session, one, 3).rdd.getNumPartitions() == 3
    four = session.range(100).repartition(4)
    assert score.spread(session, four, None) is four


# ---------------------------------------------------------------------------------------------
# The user's path, run in the background since the module started (the `cli_run` fixture)


def test_score_command_end_to_end(
    cli_run: Background, champion: Champion, direct: object, small_data: Path
) -> None:
    """The user's path (started by the `cli_run` fixture): exit 0, every row scored as pyfunc
    scores it, the version and run recorded, one result line on stdout, progress on stderr."""
    code, stdout, stderr = cli_run.wait()
    assert code == 0, stderr
    out = cli_run.out

    source = data.read_parquet(small_data)
    scores = read_scores(out)
    assert list(scores.columns) == list(score.OUTPUT_COLUMNS)
    assert len(scores) == len(source) == 3_000
    assert set(scores[schema.ID_COLUMN]) == set(source[schema.ID_COLUMN])
    assert (scores["model_version"] == champion.version).all()
    assert (scores["model_run_id"] == champion.run_id).all()
    assert (scores["model_name"] == MODEL_NAME).all()
    assert (scores["threshold"] == 0.5).all()
    assert (scores[score.DECISION] == (scores[score.PROBABILITY] >= 0.5)).all()
    assert set(scores[score.PARTITION_COLUMN].astype(str)) == {"2026-11-20"}

    sample = source.sample(SAMPLE, random_state=3)
    assert_matches_pyfunc(
        scores[scores[schema.ID_COLUMN].isin(sample[schema.ID_COLUMN])],
        data.features(sample),
        direct,
        sample[schema.ID_COLUMN],
    )

    # stdout is the one results line (no Spark or Java logging); progress goes to stderr.
    churners = int(scores[score.DECISION].sum())
    assert stdout == (
        f"scored 3,000 rows with churn v{champion.version} (run {champion.run_id[:12]}) at "
        f"threshold 0.5: {churners:,} churn ({churners / 3000:.1%}) -> "
        f"{out}/score_date=2026-11-20\n"
    )
    progress = [line for line in stderr.splitlines() if line.startswith("score: ")]
    assert progress[0] == (
        f"score: models:/churn@champion is churn v{champion.version} (run {champion.run_id})"
    )
    assert "score: starting Spark" in progress
    assert any(line.startswith("score: Spark 4.") and "local[2]" in line for line in progress)
    assert f"score: validating {small_data} (parquet) against the schema" in progress
    assert "score: 3,000 rows read" in progress
    assert any(line.startswith("score: [stage ") for line in progress)
    assert any(
        line.startswith("score: scoring 3,000 rows with models:/churn/") for line in progress
    )
    assert "Traceback" not in stderr
    assert "INFO" not in stderr  # Spark's default profile logs INFO; ours starts at WARN


# ---------------------------------------------------------------------------------------------
# bench/score.py


def test_bench_fit_break_even_and_table() -> None:
    """bench/score.py's arithmetic (no timing here), and its table over the committed results."""
    import json

    from bench import score as bench

    a, b = bench.fit([(10_000, 1.0 + 0.1), (100_000, 1.0 + 1.0), (1_000_000, 1.0 + 10.0)])
    assert (round(a, 9), round(b * 1e6, 6)) == (1.0, 10.0)
    # Spark: 50 s fixed + 5 us/row; pandas: 2 s + 8 us/row -> equal at 16 million rows.
    assert bench.break_even(50.0, 5e-6, 2.0, 8e-6) == 16_000_000
    assert bench.break_even(50.0, 9e-6, 2.0, 8e-6) is None

    result = json.loads((ROOT / "bench" / "results" / "score.json").read_text())
    text = bench.table(result)
    assert text.startswith(f"reference: {bench.REFERENCE}\n")
    for row in result["sizes"].values():
        assert f"{row['rows']:>10,}  {row['pandas_s']:>9.2f}" in text
