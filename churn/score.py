"""`python -m churn score`: nightly batch scoring on Apache Spark with `mlflow.pyfunc.spark_udf`.

    python -m churn score --input 'data/*.parquet' --output scores --master 'local[2]'

What a run does, in order (each step is one line on stderr; the result is one line on stdout):
 1. resolves `--input` (a file, a directory or a glob of CSV/Parquet files) and the model:
    `models:/churn@champion` is resolved to one version, once, and that exact version is scored
    with (as the API does), so every output row names the version and run that produced it;
    both are checked before Spark starts, so a typo costs a second, not a JVM start-up;
 2. starts Spark (`--master`, default local[*]; under spark-submit, the session it made);
 3. validates the input against `churn/schema.py` in two Spark jobs (missing or unexpected
    columns, missing values, unknown categories, non-numbers, out-of-range values; duplicate
    customerIDs) and fails naming every bad column before anything is written;
 4. scores every row with `spark_udf` (env_manager="local": the executors' Python must already
    hold the model's requirements, see docs/scaling-out.md) and writes Parquet.

Output: `<output>/score_date=YYYY-MM-DD/part-*.parquet` with the columns of `OUTPUT_COLUMNS`.
Partitioned by the scoring date because that is how a nightly job is read and re-run: each
night's run lands in its own directory beside the previous ones (readers select a night by
partition pruning), and a re-run of the same night (a retry, or a backfill with `--score-date`)
replaces exactly that night's partition (dynamic partition overwrite) and never duplicates rows
or touches other nights. Partitioning by model version as well would add nothing: a run scores
with one version, which is a column. The threshold applied to `churn_probability` is the one
the model's training run logged (`threshold`, what its metrics were computed at and what the API
applies), so batch and online decisions agree; params.yaml's `threshold` is the fallback.

Nothing here imports pyspark or mlflow at module level: `python -m churn --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churn import cli, registry_reads, schema, settings
from churn.data import (
    DataValidationError,
    _bounds,  # the wording of ingestion's own refusals, not a copy
)
from churn.errors import ChurnError, RegistryStateError, UsageError, first_line
from churn.registry_reads import ModelUri
from churn.schema import Column, Kind

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from pyspark.sql import Column as SparkColumn
    from pyspark.sql import DataFrame, SparkSession

Progress = Callable[[str], None]

DEFAULT_MODEL_URI = f"models:/{settings.MODEL_NAME}@{settings.CHAMPION}"
DEFAULT_MASTER = "local[*]"
PARTITION_COLUMN = "score_date"
PROBABILITY = "churn_probability"
DECISION = "churn"
# In the order they are written; `score_date` is the partition directory.
OUTPUT_COLUMNS = (
    schema.ID_COLUMN,
    PROBABILITY,
    DECISION,
    "threshold",
    "model_name",
    "model_version",
    "model_run_id",
    PARTITION_COLUMN,
)
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv"}
LOG4J_CONFIG = Path(__file__).with_name("spark-log4j2.properties")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_MAX_EXAMPLES = 3

SCORE_EXIT_HELP = """\
Input files are validated against the schema (churn/schema.py) before scoring; the label column
(Churn) may be present or not. Globs are expanded on this machine for local paths (quote them);
URIs with a scheme (s3a://, hdfs://, abfss://, dbfs:/) are read by Spark as given.
On a cluster: --master yarn|spark://...|k8s://..., or spark-submit (docs/scaling-out.md).

exit codes (score):
  0  scored: <output>/score_date=<date>/ holds one row per input row
  1  Spark could not start, or the Spark job failed (its error is above)
  2  usage error: bad flag, no file matched --input, or input that does not fit the schema
     (the message names every bad column; nothing is written)
  3  registry state: no such model, version or alias, or a version that is refused (not a
     model train.py wrote, or its artifact is missing or corrupt; nothing is written)
  4  tracking server or store unreachable or failing"""


class ScoringError(ChurnError):
    """Spark could not start or a Spark job failed: exit 1, with Spark's first line."""


@dataclass(frozen=True)
class InputFiles:
    """What `--input` named: the paths Spark reads and their format."""

    paths: tuple[str, ...]
    format: str  # "parquet" | "csv"
    description: str  # for messages: the pattern, and how many files it matched


@dataclass(frozen=True)
class ModelRef:
    """The one registry version a run scores with, resolved from `--model-uri` up front."""

    name: str
    version: int
    run_id: str
    threshold: float
    requested: str  # what the user asked for, e.g. models:/churn@champion
    # The checked local copy Spark loads (churn/loading.py `verified_copy`), once made.
    local: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class ScoreResult:
    rows: int
    churners: int
    partition: str  # <output>/score_date=YYYY-MM-DD
    model: ModelRef

    def summary(self) -> str:
        share = self.churners / self.rows if self.rows else 0.0
        return (
            f"scored {self.rows:,} rows with {self.model.name} v{self.model.version} "
            f"(run {self.model.run_id[:12]}) at threshold {self.model.threshold:g}: "
            f"{self.churners:,} churn ({share:.1%}) -> {self.partition}"
        )


# ---------------------------------------------------------------------------------------------
# Arguments


def _score_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date like 2026-11-23") from None


def _spark_conf(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE (e.g. spark.driver.memory=4g)")
    return key.strip(), value


def add_arguments(sp: argparse.ArgumentParser) -> None:
    """The `score` subcommand's flags (called while the parser is built: keep it import-free)."""
    sp.epilog = SCORE_EXIT_HELP
    _add_io_arguments(sp)
    _add_run_arguments(sp)
    _add_tuning_arguments(sp)


def _add_io_arguments(sp: argparse.ArgumentParser) -> None:
    """What is scored, with which model, and where the scores go."""
    sp.add_argument(
        "--input",
        required=True,
        metavar="PATH|GLOB",
        help="CSV or Parquet: a file, a directory of them, or a glob (quote it)",
    )
    sp.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="where the scores go, as DIR/score_date=YYYY-MM-DD/ (a path or a URI)",
    )
    sp.add_argument(
        "--model-uri",
        default=DEFAULT_MODEL_URI,
        metavar="URI",
        help=f"models:/<name>@<alias> or models:/<name>/<version> (default: {DEFAULT_MODEL_URI})",
    )


def _add_run_arguments(sp: argparse.ArgumentParser) -> None:
    """Where Spark runs, which night the run is, and how the input is read."""
    sp.add_argument(
        "--master",
        metavar="URL",
        help="Spark master: local[2], yarn, spark://host:7077, k8s://... "
        f"(default: {DEFAULT_MASTER}; under spark-submit, its --master)",
    )
    sp.add_argument(
        "--score-date",
        type=_score_date,
        metavar="YYYY-MM-DD",
        help="the partition to write (default: today, UTC); a re-run replaces that date only",
    )
    sp.add_argument(
        "--format",
        choices=sorted(set(FORMATS.values())),
        help="input format (default: from the file extension)",
    )


def _add_tuning_arguments(sp: argparse.ArgumentParser) -> None:
    """Spark's parallelism and settings, the progress lines, and the hidden params file."""
    sp.add_argument(
        "--partitions",
        type=cli.positive_int,
        metavar="N",
        help="Spark tasks that score (and output files); default: the input's splits, at least "
        "one per core",
    )
    sp.add_argument(
        "--conf",
        type=_spark_conf,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting, as spark-submit --conf (repeatable)",
    )
    sp.add_argument(
        "--progress-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a progress line per running Spark stage this often (default: 10; 0: off)",
    )
    sp.add_argument("--params", type=Path, default=settings.PARAMS_FILE, help=argparse.SUPPRESS)


# ---------------------------------------------------------------------------------------------
# Input files and the model


def _format_of(path: str, explicit: str | None) -> str | None:
    if explicit is not None:
        return explicit
    name = path.lower().rstrip("/")
    for ext, fmt in sorted(FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(ext):
            return fmt
    return None


def _is_uri(path: str) -> bool:
    """s3a://..., hdfs://..., dbfs:/..., file:/...: a path Spark resolves (C:\\ is not one)."""
    return bool(_SCHEME.match(path)) and len(path.split(":")[0]) > 1


def _local_uri(path: str) -> str:
    # Not Path.as_uri(): Hadoop's Path does not decode %20, and escapes what it needs itself.
    return f"file://{Path(path).expanduser().resolve()}"


def resolve_input(pattern: str, fmt: str | None = None) -> InputFiles:
    """The files `--input` names. Local paths and globs are expanded here, so "no such file" is
    exit 2 before Spark starts; URIs are left to Spark (which expands their globs itself)."""
    if not pattern.strip():
        raise UsageError("--input is empty: give a CSV/Parquet file, a directory or a glob")
    if _is_uri(pattern):
        # A directory of part files (what Spark writes) is Parquet unless --format says not.
        return InputFiles((pattern,), _format_of(pattern, fmt) or "parquet", pattern)

    expanded = os.path.expanduser(pattern)
    # As Spark lists a directory: names starting with _ or . are its bookkeeping (_SUCCESS, .crc).
    if glob.has_magic(expanded):
        files = sorted(
            p
            for p in glob.glob(expanded, recursive=True)
            if os.path.isfile(p) and not os.path.basename(p).startswith((".", "_"))
        )
    elif os.path.isdir(expanded):
        files = sorted(
            str(p)
            for p in Path(expanded).iterdir()
            if p.is_file()
            and not p.name.startswith((".", "_"))
            and (fmt is not None or _format_of(p.name, None) is not None)
        )
    elif os.path.isfile(expanded):
        files = [expanded]
    else:
        raise UsageError(f"--input {pattern}: no such file or directory")
    if not files:
        raise UsageError(
            f"--input {pattern} matched no files: check the path, and quote a glob so that "
            "the shell does not expand it"
        )
    formats = {p: _format_of(p, fmt) for p in files}
    unknown = [p for p, f in formats.items() if f is None]
    if unknown:
        raise UsageError(
            f"--input {pattern}: {unknown[0]} is neither .csv nor .parquet; add --format "
            "(or narrow the glob)"
        )
    kinds = sorted({f for f in formats.values() if f is not None})
    if len(kinds) > 1:
        raise UsageError(
            f"--input {pattern} matched both CSV and Parquet files; score them separately"
        )
    count = f"{len(files)} file{'' if len(files) == 1 else 's'}"
    shown = pattern if len(files) == 1 and files[0] == expanded else f"{pattern} ({count})"
    return InputFiles(tuple(_local_uri(p) for p in files), kinds[0], shown)


def parse_model_uri(uri: str) -> ModelUri:
    """--model-uri's parts (churn/registry_reads.py's rule), or a usage error naming the flag."""
    try:
        return registry_reads.parse_model_uri(uri)
    except ValueError:
        raise UsageError(
            f"--model-uri {uri!r}: give a registry URI, {registry_reads.MODEL_URI_FORMS} "
            "(the output records the version and its run)"
        ) from None


def _threshold(logged: str | None, params_file: Path) -> float:
    """The training run's `threshold` param, as the API applies it; params.yaml's otherwise."""
    if params_file.is_file():
        fallback = settings.load_params(params_file).threshold
    else:
        fallback = settings.Params().threshold
    return registry_reads.run_threshold(logged, fallback)


def resolve_model(client: MlflowClient, uri: str, params_file: Path) -> ModelRef:
    """Resolve an alias to one version, once (everything after uses models:/<name>/<version>)."""
    parsed = parse_model_uri(uri)
    name, alias, version = parsed.name, parsed.alias, parsed.version
    if alias is not None:
        by_alias = registry_reads.aliases(client, name)
        if alias not in by_alias:
            known = ", ".join(f"@{a}" for a in sorted(by_alias)) or "none"
            raise RegistryStateError(
                f"model '{name}' has no alias @{alias} (aliases: {known}): promote a version "
                "first (make pipeline), or pass --model-uri models:/<name>/<version>"
            )
        version = by_alias[alias]
    assert version is not None
    try:
        mv = client.get_model_version(name, str(version))
    except Exception as exc:
        if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryStateError(f"model '{name}' has no version {version}") from exc
        raise
    run_id = str(mv.run_id or "")
    logged = client.get_run(run_id).data.params.get("threshold") if run_id else None
    return ModelRef(name, int(version), run_id, _threshold(logged, params_file), uri)


# ---------------------------------------------------------------------------------------------
# Spark


def _is_local(master: str) -> bool:
    return master == "local" or master.startswith(("local[", "local-cluster["))


def _under_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands its port to the Python driver.
    return "PYSPARK_GATEWAY_PORT" in os.environ


@contextlib.contextmanager
def spark_session(
    master: str | None = None,
    conf: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
    app_name: str = "churn-score",
) -> Iterator[SparkSession]:
    """A Spark session for scoring; stopped on exit only if this call created it.

    A session that already exists (a notebook, Databricks, a test's session) is used as it is
    and left running. For a JVM this process starts itself, the driver logs WARN and up to
    stderr (churn/spark-log4j2.properties), and on a local master the Python workers run this
    interpreter (PYSPARK_PYTHON, else Spark forks `python3` from PATH, which outside an
    activated venv has no pandas or mlflow) bound to the loopback interface.
    """
    session_class = _session_class()
    existing = session_class.getActiveSession()
    if master is not None and existing is None and _under_spark_submit():
        raise UsageError("--master: under spark-submit, give the master to spark-submit")
    local_jvm = existing is None and not _under_spark_submit()
    master, settings_ = _session_settings(master, conf, local_jvm)
    session = _get_or_create(session_class, existing, master, settings_, app_name)
    if existing is None:
        session.sparkContext.setLogLevel("WARN")
    try:
        yield session
    finally:
        if existing is None and not _under_spark_submit():
            session.stop()


def _session_class() -> type[SparkSession]:
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ScoringError(
            "pyspark is not installed: `make setup-spark` (uv sync --group spark)"
        ) from exc
    return SparkSession


def _session_settings(
    master: str | None,
    conf: list[tuple[str, str]] | tuple[tuple[str, str], ...],
    local_jvm: bool,
) -> tuple[str | None, dict[str, str]]:
    """The master to ask for and the session's settings: `conf` over our defaults. A JVM this
    process starts (`local_jvm`) gets the default master, our log4j config and, when local, the
    loopback interface, this interpreter for the workers and no web UI."""
    settings_: dict[str, str] = {"spark.ui.showConsoleProgress": "false"}
    if local_jvm:
        master = master or DEFAULT_MASTER
        if _is_local(master):
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            # No web UI on port 4040 for a local job; our progress lines replace the console bar.
            settings_["spark.ui.enabled"] = "false"
    settings_.update(dict(conf))
    java_options = settings_.get("spark.driver.extraJavaOptions", "")
    if local_jvm and "log4j2.configurationFile" not in java_options:
        log4j = f"-Dlog4j2.configurationFile={LOG4J_CONFIG.resolve().as_uri()}"
        settings_["spark.driver.extraJavaOptions"] = f"{java_options} {log4j}".strip()
    return master, settings_


def _get_or_create(
    session_class: type[SparkSession],
    existing: SparkSession | None,
    master: str | None,
    settings_: dict[str, str],
    app_name: str,
) -> SparkSession:
    """`existing`, else a session built from `settings_`; a JVM that fails to start is a
    ScoringError in one line."""
    builder: Any = session_class.builder.appName(app_name)
    if master is not None and existing is None and not _under_spark_submit():
        builder = builder.master(master)
    for key, value in settings_.items():
        builder = builder.config(key, value)
    with warnings.catch_warnings():
        _quiet_pyspark_warnings()
        try:
            session: SparkSession = existing or builder.getOrCreate()
        except Exception as exc:
            raise ScoringError(
                f"could not start Spark (master {master or 'from spark-submit'}): "
                f"{first_line(exc, 400)}; Spark 4 needs Java 17+ (JAVA_HOME or java on PATH)"
            ) from exc
    return session


def _quiet_pyspark_warnings() -> None:
    # PySpark 4.x warns on every pandas conversion that pandas 3 is "not yet fully supported".
    # The columns this module exchanges with pandas are strings, longs and doubles, and the
    # integration test checks that Spark's probabilities equal a direct pyfunc predict.
    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )


_PYTHON_ERROR = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")


def _spark_message(exc: BaseException) -> str:
    """The line of a Spark failure that says what went wrong: a Python worker's error is the
    last line of its traceback, a JVM error the line after Py4J's "An error occurred while
    calling o123.parquet."."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if type(exc).__name__ == "PythonException":
        for line in reversed(lines):
            if _PYTHON_ERROR.match(line):
                return line[:400]
    if len(lines) > 1 and lines[0].startswith("An error occurred while calling"):
        return lines[1].lstrip(": ")[:400]
    return lines[0][:400] if lines else type(exc).__name__


def _condition(exc: BaseException) -> str:
    for getter in ("getCondition", "getErrorClass"):
        method = getattr(exc, getter, None)
        if callable(method):
            with contextlib.suppress(Exception):
                value = method()
                if value:
                    return str(value)
    return ""


@contextlib.contextmanager
def spark_errors(what: str) -> Iterator[None]:
    """Spark's exceptions as our exit codes: a path Spark cannot find is a usage error (2),
    anything else Spark raises means the job failed (1), in one line (details are in the log)."""
    try:
        yield
    except ChurnError:
        raise
    except Exception as exc:
        module = type(exc).__module__.split(".")[0]
        if module not in ("pyspark", "py4j"):
            raise
        message = _spark_message(exc)
        if _condition(exc).startswith("PATH_NOT_FOUND"):
            raise UsageError(f"{what}: {message}") from exc
        if message.startswith("ModuleNotFoundError"):
            # The usual cluster mistake: executors started a Python without the model's packages.
            message += (
                "; the executors' Python lacks the model's requirements: set PYSPARK_PYTHON "
                "to an environment that has them (docs/scaling-out.md)"
            )
        raise ScoringError(f"{what} failed: {message}") from exc


class StageProgress:
    """A line per running Spark stage every `every` seconds: tasks done of all, like
    `score: [stage 3] 12/40 tasks (30%)`. Line-based, unlike Spark's console bar, so a nightly
    job's log shows how far a long run got."""

    def __init__(self, spark: SparkSession, progress: Progress, every: float) -> None:
        self.tracker = spark.sparkContext.statusTracker()
        self.progress = progress
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="score-progress", daemon=True)
        self._last: dict[int, int] = {}

    def __enter__(self) -> StageProgress:
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def poll(self) -> None:
        for stage_id in sorted(self.tracker.getActiveStageIds()):
            info = self.tracker.getStageInfo(stage_id)
            if info is None or info.numTasks == 0:
                continue
            done = info.numCompletedTasks
            if self._last.get(stage_id) == done:
                continue
            self._last[stage_id] = done
            self.progress(
                f"[stage {stage_id}] {done}/{info.numTasks} tasks ({done / info.numTasks:.0%})"
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(Exception):  # the session may be stopping: never fail a run
                self.poll()


# ---------------------------------------------------------------------------------------------
# Reading and validating on Spark (the rules of churn/schema.py, as churn.data.normalise applies
# them to a pandas frame; here they run as Spark aggregations, so the input never has to fit in
# the driver's memory)


def read_input(spark: SparkSession, files: InputFiles) -> DataFrame:
    with spark_errors(f"reading --input {files.description}"):
        if files.format == "csv":
            # Everything as text, as churn.data.load_source reads the raw Telco CSV: the schema
            # decides what a cell means (TotalCharges is " " for new customers).
            df = spark.read.csv(list(files.paths), header=True, inferSchema=False)
        else:
            df = spark.read.parquet(*files.paths)
    # A CSV saved from a spreadsheet starts with a byte-order mark that would rename customerID.
    renamed = {c: c.lstrip("\ufeff") for c in df.columns if c.startswith("\ufeff")}
    return df.withColumnsRenamed(renamed) if renamed else df


@dataclass(frozen=True)
class _Check:
    column: str
    what: str  # "missing values", "unknown values", ...
    bad: SparkColumn  # true on an offending row
    shown: SparkColumn  # the offending value, as the user wrote it


def _text(src: SparkColumn) -> tuple[SparkColumn, SparkColumn]:
    from pyspark.sql import functions as F

    text = F.trim(src.cast("string"))
    return text, src.isNull() | (text == F.lit(""))


def _column_rules(col: Column, raw_type: str, src: SparkColumn) -> tuple[SparkColumn, list[_Check]]:
    """The typed column the model gets, and the checks `churn.data` applies to this kind."""
    from pyspark.sql import functions as F

    if col.kind in (Kind.ID, Kind.CATEGORY):
        text, missing = _text(src)
        checks = [_Check(col.name, "missing values", missing, text)]
        if col.kind is Kind.CATEGORY:
            unknown = ~missing & ~text.isin(list(col.categories))
            checks.append(_Check(col.name, "unknown values", unknown, text))
        return text, checks

    # FLAG, INTEGER, NUMBER: numbers, or text holding numbers (a CSV, the raw TotalCharges).
    if raw_type == "string":
        text, missing = _text(src)
        # try_cast as SQL: null for "abc" whatever spark.sql.ansi.enabled says (Spark 3.2+).
        value = F.expr(f"try_cast(trim(`{col.name}`) AS DOUBLE)")
        shown = text
        not_number = ~missing & (value.isNull() | F.isnan(value) | (F.abs(value) == float("inf")))
    else:
        value = src.cast("double")
        missing = src.isNull() | F.isnan(value)
        shown = value
        not_number = ~missing & (F.abs(value) == float("inf"))
    ok = ~missing & ~not_number
    checks = [_Check(col.name, "not a number", not_number, shown)]
    if not col.nullable:
        checks.insert(0, _Check(col.name, "missing values", missing, shown))
    if col.kind in (Kind.FLAG, Kind.INTEGER):
        fractional = ok & (F.floor(value) != value)
        checks.append(_Check(col.name, "not a whole number", fractional, shown))
        ok = ok & ~fractional
    low, high = col.minimum, col.maximum
    if low is not None or high is not None:
        outside = F.lit(False)
        if low is not None:
            outside = outside | (value < F.lit(float(low)))
        if high is not None:
            outside = outside | (value > F.lit(float(high)))
        checks.append(_Check(col.name, _bounds(col), ok & outside, shown))
    if col.kind in (Kind.FLAG, Kind.INTEGER):
        return value.cast("long"), checks
    return F.when(ok, value), checks


def _shown(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _rows(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'}"


def validate(df: DataFrame, progress: Progress = lambda _m: None) -> tuple[DataFrame, int]:
    """The input as the model's typed features plus customerID, and its row count.

    Raises DataValidationError naming every bad column, like `churn.data.normalise`: the label
    column is optional (scoring input has no outcome yet); any other column outside the schema
    is an error, so a misspelt feature is reported rather than silently scored as missing.
    Two Spark jobs: one aggregation for every check, one distinct count of customerID; examples
    of bad values are fetched only on failure.
    """
    from pyspark.sql import functions as F

    _check_columns(list(df.columns))
    typed, checks = _typed_columns(df)
    ids, id_missing = _text(F.col(f"`{schema.ID_COLUMN}`"))
    counts = df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(F.when(~id_missing, F.lit(1))).alias("ids"),
        *[F.count(F.when(c.bad, F.lit(1))).alias(f"check_{i}") for i, c in enumerate(checks)],
    ).first()
    assert counts is not None
    rows = int(counts["rows"])
    progress(f"{rows:,} rows read")
    found = _failed_checks(df, checks, [int(counts[f"check_{i}"]) for i in range(len(checks))])
    duplicates = _duplicate_ids(df, ids, id_missing, int(counts["ids"]))
    if duplicates is not None:
        found.setdefault(schema.ID_COLUMN, []).append(f"duplicate values {duplicates}")
    if found:
        in_schema_order = sorted(found, key=list(schema.COLUMN_NAMES).index)
        raise DataValidationError({name: " and ".join(found[name]) for name in in_schema_order})
    return df.select(*[value.alias(name) for name, value in typed.items()]), rows


def _check_columns(present: list[str]) -> None:
    """Raises DataValidationError for a missing, repeated or unexpected column (the label may
    be absent)."""
    problems: dict[str, str] = {}
    for col in schema.COLUMNS:
        count = present.count(col.name)
        if count == 0 and col.kind is not Kind.LABEL:
            problems[col.name] = "missing column"
        elif count > 1:
            problems[col.name] = f"column appears {count} times"
    for name in dict.fromkeys(present):
        if name not in schema.BY_NAME:
            problems[name] = "unexpected column"
    if problems:
        raise DataValidationError(problems)


def _typed_columns(df: DataFrame) -> tuple[dict[str, SparkColumn], list[_Check]]:
    """Every column but the label as the model gets it, and the checks on all of them."""
    from pyspark.sql import functions as F

    types = dict(df.dtypes)
    typed: dict[str, SparkColumn] = {}
    checks: list[_Check] = []
    for col in schema.COLUMNS:
        if col.kind is Kind.LABEL:
            continue
        value, rules = _column_rules(col, types[col.name], F.col(f"`{col.name}`"))
        typed[col.name] = value
        checks.extend(rules)
    return typed, checks


def _failed_checks(df: DataFrame, checks: list[_Check], counts: list[int]) -> dict[str, list[str]]:
    """Column -> what is wrong with it, from each check's count of offending rows; a few
    distinct offending values are fetched for each failed check but missing values."""
    found: dict[str, list[str]] = {}
    for check, n in zip(checks, counts, strict=True):
        if n == 0:
            continue
        if check.what == "missing values":
            found.setdefault(check.column, []).append(f"missing values in {_rows(n)}")
            continue
        examples = [
            _shown(r[0])
            for r in df.where(check.bad)
            .select(check.shown)
            .distinct()
            .limit(_MAX_EXAMPLES)
            .collect()
        ]
        found.setdefault(check.column, []).append(
            f"{check.what} {', '.join(examples)} ({_rows(n)})"
        )
    return found


def _duplicate_ids(
    df: DataFrame, ids: SparkColumn, id_missing: SparkColumn, present: int
) -> str | None:
    """A few repeated customerIDs with their row counts, or None if the `present` ids are
    distinct."""
    from pyspark.sql import functions as F

    # A job of its own: a distinct count inside validate's aggregation would make Spark expand
    # every row once per distinct group (measured: 2-3x the time of the two jobs apart).
    distinct_ids = df.where(~id_missing).agg(F.count_distinct(ids).alias("n")).first()
    assert distinct_ids is not None
    if int(distinct_ids["n"]) == present:
        return None
    dupes = (
        df.where(~id_missing)
        .groupBy(ids.alias("id"))
        .count()
        .where(F.col("count") > 1)
        .limit(_MAX_EXAMPLES)
        .collect()
    )
    return ", ".join(f"{r['id']!r} ({r['count']} rows)" for r in dupes)


# ---------------------------------------------------------------------------------------------
# Scoring


def score_frame(spark: SparkSession, typed: DataFrame, model: ModelRef, day: date) -> DataFrame:
    """`typed` (from `validate`) scored by `model`: the columns of OUTPUT_COLUMNS, lazily."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    from churn.tracking import store_errors

    # Downloads the version on the driver (Spark ships it to the executors); registry failures
    # keep their exit codes (3, 4).
    with warnings.catch_warnings(), store_errors(mlflow.get_registry_uri()):
        _quiet_pyspark_warnings()
        with _without_env_manager_warning():
            predict = mlflow.pyfunc.spark_udf(
                spark, model.local or model.uri, result_type="double", env_manager="local"
            )
    # A struct gives the model a DataFrame with the schema's column names (not positions).
    features = F.struct(*[F.col(f"`{name}`") for name in schema.FEATURE_NAMES])
    probability = predict(features)
    return typed.select(
        F.col(schema.ID_COLUMN),
        probability.alias(PROBABILITY),
        (probability >= F.lit(model.threshold)).alias(DECISION),
        F.lit(model.threshold).alias("threshold"),
        F.lit(model.name).alias("model_name"),
        F.lit(model.version).cast("int").alias("model_version"),
        F.lit(model.run_id).alias("model_run_id"),
        F.lit(day.isoformat()).alias(PARTITION_COLUMN),
    )


@contextlib.contextmanager
def _without_env_manager_warning() -> Iterator[None]:
    """spark_udf warns on every call that env_manager="local" does not rebuild the training
    environment. That is the choice here (no conda/virtualenv downloads on executors: their
    Python is provisioned with the model's requirements, see docs/scaling-out.md); MLflow's check
    that installed versions match the model's requirements still warns."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return 'env_manager="local"' not in record.getMessage()

    logger = logging.getLogger("mlflow.pyfunc")
    drop = _Drop()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def spread(spark: SparkSession, typed: DataFrame, partitions: int | None) -> DataFrame:
    """`typed` over `partitions` tasks, or at least one per core: a single Parquet file is often
    one Spark split, and the model would then run on one core. Done before the UDF, so that the
    shuffle moves input rows and the scoring itself runs in parallel."""
    current = typed.rdd.getNumPartitions()
    wanted = partitions or max(current, spark.sparkContext.defaultParallelism)
    return typed if wanted == current else typed.repartition(wanted)


def write_scores(
    spark: SparkSession, scored: DataFrame, output: str, progress: Progress, every: float
) -> None:
    """Write (and so, lazily, score) with dynamic partition overwrite: only this date's
    directory is replaced, other dates are left as they are."""
    with StageProgress(spark, progress, every):
        (
            scored.write.mode("overwrite")
            .option("partitionOverwriteMode", "dynamic")
            .partitionBy(PARTITION_COLUMN)
            .parquet(output)
        )


def _output_uri(output: str) -> str:
    if _is_uri(output):
        return output.rstrip("/")
    return _local_uri(output)


def _shown_path(uri: str) -> str:
    return uri.removeprefix("file://") if uri.startswith("file:///") else uri


# ---------------------------------------------------------------------------------------------
# The command


def score(
    files: InputFiles,
    output: str,
    model: ModelRef,
    day: date,
    *,
    master: str | None = None,
    conf: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
    partitions: int | None = None,
    progress: Progress = lambda _m: None,
    every: float = 10.0,
) -> ScoreResult:
    """Start (or reuse) Spark, validate `files`, score them with `model`, write the scores.

    Raises UsageError for input that does not fit the schema (nothing is written), ScoringError
    when Spark fails; `every` is the seconds between progress lines of a running stage."""
    out = _output_uri(output)
    partition_uri = f"{out}/{PARTITION_COLUMN}={day.isoformat()}"
    t0 = time.perf_counter()
    progress("starting Spark")
    with spark_session(master, conf) as spark:
        sc = spark.sparkContext
        progress(
            f"Spark {spark.version} on {sc.master} ({sc.defaultParallelism} cores) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        typed, rows = _read_valid_input(spark, files, progress, every)
        progress(f"scoring {rows:,} rows with {model.uri} -> {_shown_path(partition_uri)}")
        with spark_errors("scoring"):
            scored = score_frame(spark, spread(spark, typed, partitions), model, day)
            write_scores(spark, scored, out, progress, every)
            written, churned = _written_counts(spark, partition_uri)
        if written != rows:
            raise ScoringError(
                f"{partition_uri} holds {written:,} rows, but {rows:,} were read: "
                "another job may be writing the same date"
            )
    progress(f"done in {time.perf_counter() - t0:.1f} s")
    return ScoreResult(rows, churned, _shown_path(partition_uri), model)


def _read_valid_input(
    spark: SparkSession, files: InputFiles, progress: Progress, every: float
) -> tuple[DataFrame, int]:
    """`validate` on `files`, its refusals and an empty input as UsageErrors."""
    progress(f"validating {files.description} ({files.format}) against the schema")
    df = read_input(spark, files)
    try:
        with spark_errors("validating the input"), StageProgress(spark, progress, every):
            typed, rows = validate(df, progress)
    except DataValidationError as exc:
        raise UsageError(
            f"--input {files.description}: {exc}; nothing was written "
            "(the schema is churn/schema.py)"
        ) from exc
    if rows == 0:
        raise UsageError(f"--input {files.description} has no rows; nothing was written")
    return typed, rows


def _written_counts(spark: SparkSession, partition_uri: str) -> tuple[int, int]:
    """Rows in the written partition, and how many of them are decided churn."""
    from pyspark.sql import functions as F

    written = (
        spark.read.parquet(partition_uri)
        .agg(F.count(F.lit(1)).alias("n"), F.count(F.when(F.col(DECISION), 1)).alias("c"))
        .first()
    )
    assert written is not None
    return int(written["n"]), int(written["c"])


def run(args: argparse.Namespace) -> int:
    """`python -m churn score` (wrapped by churn.cli.run, which maps our errors to exit codes)."""
    from churn import loading, tracking

    def echo(message: str) -> None:
        print(f"score: {message}", file=sys.stderr, flush=True)

    if not str(args.output).strip():
        raise UsageError("--output is empty: give a directory (or a URI) for the scores")
    if args.progress_every < 0:
        raise UsageError(f"--progress-every must be >= 0, got {args.progress_every}")
    files = resolve_input(args.input, args.format)
    parse_model_uri(args.model_uri)  # a malformed URI is exit 2 before any connection
    # No tqdm bars for the model download in a batch log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = settings.tracking_uri(args.tracking_uri)
    client = tracking.connect(uri)  # sets the process-wide tracking and registry URIs
    with tracking.store_errors(uri):
        model = resolve_model(client, args.model_uri, args.params)
    echo(f"{model.requested} is {model.name} v{model.version} (run {model.run_id})")
    with contextlib.ExitStack() as keep:
        # Checked against what train.py writes and loaded once here, before Spark starts: a
        # corrupt or hostile version is refused (exit 3) and never reaches an executor.
        with tracking.store_errors(uri):
            local = keep.enter_context(
                loading.verified_copy(
                    model.name, model.version, "score with another version (--model-uri)"
                )
            )
        result = score(
            files,
            str(args.output),
            dataclasses.replace(model, local=str(local)),
            args.score_date or datetime.now(UTC).date(),
            master=args.master,
            conf=args.conf,
            partitions=args.partitions,
            progress=echo,
            every=args.progress_every,
        )
    print(result.summary())
    return 0
