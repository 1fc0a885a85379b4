"""Batch scoring speed: `churn score` on Spark local[2] against plain pandas, same model, same rows.

    make bench-score                     # 1,000,000 rows (and 10,000 and 100,000), about 6 minutes;
                                         # writes bench/results/score.json
    make bench-score ARGS=--quick        # 100,000 rows at most, writes bench/.work/score/
    .venv/bin/python -m bench.score --help

What it does, in order:
 1. builds a champion if needed (bench.serve.ensure_champion) in a bench-owned SQLite store under
    bench/.work/score/ (never the repository's mlflow.db), and generates the scoring rows
    (`churn.data.generate`, normalised, one Parquet file; the smaller sizes are its first rows);
 2. loads the champion for the reference with `mlflow.pyfunc.load_model` (timed on its own),
    starts a Spark local[2] session (timed: the start-up) and warms it with a first 1,000-row
    run (Python workers, code generation; timed as well);
 3. per size, best of --repeat, one engine after the other (the other idles):
      pandas, the reference: `churn.data.read_parquet` (which validates against the schema, as
      `churn score` does), `pyfunc.predict` in chunks of 10,000 rows (Spark's Arrow batch size,
      spark.sql.execution.arrow.maxRecordsPerBatch), a Parquet file with the same columns;
      Spark: `churn.score.score`, the function the command runs (validate, score with
      spark_udf, write, re-count);
 4. unless --quick, the command itself, `python -m churn score --master local[2]`, on the largest
    size as a subprocess: the wall time a nightly job sees, JVM start included;
 5. prints one table (seconds and rows/s per size for each engine, Spark/pandas ratio), Spark's
    start-up apart, and the row count from which Spark, start-up included, finishes first
    (from a least-squares line through each engine's times), and writes it all as JSON, with
    the machine's load average before and after (other processes slow both engines).
Exit codes: 0 the run completed, 1 it could not complete, 2 usage error.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from bench.serve import (
    BENCH_ERRORS,
    MODEL_URI,
    ensure_champion,
    finish,
    output_args,
    stamp,
    store_uri,
)

ROOT = Path(__file__).resolve().parent.parent

WORK = ROOT / "bench" / ".work" / "score"
RESULTS = ROOT / "bench" / "results" / "score.json"
CHUNK_ROWS = 10_000
MASTER = "local[2]"
WARM_ROWS = 1_000
REFERENCE = (
    f"pandas: churn.data.read_parquet (validates) + pyfunc.predict in {CHUNK_ROWS:,}-row chunks "
    "+ DataFrame.to_parquet, one process"
)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


@dataclass
class Options:
    rows: int
    sizes: list[int]
    quick: bool
    seed: int
    training_rows: int
    output: Path
    work: Path
    e2e: bool
    repeat: int


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.score",
        description=(
            "Batch scoring throughput: `churn score` on Spark local[2] against a plain pandas "
            "pyfunc.predict loop, same champion, same rows, at three sizes; Spark's start-up "
            "apart, and the row count where it is amortised."
        ),
        epilog="Exit codes: 0 run completed; 1 the run could not complete; 2 usage error.",
    )
    parser.add_argument(
        "--rows",
        type=int,
        help="largest size scored (default 1,000,000; --quick 100,000); the others are "
        "1/100 and 1/10 of it",
    )
    parser.add_argument(
        "--quick", action="store_true", help="100,000 rows at most, no end-to-end CLI run"
    )
    parser.add_argument("--seed", type=int, default=42, help="data/training seed (default 42)")
    parser.add_argument(
        "--repeat",
        type=int,
        help="runs per size and engine, the fastest counts (default 2; --quick 1)",
    )
    parser.add_argument(
        "--training-rows", type=int, default=20_000, help="rows the champion is trained on"
    )
    output_args(parser, RESULTS, WORK, "score-quick.json")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    rows = args.rows if args.rows is not None else (100_000 if quick else 1_000_000)
    repeat = args.repeat if args.repeat is not None else (1 if quick else 2)
    if rows < 10_000 or args.training_rows < 2_000 or repeat < 1:
        parser.error("--rows must be >= 10000, --training-rows >= 2000 and --repeat >= 1")
    work = args.work_dir.resolve()
    return Options(
        rows=rows,
        sizes=sorted({rows // 100, rows // 10, rows}),
        quick=quick,
        seed=args.seed,
        training_rows=args.training_rows,
        output=args.output or (work / "score-quick.json" if quick else RESULTS),
        work=work,
        e2e=not quick,
        repeat=repeat,
    )


# ---------------------------------------------------------------------------------------------
# Data


def scoring_files(work: Path, sizes: list[int], seed: int) -> dict[int, Path]:
    """One Parquet file per size: the first n rows of one generated month (kept between runs)."""
    import pandas as pd

    from churn import data

    largest = max(sizes)
    files = {n: work / f"rows-{n}-seed-{seed}.parquet" for n in sizes}
    if all(p.is_file() for p in files.values()):
        return files
    # Another seed than training's: the model scores customers it has not seen.
    progress(f"generating {largest:,} rows to score (seed {seed + 1})")
    t0 = time.perf_counter()
    frame = data.normalise(data.generate(rows=largest, seed=seed + 1))
    progress(f"generated in {time.perf_counter() - t0:.1f} s")
    for n, path in files.items():
        data.write_parquet(pd.DataFrame(frame.head(n)), path)
    return files


# ---------------------------------------------------------------------------------------------
# pandas, the reference


def load_pyfunc(work: Path) -> Any:
    import mlflow

    uri = store_uri(work)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        return mlflow.pyfunc.load_model(MODEL_URI)
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def pandas_score(model: Any, source: Path, out: Path, ref: Any) -> int:
    """What `churn score` does, the plain way: validate, predict in chunks, write one file."""
    import numpy as np
    import pandas as pd

    from churn import data, schema

    frame = data.read_parquet(source)
    features = data.features(frame)
    proba = np.concatenate(
        [
            np.asarray(model.predict(features.iloc[i : i + CHUNK_ROWS]), dtype=np.float64)
            for i in range(0, len(features), CHUNK_ROWS)
        ]
    )
    scores = pd.DataFrame(
        {
            schema.ID_COLUMN: frame[schema.ID_COLUMN],
            "churn_probability": proba,
            "churn": proba >= ref.threshold,
            "threshold": ref.threshold,
            "model_name": ref.name,
            "model_version": np.int32(ref.version),
            "model_run_id": ref.run_id,
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(out, index=False)
    return len(scores)


# ---------------------------------------------------------------------------------------------
# The fit: time = a + b * rows per engine, and where the lines cross


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares intercept (s) and slope (s/row) of seconds against rows."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - slope * mx, slope


def break_even(
    spark_fixed: float, spark_slope: float, pandas_fixed: float, pandas_slope: float
) -> int | None:
    """Rows from which Spark (fixed costs included) finishes before pandas; None if never."""
    if pandas_slope <= spark_slope:
        return None
    return max(0, round((spark_fixed - pandas_fixed) / (pandas_slope - spark_slope)))


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Timings:
    """What the run measured: best-of-repeat seconds per size and the engines' fixed costs."""

    model_load_s: float
    startup_s: float = 0.0
    first_run_s: float = 0.0
    parity: float = 0.0
    pandas_s: dict[int, float] | None = None
    spark_s: dict[int, float] | None = None


def run(opts: Options) -> dict[str, Any]:
    import mlflow

    from churn import score, settings

    t_start = time.monotonic()
    opts.work.mkdir(parents=True, exist_ok=True)
    version = ensure_champion(opts.work, opts.training_rows, opts.seed)
    uri = store_uri(opts.work)
    # What the command resolves: the alias to a version, its run, the threshold it applies.
    ref = score.resolve_model(mlflow.MlflowClient(uri, uri), MODEL_URI, settings.PARAMS_FILE)
    files = scoring_files(opts.work, opts.sizes, opts.seed)
    load_before = load()
    model, warm_file, timings = _pandas_warm(opts, files, ref)
    _spark_and_sizes(opts, files, model, warm_file, ref, timings)

    cli: dict[str, Any] | None = None
    if opts.e2e:
        cli = run_cli(opts, files[max(opts.sizes)])
    load_after = load()
    return {
        **stamp(load_average_1m={"before": load_before, "after": load_after}),
        "versions": _versions(),
        "config": {
            "quick": opts.quick,
            "master": MASTER,
            "sizes": opts.sizes,
            "chunk_rows": CHUNK_ROWS,
            "repeat": opts.repeat,
            "training_rows": opts.training_rows,
            "model": f"{MODEL_URI} (v{version})",
            "reference": REFERENCE,
        },
        **_measured(opts, timings),
        "cli": cli,
        "total_s": round(time.monotonic() - t_start, 1),
    }


def _pandas_warm(opts: Options, files: dict[int, Path], ref: Any) -> tuple[Any, Path, Timings]:
    """Load the model (timed) and score a small warm-up file with pandas."""
    import pandas as pd

    from churn import data

    t0 = time.perf_counter()
    model = load_pyfunc(opts.work)
    timings = Timings(model_load_s=time.perf_counter() - t0)
    progress(f"pandas: model loaded in {timings.model_load_s:.2f} s")
    warm_file = opts.work / f"warm-{WARM_ROWS}.parquet"
    if not warm_file.is_file():
        frame = data.read_parquet(files[min(opts.sizes)]).head(WARM_ROWS)
        data.write_parquet(pd.DataFrame(frame), warm_file)
    pandas_score(model, warm_file, opts.work / "pandas" / "warm.parquet", ref)
    return model, warm_file, timings


def _spark_and_sizes(
    opts: Options, files: dict[int, Path], model: Any, warm_file: Path, ref: Any, timings: Timings
) -> None:
    """Start Spark (timed), warm it, then time both engines size by size; fills `timings`."""
    import mlflow

    from churn import score

    uri = store_uri(opts.work)
    t0 = time.perf_counter()
    with score.spark_session(MASTER) as spark:
        timings.startup_s = time.perf_counter() - t0
        progress(f"spark: {spark.version} session on {MASTER} in {timings.startup_s:.2f} s")
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        t0 = time.perf_counter()
        score.score(
            score.resolve_input(str(warm_file)), str(opts.work / "spark-out"), ref, date(2000, 1, 1)
        )
        timings.first_run_s = time.perf_counter() - t0
        progress(
            f"spark: first run ({WARM_ROWS:,} rows, cold workers) in {timings.first_run_s:.2f} s"
        )
        timings.pandas_s, timings.spark_s = _time_sizes(opts, files, model, ref)
        timings.parity = max_difference(spark, opts.work, max(opts.sizes))
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def _time_sizes(
    opts: Options, files: dict[int, Path], model: Any, ref: Any
) -> tuple[dict[int, float], dict[int, float]]:
    """Best of --repeat seconds per size for pandas and for Spark (whose session is running)."""
    from churn import score

    pandas_s: dict[int, float] = {}
    spark_s: dict[int, float] = {}
    # Size by size, pandas then Spark (the JVM idles meanwhile), best of --repeat each: a busy
    # neighbour then slows both engines alike rather than whichever happened to run.
    for n in opts.sizes:
        for _ in range(opts.repeat):
            t0 = time.perf_counter()
            written = pandas_score(model, files[n], opts.work / "pandas" / f"{n}.parquet", ref)
            pandas_s[n] = min(pandas_s.get(n, math.inf), time.perf_counter() - t0)
            assert written == n
            t0 = time.perf_counter()
            result = score.score(
                score.resolve_input(str(files[n])),
                str(opts.work / "spark-out"),
                ref,
                date(2000, 1, 2),
                progress=lambda m: progress(f"spark:   {m}"),
                every=15.0,
            )
            spark_s[n] = min(spark_s.get(n, math.inf), time.perf_counter() - t0)
            assert result.rows == n
        progress(
            f"{n:,} rows: pandas {pandas_s[n]:.2f} s ({n / pandas_s[n]:,.0f} rows/s), "
            f"spark {spark_s[n]:.2f} s ({n / spark_s[n]:,.0f} rows/s)"
        )
    return pandas_s, spark_s


def _measured(opts: Options, t: Timings) -> dict[str, Any]:
    """The result's measured part: fixed costs, per-size rows, the fitted lines, break-even."""
    pandas_s, spark_s = t.pandas_s or {}, t.spark_s or {}
    pandas_a, pandas_b = fit(list(pandas_s.items()))
    spark_a, spark_b = fit(list(spark_s.items()))
    # A fresh nightly run pays the session start and a cold first run (which includes that run's
    # own fixed costs); pandas pays the model load.
    spark_fixed = t.startup_s + t.first_run_s
    pandas_fixed = t.model_load_s + pandas_a
    amortised = break_even(spark_fixed, spark_b, pandas_fixed, pandas_b)

    sizes = {}
    for n in opts.sizes:
        sizes[str(n)] = {
            "rows": n,
            "pandas_s": round(pandas_s[n], 3),
            "pandas_rows_per_s": round(n / pandas_s[n]),
            "spark_s": round(spark_s[n], 3),
            "spark_rows_per_s": round(n / spark_s[n]),
            "spark_over_pandas": round((n / spark_s[n]) / (n / pandas_s[n]), 3),
            "spark_total_s": round(spark_fixed + spark_s[n], 3),
            "pandas_total_s": round(t.model_load_s + pandas_s[n], 3),
        }
    return {
        "pandas_model_load_s": round(t.model_load_s, 3),
        "spark_startup_s": round(t.startup_s, 3),
        "spark_first_run_s": round(t.first_run_s, 3),
        "sizes": sizes,
        "fit": {
            "pandas": {"fixed_s": round(pandas_a, 3), "us_per_row": round(pandas_b * 1e6, 3)},
            "spark": {"fixed_s": round(spark_a, 3), "us_per_row": round(spark_b * 1e6, 3)},
        },
        "amortised_at_rows": amortised,
        "max_abs_difference": t.parity,
    }


def max_difference(spark: Any, work: Path, n: int) -> float:
    """Largest |Spark - pandas| probability over the largest size (joined on customerID)."""
    from pyspark.sql import functions as F

    ours = spark.read.parquet(str(work / "spark-out" / "score_date=2000-01-02"))
    theirs = spark.read.parquet(str(work / "pandas" / f"{n}.parquet"))
    joined = ours.alias("s").join(theirs.alias("p"), "customerID")
    row = joined.agg(
        F.count(F.lit(1)).alias("n"),
        F.max(F.abs(F.col("s.churn_probability") - F.col("p.churn_probability"))).alias("d"),
    ).first()
    assert row is not None and row["n"] == n, f"joined {row and row['n']} of {n} rows"
    return float(row["d"])


def run_cli(opts: Options, source: Path) -> dict[str, Any]:
    """`python -m churn score` as a nightly job runs it: a fresh process and JVM."""
    out = opts.work / "cli-out"
    argv = [
        sys.executable, "-m", "churn", "score", "--input", str(source), "--output", str(out),
        "--master", MASTER, "--score-date", "2000-01-03", "--tracking-uri", store_uri(opts.work),
    ]  # fmt: skip
    progress(f"cli: {' '.join(argv[1:])}")
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "SPARK_LOCAL_IP")}
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"`churn score` exited {done.returncode}:\n{done.stderr[-3000:]}")
    rows = int(source.stem.split("-")[1])
    progress(f"cli: {done.stdout.strip()} ({wall:.1f} s wall)")
    return {"rows": rows, "wall_s": round(wall, 3), "rows_per_s": round(rows / wall)}


def _versions() -> dict[str, str]:
    from importlib import metadata

    return {
        p: metadata.version(p) for p in ("pyspark", "mlflow", "pandas", "pyarrow", "scikit-learn")
    } | {"java": _java_version()}


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    return (out.stderr or out.stdout).strip().splitlines()[0] if (out.stderr or out.stdout) else ""


# ---------------------------------------------------------------------------------------------
# Output


def table(result: dict[str, Any]) -> str:
    lines = [f"reference: {result['config']['reference']}", ""]
    head = (
        f"{'rows':>10}  {'pandas s':>9} {'pandas rows/s':>14}  {'spark s':>9} "
        f"{'spark rows/s':>13}  {'spark/pandas':>12}"
    )
    lines += [head, "-" * len(head)]
    for row in result["sizes"].values():
        lines.append(
            f"{row['rows']:>10,}  {row['pandas_s']:>9.2f} {row['pandas_rows_per_s']:>14,}  "
            f"{row['spark_s']:>9.2f} {row['spark_rows_per_s']:>13,}  "
            f"{row['spark_over_pandas']:>11.2f}x"
        )
    lines.append("")
    lines.append(
        "spark (local[2]) per-run times above exclude its start-up: session "
        f"{result['spark_startup_s']:.1f} s + first run on cold workers "
        f"{result['spark_first_run_s']:.1f} s; pandas' model load "
        f"{result['pandas_model_load_s']:.2f} s"
    )
    fit = result["fit"]
    lines.append(
        f"fit, seconds = fixed + per-row: pandas {fit['pandas']['fixed_s']:.2f} s + "
        f"{fit['pandas']['us_per_row']:.2f} us/row; spark {fit['spark']['fixed_s']:.2f} s + "
        f"{fit['spark']['us_per_row']:.2f} us/row"
    )
    return "\n".join(lines + _table_verdict(result))


def _table_verdict(result: dict[str, Any]) -> list[str]:
    """The lines under the table: break-even, the CLI run, parity and the machine's load."""
    lines = []
    amortised = result["amortised_at_rows"]
    largest = max(result["config"]["sizes"])
    if amortised is None:
        lines.append(
            "spark's start-up is never amortised on this machine: its cost per row is not lower "
            "than pandas'"
        )
    else:
        how = "measured" if amortised <= largest else "extrapolated from the fitted lines"
        lines.append(
            f"spark's start-up is amortised from ~{amortised:,} rows ({how}): from there a fresh "
            "spark run, start-up included, finishes before pandas"
        )
    if result.get("cli"):
        c = result["cli"]
        lines.append(
            f"`python -m churn score --master {result['config']['master']}` on {c['rows']:,} rows: "
            f"{c['wall_s']:.1f} s wall, JVM start included ({c['rows_per_s']:,} rows/s)"
        )
    lines.append(
        f"max |spark - pandas| probability: {result['max_abs_difference']:.3g}; "
        f"load average {result['machine']['load_average_1m']['before']} -> "
        f"{result['machine']['load_average_1m']['after']} on {result['machine']['cpus']} CPUs"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    from churn.cli import quiet_mlflow
    from churn.errors import ChurnError

    quiet_mlflow()
    return finish("bench", run, table, parse_args(argv), (*BENCH_ERRORS, ChurnError))


if __name__ == "__main__":
    raise SystemExit(main())
